"""A worker learns on its job: held-out eval of the version it starts from, the learning run
(hive/training.py), held-out eval of the version it ends with, and the worker gate on that version
(hive/worker_gate.py), which releases it (makes it live) only if it passed, unless the user
overrides the gate or asks for no release. A refused version is kept but not live, and the next
run learns on from the live version."""

from __future__ import annotations

import time
from collections.abc import Mapping

from pydantic import BaseModel

from apiary.evals.gate import GateConfig
from apiary.hive.evaluator import Evaluator
from apiary.hive.mix import DEFAULT_LEARNERS
from apiary.hive.training import Budget, learn
from apiary.hive.worker import WorkerHandle
from apiary.hive.worker_gate import Release, WorkerGateResult, gate_worker
from apiary.learners.common import LearnerConfig
from apiary.learners.grpo import GRPOConfig
from apiary.models import adapters
from apiary.models.adapters import LoraSpec
from apiary.store.store import Store


class LearnResult(BaseModel):
    worker: str
    job: str
    before: float
    after: float
    heldout_items: int
    episodes: int
    steps: int
    learn_seconds: float  # sampling + updates, evals excluded
    wall_seconds: float  # everything, evals and the gate included
    adapter_version: int
    run_id: int
    resumed: bool
    generate_tokens_per_s: float
    train_tokens_per_s: float
    learners: list[str] = ["rl"]
    feedback: int = 0  # pieces of feedback learned from, counting each epoch
    long_horizon: dict | None = None  # multi-turn jobs: {"before": metrics, "after": metrics} (evals.long_horizon)
    start_version: int = 0  # the adapter version it learned on from
    stopped: str = ""  # why learning ended: "budget" or "feedback used up"
    gate: WorkerGateResult | None = None  # the gate's decision on the new version (None: nothing new was learned)
    live_version: int = 0  # the worker's live adapter version after the run and the gate
    closing_phase: bool = False  # the last of `steps` was distil_back's closing phase toward the core
    held_back: list[dict] = []  # givers flagged as unreliable whose feedback the run left out (evals.givers figures)


def learn_worker(store: Store, evaluator: Evaluator, worker: WorkerHandle, budget: Budget, *,
                 learners: list[str] = DEFAULT_LEARNERS, config: GRPOConfig | None = None,
                 configs: Mapping[str, LearnerConfig] | None = None,
                 lora: LoraSpec | None = None, checkpoint_every: int = 5, show_progress: bool = True,
                 release: Release | str = Release.GATED, gate: GateConfig | None = None,
                 start_version: int | None = None, seed: int = 0) -> LearnResult:
    """Evaluate, learn within `budget` from `start_version` (default: the live version), evaluate again,
    then put the new version through the worker gate (`gate`: default, the default gate), which
    releases it as `release` says (see worker_gate.Release). `seed`: the run's sampling and shuffling."""
    started, job, core, release = time.perf_counter(), worker.job, worker.core, Release(release)
    before = evaluator.worker(worker, worker.version(start_version))
    if store.worker(worker.name) is not None:
        _pin_live(store, worker)  # versions saved while it learns must not go live before the gate
    model, run = learn(store, worker, budget, config, lora, checkpoint_every=checkpoint_every, show_progress=show_progress,
                       learners=learners, configs=configs, start_version=start_version, seed=seed)
    try:
        after = evaluator.model(model, core, job, worker=worker.name, adapter_version=run.version)
    finally:
        adapters.detach(model)
    _pin_live(store, worker)  # a new worker, stored by its run
    decision = None
    if run.version != run.start_version:
        decision = gate_worker(store, evaluator, evaluator.cores.at(0), worker, run.version, gate or GateConfig(), release)
    return LearnResult(
        worker=worker.name, job=job.name, before=before.score, after=after.score, heldout_items=after.n,
        episodes=run.episodes, steps=run.steps, learn_seconds=run.seconds,
        wall_seconds=time.perf_counter() - started, adapter_version=run.version, run_id=run.run_id,
        resumed=run.resumed, start_version=run.start_version,
        long_horizon={"before": before.details["long_horizon"], "after": after.details["long_horizon"]}
        if "long_horizon" in after.details else None,
        generate_tokens_per_s=run.generated_tokens / max(run.generate_seconds, 1e-9),
        train_tokens_per_s=run.trained_tokens / max(run.train_seconds, 1e-9),
        learners=run.learners, feedback=run.feedback, stopped=run.stopped, gate=decision,
        live_version=store.worker(worker.name).live_version, held_back=run.held_back,
        closing_phase=run.closing_phase,
    )


def _pin_live(store: Store, worker: WorkerHandle) -> None:
    """A worker never released has its latest version live; record a release of its live version (as
    the handle read it) so that only the gate, the user's override or a rollback changes what is live."""
    if not worker.record.has_release and not store.worker(worker.name).has_release:
        store.release_worker(worker.name, worker.live_version, "pin")
