"""The retention suite: what the base model could already do, and whether a candidate still can.

Two measures, shipped with the project and needing no downloads:

- retention KL: on general prompts (`retention_data/prompts.jsonl`), the base model's greedy
  replies are computed once and cached; the KL(base || model) of the next-token distributions
  along those replies, averaged per token and then over prompts, is how far the candidate has
  moved from the base where no job asked it to (forgetting tracks this KL: "RL's Razor", 2025);
- flips: on short verifiable items of several kinds (`retention_data/items.jsonl`: the candidates
  the bundled core answers right robustly, under other batches and small random changes, selected
  by `python -m apiary.evals.build_retention`), a candidate's right-to-wrong and wrong-to-right
  flips. Each item names its checker (`CHECKERS`).
"""

from __future__ import annotations

import hashlib
import json
import re
from importlib import resources
from pathlib import Path

import torch
import torch.nn.functional as F

from apiary.models import adapters
from apiary.models.generate import SamplingParams, generate, prompt_ids
from apiary.models.logprobs import completion_logits
from apiary.store.artifacts import atomic_write_json

MAX_REPLY_TOKENS = 48
FIRST_SUITE = "items_first.jsonl"  # the first suite: 135 items the core answered right once (kept to compare)


def _lines(name: str) -> list[dict]:
    text = resources.files("apiary.evals").joinpath("retention_data", name).read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def prompts() -> list[str]:
    return [row["prompt"] for row in _lines("prompts.jsonl")]


def items(name: str = "items.jsonl") -> list[dict]:
    return _lines(name)


def item_score(completion: str, answer: str, question: str = "", checker: str | None = None) -> float:
    """Judged on the first non-empty line by the item's `checker` (`CHECKERS`); without one, a
    numeric answer is checked as a number and any other as a word."""
    line = next((ln for ln in completion.strip().splitlines() if ln.strip()), "")
    if checker is None:
        checker = "number" if re.fullmatch(r"-?\d+(\.\d+)?", answer.strip()) else "word"
    if checker not in CHECKERS:
        raise ValueError(f"unknown retention checker {checker!r}; known: {', '.join(sorted(CHECKERS))}")
    return float(CHECKERS[checker](line, answer, question))


def _number(line: str, answer: str, question: str) -> bool:
    """The answer is there and every other number there is from the question ("3 + 3 = 6" is
    right, "1 or 12" is not)."""
    found = {float(n) for n in _NUMBER.findall(line)}
    allowed = {float(answer)} | {float(n) for n in _NUMBER.findall(question)}
    return float(answer) in found and found <= allowed


def _word(line: str, answer: str, question: str) -> bool:
    """The answer, or one of its "|"-separated alternatives ("autumn|fall"), is there as a whole word
    or phrase, case-insensitive (hyphens read as spaces)."""
    return any(_named_at(line, alt) is not None for alt in answer.split("|"))


def _named_at(line: str, word: str) -> int | None:
    """Where `word` first appears in `line` as a whole word or phrase (case and hyphens aside), or None."""
    found = re.search(rf"\b{re.escape(word.replace('-', ' '))}\b", line.replace("-", " "), re.IGNORECASE)
    return found.start() if found else None


def _choice(line: str, answer: str, question: str) -> bool:
    """Of the question's two options ("Which is bigger, an elephant or a mouse?"), the line names the
    answer first ("The elephant is bigger than the mouse." is right, "A mouse is smaller..." is not)."""
    options = _OPTIONS.search(question)
    if options is None:
        return _word(line, answer, question)
    named = {o: _named_at(line, o) for o in (_ARTICLE.sub("", o.strip()) for o in options.groups())}
    named = {o: at for o, at in named.items() if at is not None}
    return bool(named) and min(named, key=named.get).casefold() in {a.casefold() for a in answer.split("|")}


def _exact_case(line: str, answer: str, question: str) -> bool:
    """The answer is there as a whole word, with its case ("BANANA" for capital letters)."""
    return re.search(rf"\b{re.escape(answer)}\b", line) is not None


def _only(line: str, answer: str, question: str) -> bool:
    """The line is the answer and nothing else (case and punctuation aside)."""
    return re.sub(r"[^\w\s]", "", line).strip().casefold() == answer.casefold()


def _letter(line: str, answer: str, question: str) -> bool:
    """The letter is there on its own (quoted, capital or alone) and no other lone letter is but
    the question's ("The letter after B is C." is right for "What letter comes after B?")."""
    lone = _lone_letters(line, keep_article=line.strip() == "a")
    return answer.casefold() in lone and lone <= {answer.casefold()} | _lone_letters(question)


