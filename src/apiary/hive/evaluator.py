"""Held-out evals of the hive's models, each recorded, and each run once: a stored result for the same
(core version, worker, adapter version, job, held-out items) is reused."""

from __future__ import annotations

from apiary.evals.heldout import evaluate
from apiary.hive.cores import Cores
from apiary.hive.worker import WorkerHandle
from apiary.jobs.base import Job
from apiary.models import adapters
from apiary.models.adapters import LoraSpec
from apiary.models.core import Core
from apiary.store.records import EvalResult
from apiary.store.store import Store


class Evaluator:
    """Evaluates cores, workers' adapter versions and models in memory; stores every result."""

    def __init__(self, store: Store, cores: Cores):
        self.store, self.cores = store, cores

    def worker(self, worker: WorkerHandle, version: int | None = None, job: Job | None = None,
               reuse: bool = True) -> EvalResult:
        """Adapter `version` of the worker (default: its live one; 0: its core alone) on `job` (default: its own)."""
        version = worker.version(version)
        return self.adapter(job or worker.job, worker.core, worker.name if version else None, version, reuse)

    def core(self, job: Job, version: int, reuse: bool = True) -> EvalResult:
        """Core version `version` alone on `job`."""
        return self.adapter(job, self.cores.at(version), None, 0, reuse)

    def adapter(self, job: Job, core: Core, worker: str | None, version: int, reuse: bool = True) -> EvalResult:
        """Adapter `version` of `worker` over `core` (version 0: the core alone) on `job`."""
        if reuse:
            task_ids = [t.id for t in job.source.heldout()]
            for old in reversed(self.store.evals(worker)):
                if (old.job == job.name and old.adapter_version == version and old.worker == worker
                        and old.core_version == core.version and old.details.get("task_ids") == task_ids):
                    return old
        directory = self.store.fetched(self.store.adapter_dir(worker, version)) if version else None
        model = adapters.attach(core.model, LoraSpec(), path=directory) if version else core.model
        try:
            return self.model(model, core, job, worker=worker, adapter_version=version)
        finally:
            if version:
                adapters.detach(model)

    def model(self, model, core: Core, job: Job, *, worker: str | None = None, adapter_version: int = 0,
              core_version: int | None = None) -> EvalResult:
        """A model in memory (`core`'s weights, perhaps with an adapter attached) on `job`, recorded as
        (worker, adapter_version, core_version: default the core's)."""
        result = evaluate(model, core.tokenizer, job, core.stop_token_ids, worker=worker, adapter_version=adapter_version,
                          core_version=core.version if core_version is None else core_version)
        result.id = self.store.add_eval(result)
        return result
