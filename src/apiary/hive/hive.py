"""The hive: the store, the core, and the workers learning on jobs. The Python API's engine."""

from __future__ import annotations

import os
import time
from pathlib import Path

from pydantic import BaseModel

from apiary.evals.heldout import evaluate
from apiary.hive.training import Budget, learn
from apiary.jobs.base import Job
from apiary.jobs.spec import load_job
from apiary.learners.grpo import GRPOConfig
from apiary.models import adapters
from apiary.models.adapters import LoraSpec
from apiary.models.core import Core, load_core
from apiary.store.export import export
from apiary.store.records import EvalResult
from apiary.store.store import Store

DEFAULT_HIVE = "hive"


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


class Hive:
    """A hive directory (or database URL) and the core its workers start from."""

    def __init__(self, path: str | Path | None = None, core: str | None = None, db_url: str | None = None):
        self.path = Path(path or os.environ.get("APIARY_HIVE", DEFAULT_HIVE))
        self.store = Store(self.path, url=db_url)
        self.core_source = core
        self._core: Core | None = None

    @property
    def core(self) -> Core:
        if self._core is None:
            self._core = load_core(self.core_source)
        return self._core

    def job(self, spec: Job | str | Path, overrides: list[str] | None = None) -> Job:
        return spec if isinstance(spec, Job) else load_job(spec, overrides)

    def learn(self, job: Job | str, worker: str, *, minutes: float | None = None, steps: int | None = None,
              config: GRPOConfig | None = None, lora: LoraSpec | None = None, overrides: list[str] | None = None,
              checkpoint_every: int = 5, show_progress: bool = True) -> LearnResult:
        """Evaluate, learn from verifiable rewards within the budget, evaluate again."""
        started = time.perf_counter()
        job = self.job(job, overrides)
        latest = self.store.latest_adapter(worker)
        before = self._eval_version(job, worker if latest else None, latest.version if latest else 0)
        model, run = learn(self.store, self.core, job, worker, Budget(steps=steps, minutes=minutes), config, lora,
                           checkpoint_every=checkpoint_every, show_progress=show_progress)
        try:
            after = self._record(evaluate(model, self.core.tokenizer, job, self.core.stop_token_ids,
                                          worker=worker, adapter_version=run.version))
        finally:
            adapters.detach(model)
        return LearnResult(
            worker=worker, job=job.name, before=before.score, after=after.score, heldout_items=after.n,
            episodes=run.episodes, steps=run.steps, learn_seconds=run.seconds,
            wall_seconds=time.perf_counter() - started, adapter_version=run.version, run_id=run.run_id,
            resumed=run.resumed,
            generate_tokens_per_s=run.generated_tokens / max(run.generate_seconds, 1e-9),
            train_tokens_per_s=run.trained_tokens / max(run.train_seconds, 1e-9),
        )

    def eval(self, worker: str | None = None, jobs: list[Job | str] | None = None) -> list[EvalResult]:
        """Held-out scores: a worker's latest adapter on its job, or the core on the given jobs."""
        if worker is not None:
            latest = self.store.latest_adapter(worker)
            job = self.job(*self._worker_job(worker)) if not jobs else self.job(jobs[0])
            return [self._eval_version(job, worker if latest else None, latest.version if latest else 0, reuse=False)]
        if jobs:
            return [self._eval_version(self.job(j), None, 0, reuse=False) for j in jobs]
        results = []
        for row in self.store.workers():
            results += self.eval(worker=row["name"])
        return results

    def export(self, out: str | Path | None = None, fmt: str = "parquet") -> dict:
        return export(self.store, Path(out) if out else self.path / "export", fmt)

    def _worker_job(self, worker: str) -> tuple[str, list[str]]:
        for row in self.store.workers():
            if row["name"] == worker:
                origin = row["job_spec"].get("origin")
                if not origin:
                    raise ValueError(f"worker {worker!r} was trained on a job defined in Python; pass the job to eval")
                return origin["spec"], origin["overrides"]
        raise ValueError(f"no worker named {worker!r} in hive {self.path}")

    def _eval_version(self, job: Job, worker: str | None, version: int, reuse: bool = True) -> EvalResult:
        """Held-out eval of (worker, version) on job; reuses a stored result on the same held-out items."""
        task_ids = [t.id for t in job.source.heldout()]
        if reuse:
            for old in reversed(self.store.evals(worker)):
                if (old.job == job.name and old.adapter_version == version and old.worker == worker
                        and old.details.get("task_ids") == task_ids):
                    return old
        model = self.core.model
        if version:
            model = adapters.attach(model, LoraSpec(), path=self.store.adapter_dir(worker, version))
        try:
            result = evaluate(model, self.core.tokenizer, job, self.core.stop_token_ids, worker=worker, adapter_version=version)
        finally:
            if version:
                adapters.detach(model)
        return self._record(result)

    def _record(self, result: EvalResult) -> EvalResult:
        result.id = self.store.add_eval(result)
        return result