def _lone_letters(text: str, keep_article: bool = True) -> set[str]:
    """Single letters standing alone, casefolded; the article "a" (lower case) only if `keep_article`."""
    found = re.findall(r"(?<![\w'])([A-Za-z])(?![\w'])", text)
    return {m.casefold() for m in found if keep_article or m != "a"}


CHECKERS = {"number": _number, "word": _word, "exact_case": _exact_case, "only": _only, "letter": _letter,
            "choice": _choice}
_OPTIONS = re.compile(r"[,:]\s*([^,:]+?) or ([^,:?]+)\?")
_ARTICLE = re.compile(r"^(?:an?|the)\s+", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
BATCH = 64  # items generated together; the batch composition is part of what the noise floor measures


def _greedy(model, tokenizer, stop_ids: list[int], questions: list[str], max_new: int,
            batch: int | None = None) -> list[list[int]]:
    encoded = [prompt_ids(tokenizer, [{"role": "user", "content": q}]) for q in questions]
    batch = batch or max(1, len(encoded))
    model.eval()
    out: list[list[int]] = []
    with torch.no_grad():
        for start in range(0, len(encoded), batch):
            out += generate(model, encoded[start:start + batch], 1, SamplingParams(max_new_tokens=max_new, temperature=0.0),
                            stop_ids, tokenizer.pad_token_id)
    return out


def item_replies(model, tokenizer, stop_ids: list[int], suite: list[dict], batch: int = BATCH) -> list[str]:
    """The model's greedy replies to the items' questions, `batch` at a time, in the suite's order."""
    outputs = _greedy(model, tokenizer, stop_ids, [it["question"] for it in suite], 16, batch)
    return [tokenizer.decode(ids, skip_special_tokens=True) for ids in outputs]


def score_replies(suite: list[dict], replies: list[str]) -> list[float]:
    return [item_score(reply, it["answer"], it["question"], it.get("checker")) for it, reply in zip(suite, replies)]


def item_scores(model, tokenizer, stop_ids: list[int], suite: list[dict] | None = None, batch: int = BATCH) -> list[float]:
    suite = suite if suite is not None else items()
    return score_replies(suite, item_replies(model, tokenizer, stop_ids, suite, batch))


def references(core, cache_dir: Path) -> list[list[int]]:
    """The base model's greedy replies to the retention prompts, computed once per core and cached."""
    key = hashlib.sha1(json.dumps([core.name, prompts(), MAX_REPLY_TOKENS]).encode()).hexdigest()[:12]
    path = cache_dir / f"retention-{key}.json"
    if path.is_file():
        return json.loads(path.read_text())
    replies = _greedy(core.model, core.tokenizer, core.stop_token_ids, prompts(), MAX_REPLY_TOKENS)
    atomic_write_json(path, [list(map(int, r)) for r in replies])
    return replies


KL_BATCH = 8  # retention prompts read together for the KL (32 x 48 reply tokens x the vocabulary: chunked)


def _reply_logprobs(model, pairs: list[tuple[list[int], list[int]]], pad: int) -> torch.Tensor:
    """Log-softmax over the vocabulary at each reply position, replies one after another (N x V)."""
    prompts, replies = [p for p, _ in pairs], [r for _, r in pairs]
    return F.log_softmax(completion_logits(model, prompts, replies, list(range(len(pairs))), pad).float(), dim=-1)


def retention_kl(model, base, tokenizer, replies: list[list[int]]) -> float:
    """Mean over prompts of the per-token KL(base || model) along the base's replies.

    `base` is the base model, or None when `model` is a PEFT model whose adapter, disabled, gives it.
    The prompts are read `KL_BATCH` at a time, the model's adapter merged (it is not trained here)."""
    pairs = [(prompt_ids(tokenizer, [{"role": "user", "content": q}]), list(r)) for q, r in zip(prompts(), replies) if r]
    per_prompt: list[float] = []
    with torch.no_grad():
        for start in range(0, len(pairs), KL_BATCH):
            chunk = pairs[start:start + KL_BATCH]
            with adapters.merged(model):
                mine = _reply_logprobs(model, chunk, tokenizer.pad_token_id)
            if base is None:
                with model.disable_adapter():
                    theirs = _reply_logprobs(model, chunk, tokenizer.pad_token_id)
            else:
                theirs = _reply_logprobs(base, chunk, tokenizer.pad_token_id)
            kl_N = (theirs.exp() * (theirs - mine)).sum(-1)
            per_prompt += [float(k.mean()) for k in kl_N.split([len(r) for _, r in chunk])]
    return sum(per_prompt) / max(1, len(per_prompt))
