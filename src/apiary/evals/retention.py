"""The retention suite: what the base model could already do, and whether a candidate still can.

Two measures, shipped with the project and needing no downloads:

- retention KL: on general prompts (`retention_data/prompts.jsonl`), the base model's greedy
  replies are computed once and cached; the KL(base || model) of the next-token distributions
  along those replies, averaged per token and then over prompts, is how far the candidate has
  moved from the base where no job asked it to (forgetting tracks this KL: "RL's Razor", 2025);
- flips: on short verifiable items (`retention_data/items.jsonl`: the candidates on which the
  bundled core answers right, selected by `python -m apiary.evals.retention`), a candidate's
  right-to-wrong and wrong-to-right flips.
"""

from __future__ import annotations

import hashlib
import json
import re
from importlib import resources
from pathlib import Path

import torch
import torch.nn.functional as F

from apiary.models.generate import SamplingParams, generate, prompt_ids
from apiary.store.artifacts import atomic_write_json

MAX_REPLY_TOKENS = 48


def _lines(name: str) -> list[dict]:
    text = resources.files("apiary.evals").joinpath("retention_data", name).read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def prompts() -> list[str]:
    return [row["prompt"] for row in _lines("prompts.jsonl")]


def anchor_prompts() -> list[str]:
    """General prompts, disjoint from `prompts()`, that consolidation may train on to stay near the core."""
    return [row["prompt"] for row in _lines("anchor_prompts.jsonl")]


def items(name: str = "items.jsonl") -> list[dict]:
    return _lines(name)


def item_score(completion: str, answer: str, question: str = "") -> float:
    """Judged on the first non-empty line. Numbers: the answer is there and every other number
    there is from the question ("3 + 3 = 6" is right, "1 or 12" is not); words: the answer is
    there as a whole word (case-insensitive)."""
    line = next((ln for ln in completion.strip().splitlines() if ln.strip()), "")
    if re.fullmatch(r"-?\d+(\.\d+)?", answer.strip()):
        found = {float(n) for n in _NUMBER.findall(line)}
        allowed = {float(answer)} | {float(n) for n in _NUMBER.findall(question)}
        return float(float(answer) in found and found <= allowed)
    return float(re.search(rf"\b{re.escape(answer)}\b", line, re.IGNORECASE) is not None)


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def _greedy(model, tokenizer, stop_ids: list[int], questions: list[str], max_new: int) -> list[list[int]]:
    encoded = [prompt_ids(tokenizer, [{"role": "user", "content": q}]) for q in questions]
    model.eval()
    with torch.no_grad():
        return generate(model, encoded, 1, SamplingParams(max_new_tokens=max_new, temperature=0.0), stop_ids,
                        tokenizer.pad_token_id)


def item_scores(model, tokenizer, stop_ids: list[int], suite: list[dict] | None = None) -> list[float]:
    suite = suite if suite is not None else items()
    outputs = _greedy(model, tokenizer, stop_ids, [it["question"] for it in suite], 16)
    return [item_score(tokenizer.decode(ids, skip_special_tokens=True), it["answer"], it["question"])
            for it, ids in zip(suite, outputs)]


def references(core, cache_dir: Path) -> list[list[int]]:
    """The base model's greedy replies to the retention prompts, computed once per core and cached."""
    key = hashlib.sha1(json.dumps([core.name, prompts(), MAX_REPLY_TOKENS]).encode()).hexdigest()[:12]
    path = cache_dir / f"retention-{key}.json"
    if path.is_file():
        return json.loads(path.read_text())
    replies = _greedy(core.model, core.tokenizer, core.stop_token_ids, prompts(), MAX_REPLY_TOKENS)
    atomic_write_json(path, [list(map(int, r)) for r in replies])
    return replies


def _reply_logprobs(model, prompt: list[int], reply: list[int]) -> torch.Tensor:
    """Log-softmax over the vocabulary at each reply position (L x V)."""
    ids = torch.tensor([prompt + reply])
    logits = model(input_ids=ids).logits[0, len(prompt) - 1:len(prompt) + len(reply) - 1]
    return F.log_softmax(logits.float(), dim=-1)


def retention_kl(model, base, tokenizer, replies: list[list[int]]) -> float:
    """Mean over prompts of the per-token KL(base || model) along the base's replies.

    `base` is the base model, or None when `model` is a PEFT model whose adapter, disabled, gives it."""
    total = 0.0
    with torch.no_grad():
        for question, reply in zip(prompts(), replies):
            if not reply:
                continue
            prompt = prompt_ids(tokenizer, [{"role": "user", "content": question}])
            mine = _reply_logprobs(model, prompt, reply)
            if base is None:
                with model.disable_adapter():
                    theirs = _reply_logprobs(model, prompt, reply)
            else:
                theirs = _reply_logprobs(base, prompt, reply)
            total += float((theirs.exp() * (theirs - mine)).sum(-1).mean())
    return total / max(1, sum(1 for r in replies if r))


def main() -> None:
    """Select the shipped items: the candidates the bundled core answers right."""
    from apiary.models.core import load_core

    core = load_core()
    candidates = items("candidates.jsonl")
    scores = item_scores(core.model, core.tokenizer, core.stop_token_ids, candidates)
    kept = [c for c, s in zip(candidates, scores) if s >= 1.0]
    out = Path(str(resources.files("apiary.evals").joinpath("retention_data", "items.jsonl")))
    out.write_text("".join(json.dumps(c) + "\n" for c in kept))
    print(f"kept {len(kept)} of {len(candidates)} items the core answers right -> {out}")


if __name__ == "__main__":
    main()
