"""A worker learns on its job: held-out eval of the version it starts from, the learning run
(hive/training.py), held-out eval of the version it ends with, and (unless told not to) the release
of that version, which makes it live."""

from __future__ import annotations

import time
from collections.abc import Mapping

from pydantic import BaseModel

from apiary.hive.evaluator import Evaluator
from apiary.hive.training import Budget, learn
from apiary.hive.worker import WorkerHandle
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
    wall_seconds: float  # everything, evals included
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


def learn_worker(store: Store, evaluator: Evaluator, worker: WorkerHandle, budget: Budget, *,
                 learners: list[str] = ("rl",), config: GRPOConfig | None = None,
                 configs: Mapping[str, LearnerConfig] | None = None,
                 lora: LoraSpec | None = None, checkpoint_every: int = 5, show_progress: bool = True, release: bool = True,
                 start_version: int | None = None) -> LearnResult:
    """Evaluate, learn within `budget` from `start_version` (default: the live version), evaluate again;
    `release`: make the version it ends with the live one."""
    started, job, core = time.perf_counter(), worker.job, worker.core
    before = evaluator.worker(worker, worker.version(start_version))
    model, run = learn(store, worker, budget, config, lora, checkpoint_every=checkpoint_every, show_progress=show_progress,
                       learners=learners, configs=configs, start_version=start_version)
    try:
        after = evaluator.model(model, core, job, worker=worker.name, adapter_version=run.version)
    finally:
        adapters.detach(model)
    if release and run.version != run.start_version:
        store.release_worker(worker.name, run.version, "learn")
    return LearnResult(
        worker=worker.name, job=job.name, before=before.score, after=after.score, heldout_items=after.n,
        episodes=run.episodes, steps=run.steps, learn_seconds=run.seconds,
        wall_seconds=time.perf_counter() - started, adapter_version=run.version, run_id=run.run_id,
        resumed=run.resumed, start_version=run.start_version,
        long_horizon={"before": before.details["long_horizon"], "after": after.details["long_horizon"]}
        if "long_horizon" in after.details else None,
        generate_tokens_per_s=run.generated_tokens / max(run.generate_seconds, 1e-9),
        train_tokens_per_s=run.trained_tokens / max(run.train_seconds, 1e-9),
        learners=run.learners, feedback=run.feedback, stopped=run.stopped,
    )
