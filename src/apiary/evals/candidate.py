"""Everything the gate needs to know about a candidate model, measured in one place.

A candidate is any model that might go live: a new core (the current core plus a core adapter)
or a worker's adapter. It is measured on every job's held-out split, on the retention suite
(KL to the base model on the retention prompts, right-to-wrong flips on the retention items),
and its training text is checked for held-out items.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from apiary.evals import contamination, noise_floor, retention
from apiary.evals.forgetting import flips
from apiary.evals.gate import Evidence
from apiary.jobs.base import Job
from apiary.models import adapters
from apiary.models.core import Core
from apiary.store.artifacts import atomic_write_json


@dataclass
class Retention:
    kl: float
    item_scores: list[float]
    flips: dict[str, int]


@dataclass
class Contamination:
    hits: list[contamination.Hit] = field(default_factory=list)
    examples: list[dict] = field(default_factory=list)  # a few hits as text, for people


def measure_retention(model, base: Core, cache_dir: Path, adapter_over_base: bool) -> Retention:
    """KL(base || model) on the retention prompts and flips on the retention items, against the base.

    `adapter_over_base`: `model` is a PEFT model directly over `base.model` (its disabled adapter is
    the base), so the base is not run as a separate model (it would include the adapter). The
    candidate answers the items with its adapter merged into the weights (it is not trained here, and
    PEFT's extra matmuls on every decoded token cost more than the merge)."""
    replies = retention.references(base, cache_dir)
    kl = retention.retention_kl(model, None if adapter_over_base else base.model, base.tokenizer, replies)
    with adapters.merged(model):
        scores = retention.item_scores(model, base.tokenizer, base.stop_token_ids)
    base_scores = base_item_scores(base, cache_dir, model if adapter_over_base else None)
    return Retention(kl=kl, item_scores=scores, flips=flips(base_scores, scores))


def base_item_scores(base: Core, cache_dir: Path, peft_model=None) -> list[float]:
    """The base core's scores on the retention items, computed once per core and cached."""
    key = hashlib.sha1(json.dumps([base.name, retention.items(), retention.BATCH]).encode()).hexdigest()[:12]
    path = cache_dir / f"retention-items-{key}.json"
    if path.is_file():
        return json.loads(path.read_text())
    if peft_model is not None:
        with peft_model.disable_adapter():
            scores = retention.item_scores(peft_model, base.tokenizer, base.stop_token_ids)
    else:
        scores = retention.item_scores(base.model, base.tokenizer, base.stop_token_ids)
    atomic_write_json(path, scores)
    return scores


def find_contamination(training_texts: list[str], jobs: list[Job]) -> Contamination:
    """Held-out items of every job, and the retention suite, found in the training text."""
    groups = [(job.name, [job.messages(t)[-1]["content"] for t in job.source.heldout()]) for job in jobs]
    groups.append(("retention items", [it["question"] for it in retention.items()]))
    groups.append(("retention prompts", retention.prompts()))
    found = Contamination()
    for name, heldout in groups:
        for hit in contamination.find(training_texts, heldout):
            found.hits.append(hit)
            if len(found.examples) < 5:
                found.examples.append({"heldout_set": name, "heldout": heldout[hit.heldout_index][:200],
                                       "training": training_texts[hit.train_index][:200], "overlap": hit.overlap})
    return found


def evidence(candidate: dict[str, float], released: dict[str, float], kept: Retention | None,
             found: Contamination) -> Evidence:
    """The gate's evidence; the noise floor is the shipped suite's measured floor at the candidate's KL."""
    return Evidence(candidate=candidate, released=released, retention_kl=kept.kl if kept else None,
                    flips=kept.flips if kept else None, contamination=found.hits,
                    noise_floor=noise_floor.expected_flips(kept.kl, retention.items()) if kept else None)
