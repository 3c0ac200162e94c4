"""Build the shipped retention suite: the candidates the bundled core answers right robustly.

`python -m apiary.evals.build_retention` proposes candidates (the first suite's candidates that
are not phrased like a job, and `retention_candidates`), writes them to
`retention_data/candidates.jsonl`, and keeps an item only if the core answers it right

1. in the suite's order and batches (`retention.BATCH`),
2. in another order and batch size (other padding), and
3. under each of `perturbations` random rank-16 LoRA changes (seeded, disjoint from the noise
   floor's seeds) scaled to retention KL `kl`.

An item right only by a near tie is flipped by some of these and left out, so a candidate's flips
on the suite are about what it learned, not about noise. The kept items go to
`retention_data/items.jsonl`, the parameters and counts to `retention_data/items_selection.json`.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import time
from collections import Counter
from importlib import resources
from pathlib import Path

import torch

from apiary.evals import noise_floor, retention
from apiary.evals.retention_candidates import candidates as generated
from apiary.models import adapters

SELECTION_SEEDS = 1000  # perturbation seeds start here; the noise floor uses 0, 1, ...
_JOB_LIKE = re.compile(r"\d\s*(?:[-+*/x]|times|plus|minus)\s*\d")  # "3 + 4", "6 * 7", "2 times 3": the jobs' phrasing


def first_candidates() -> list[dict]:
    """The first suite's candidates, with a kind, less those phrased like a job."""
    out = []
    for item in retention.items("candidates_first.jsonl"):
        if _JOB_LIKE.search(item["question"]):
            continue
        q = item["question"]
        kind = ("word" if re.search(r"opposite|plural|past tense|letter", q) else
                "arithmetic" if re.search(r"number comes|how many", q, re.IGNORECASE) and "legs" not in q else "fact")
        out.append({"question": q, "answer": item["answer"], "kind": kind, "checker": None})
    return out


def all_candidates() -> list[dict]:
    seen, out = set(), []
    for item in generated() + first_candidates():
        if item["question"] not in seen:
            seen.add(item["question"])
            out.append({k: v for k, v in item.items() if v is not None})
    return out


def write_candidates() -> list[dict]:
    """Write `retention_data/candidates.jsonl` (no model needed) and return the candidates."""
    candidates = all_candidates()
    _data("candidates.jsonl").write_text("".join(json.dumps(c) + "\n" for c in candidates))
    return candidates


def _right(core, model, suite: list[dict], batch: int = retention.BATCH, seed: int | None = None) -> list[bool]:
    order = list(range(len(suite)))
    if seed is not None:
        random.Random(seed).shuffle(order)
    scores = retention.item_scores(model, core.tokenizer, core.stop_token_ids, [suite[i] for i in order], batch)
    right = [False] * len(suite)
    for position, i in enumerate(order):
        right[i] = scores[position] >= 1.0
    return right


def select(core, candidates: list[dict], kl: float, perturbations: int, log=print) -> tuple[list[dict], dict]:
    """The robust items, in candidate order, and the counts of each step."""
    kept = [c for c, ok in zip(candidates, _right(core, core.model, candidates)) if ok]
    counts = {"candidates": len(candidates), "right": len(kept)}
    log(f"right in order: {len(kept)} of {len(candidates)}")
    kept = [c for c, ok in zip(kept, _right(core, core.model, kept, retention.BATCH - 16, seed=SELECTION_SEEDS)) if ok]
    counts["right_other_batches"] = len(kept)
    log(f"right in other batches: {len(kept)}")
    replies = retention.references(core, noise_floor._cache())
    scale = None
    for i in range(perturbations):
        adapter = noise_floor.random_adapter(core.model, SELECTION_SEEDS + i)
        try:
            if scale is None:  # one scale for every seed: random draws of one size move the model alike
                scale, measured = noise_floor.scale_to_kl(adapter, core.tokenizer, replies, kl, search_prompts=8)
                counts["scale"], counts["measured_kl"] = scale, measured
            else:
                adapter.set_scale(scale)
            kept = [c for c, ok in zip(kept, _right(core, adapter.model, kept)) if ok]
        finally:
            adapters.detach(adapter.model)
        counts[f"right_perturbation_{i}"] = len(kept)
        log(f"right under perturbation {i}: {len(kept)}")
    return kept, counts


def _data(name: str) -> Path:
    return Path(str(resources.files("apiary.evals").joinpath("retention_data", name)))


def main() -> None:
    from apiary.models.core import load_core

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kl", type=float, default=0.011, help="retention KL of the perturbations")
    parser.add_argument("--perturbations", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    started = time.monotonic()
    core = load_core()
    candidates = write_candidates()
    kept, counts = select(core, candidates, args.kl, args.perturbations)
    _data("items.jsonl").write_text("".join(json.dumps(c) + "\n" for c in kept))
    selection = {"core": core.name, "kl": args.kl, "perturbations": args.perturbations, "rank": 16,
                 "seeds_from": SELECTION_SEEDS, "batch": retention.BATCH, "other_batch": retention.BATCH - 16,
                 "counts": counts, "kept_by_kind": dict(Counter(c["kind"] for c in kept)),
                 "candidates_by_kind": dict(Counter(c["kind"] for c in candidates)),
                 "seconds": round(time.monotonic() - started)}
    _data("items_selection.json").write_text(json.dumps(selection, indent=1) + "\n")
    print(json.dumps(selection, indent=1))


if __name__ == "__main__":
    main()
