"""The gate for a worker's new adapter version: it goes live only if it is no worse than the live one.

The candidate is measured like a core candidate (evals/candidate.py): its held-out score on the
worker's job against the live version's, its retention KL and right-to-wrong flips against the
base core, and its training text (the prompts and feedback it learned from) checked for held-out
items. The decision is stored either way ("worker:NAME:V"); a version that passed is released,
which is what a running server watches for.
"""

from __future__ import annotations

from pydantic import BaseModel

from apiary.evals.candidate import evidence, find_contamination, measure_retention
from apiary.evals.gate import GateConfig, decide
from apiary.hive.consolidate import training_texts
from apiary.hive.evaluator import Evaluator
from apiary.hive.worker import WorkerHandle
from apiary.models import adapters
from apiary.models.adapters import LoraSpec
from apiary.models.core import Core, cache_dir
from apiary.store.records import GateDecision
from apiary.store.store import Store


class WorkerGateResult(BaseModel):
    worker: str
    version: int
    live: int  # the live version it was compared with
    job: str
    candidate: float
    released: float
    retention_kl: float
    flips: dict
    contamination: int
    passed: bool
    reasons: list[str]
    released_now: bool
    decision_id: int


def gate_worker(store: Store, evaluator: Evaluator, base: Core, worker: WorkerHandle, version: int,
                config: GateConfig = GateConfig(), release: bool = True) -> WorkerGateResult:
    """Measure adapter `version` of the worker against its live version (on its job, over its core;
    retention against the `base` core), store the decision, and release the version if it passed (and
    `release`)."""
    live, core, job, name = worker.live_version, worker.core, worker.job, worker.name
    candidate = evaluator.adapter(job, core, name, version)  # newer than the handle's snapshot, perhaps
    released = evaluator.worker(worker)
    model = adapters.attach(core.model, LoraSpec(), path=store.adapter_dir(name, version))
    try:
        kept = measure_retention(model, base, cache_dir(), adapter_over_base=core.version == 0)
    finally:
        adapters.detach(model)
    found = find_contamination(training_texts(store, [(name, version)]), [job])
    decision = decide(evidence({job.name: candidate.score}, {job.name: released.score}, kept, found), config)
    decision_id = store.add_decision(GateDecision(
        candidate=f"worker:{name}:{version}", passed=decision.passed, reasons=decision.reasons,
        evidence=decision.evidence | {"live": live, "eval_ids": {"candidate": candidate.id, "released": released.id}},
        config=decision.config))
    if decision.passed and release:
        store.release_worker(name, version, "gate")
    return WorkerGateResult(worker=name, version=version, live=live, job=job.name, candidate=candidate.score,
                            released=released.score, retention_kl=kept.kl, flips=kept.flips, contamination=len(found.hits),
                            passed=decision.passed, reasons=decision.reasons, released_now=decision.passed and release,
                            decision_id=decision_id)
