"""The gate for a worker's new adapter version: it goes live only if it is no worse than the live one.

The candidate is measured like a core candidate (evals/candidate.py): its held-out score on the
worker's job against the live version's, its retention KL and right-to-wrong flips against the
base core, and its training text (the prompts and feedback it learned from) checked for held-out
items. The decision is stored either way ("worker:NAME:V"); what happens next is the `Release`
policy: by default a version that passed is released, which is what a running server watches for.

A user may override the gate (`Release.UNGATED`): the version is released without passing it, the
retention suite (the slow part) is not run, and both the release row (reason "ungated") and the
decision (not passed, reason `OVERRIDE`) say so.
"""

from __future__ import annotations

import time
from enum import Enum

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

OVERRIDE = "released ungated by the user (retention not measured)"


class Release(str, Enum):
    """What becomes of a new adapter version after the gate."""

    GATED = "gated"  # measured; released only if it passed
    UNGATED = "ungated"  # released without passing the gate: a user's override, on the record
    NONE = "none"  # measured and the decision stored; nothing released


class WorkerGateResult(BaseModel):
    worker: str
    version: int
    live: int  # the live version it was compared with
    job: str
    candidate: float
    released: float
    retention_kl: float | None  # None: not measured (an ungated release)
    flips: dict | None
    contamination: int
    passed: bool
    reasons: list[str]
    released_now: bool
    decision_id: int
    override: str | None = None  # set when the user released it ungated
    config: dict = {}  # the gate's bounds
    seconds: float = 0.0  # the gate's own time (the candidate's held-out eval is usually reused)


def gate_worker(store: Store, evaluator: Evaluator, base: Core, worker: WorkerHandle, version: int,
                config: GateConfig = GateConfig(), release: Release | str = Release.GATED) -> WorkerGateResult:
    """Measure adapter `version` of the worker against its live version (on its job, over its core;
    retention against the `base` core), store the decision, and release the version as `release` says."""
    started, release = time.perf_counter(), Release(release)
    live, core, job, name = worker.live_version, worker.core, worker.job, worker.name
    candidate = evaluator.adapter(job, core, name, version)  # newer than the handle's snapshot, perhaps
    current = evaluator.worker(worker)
    kept = None if release is Release.UNGATED else _retention(store, base, worker, version)
    found = find_contamination(training_texts(store, [(name, version)]), [job])
    decision = decide(evidence({job.name: candidate.score}, {job.name: current.score}, kept, found), config)
    override = OVERRIDE if release is Release.UNGATED else None
    passed, reasons = decision.passed and override is None, decision.reasons + ([override] if override else [])
    decision_id = store.add_decision(GateDecision(
        candidate=f"worker:{name}:{version}", passed=passed, reasons=reasons,
        evidence=decision.evidence | {"live": live, "override": override,
                                      "eval_ids": {"candidate": candidate.id, "released": current.id}},
        config=decision.config))
    released_now = release is Release.UNGATED or (passed and release is Release.GATED)
    if released_now:
        store.release_worker(name, version, "ungated" if override else "gate")
    return WorkerGateResult(worker=name, version=version, live=live, job=job.name, candidate=candidate.score,
                            released=current.score, retention_kl=kept.kl if kept else None,
                            flips=kept.flips if kept else None, contamination=len(found.hits), passed=passed,
                            reasons=reasons, released_now=released_now, decision_id=decision_id, override=override,
                            config=decision.config, seconds=time.perf_counter() - started)


def _retention(store: Store, base: Core, worker: WorkerHandle, version: int):
    """The retention suite on adapter `version` over the worker's core, against the `base` core."""
    model = adapters.attach(worker.core.model, LoraSpec(), path=store.fetched(store.adapter_dir(worker.name, version)))
    try:
        return measure_retention(model, base, cache_dir(), adapter_over_base=worker.core.version == 0)
    finally:
        adapters.detach(model)
