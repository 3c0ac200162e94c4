"""The hive's consolidation and held-out evals, here or as Ray tasks. A plan says what to run and runs it on
an open hive (`plan.run(hive)`); with a Ray address the same plan runs as a Ray task with the CPUs it asks
for, on whichever node has them, which opens the same hive from its HiveAddress (as a learning actor does:
hive.cluster) and hands back the result. The consolidation is one task (candidate, evals, gate, release);
the evals are one task each, all at once, their results in the order asked.

Ray is imported only in the functions that take an address (through hive.cluster's connection)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from apiary.extras import require
from apiary.hive.cluster import Failed, HiveAddress, collect, connect
from apiary.hive.consolidate import ConsolidateConfig, ConsolidateResult, choose_sources, consolidate
from apiary.jobs.base import Job
from apiary.store.records import EvalResult

if TYPE_CHECKING:
    from apiary.hive.hive import Hive


@dataclass(frozen=True)
class ConsolidatePlan:
    """One consolidation, with the settings `Hive.consolidate` takes (see there)."""
    config: ConsolidateConfig
    workers: tuple[str, ...] | None = None
    jobs: dict[str, Job] | None = None  # worker -> job, for jobs defined in Python
    show_progress: bool = False  # a progress bar in this process (a task's goes to its node's log)

    def run(self, hive: Hive) -> ConsolidateResult:
        given, records = self.jobs or {}, hive.store.workers()
        sources = choose_sources(records, hive.store.current_core(), list(self.workers) if self.workers else None)
        for record in sources:
            if record.origin is None and record.name not in given:
                raise ValueError(f"worker {record.name!r} learned a job defined in Python; pass it: "
                                 f"consolidate(jobs={{{record.name!r}: job}})")
        handles = {r.name: hive.worker(r, given.get(r.name)) for r in records if r.origin or r.name in given}
        return consolidate(hive.store, hive.cores, hive.evaluator, [handles[r.name] for r in sources],
                           {name: h.job for name, h in handles.items()}, self.config, self.show_progress)


@dataclass(frozen=True)
class EvalPlan:
    """One held-out eval, measured afresh: the worker's adapter `version` (default: its live one) on `job`
    (default: its own), or, with no worker, the current core on `job`."""
    worker: str | None
    job: Job | None = None
    version: int | None = None

    @property
    def label(self) -> str:
        return f"worker {self.worker!r}" if self.worker is not None else f"the core on {self.job.name!r}"

    def run(self, hive: Hive) -> EvalResult:
        if self.worker is None:
            return hive.evaluator.adapter(self.job, hive.core, None, 0, reuse=False)
        return hive.evaluator.worker(hive.worker(self.worker, self.job), self.version, reuse=False)


class TasksFailed(RuntimeError):
    """Some of the hive's tasks on the cluster failed while the others finished: `results` holds the finished
    ones' results (in the order asked), `failures` why each other one failed (what it was -> reason)."""

    def __init__(self, results: list, failures: dict[str, str]):
        super().__init__("; ".join(f"{what} failed: {why}" for what, why in failures.items()))
        self.results, self.failures = results, failures


def consolidate_on_cluster(where: HiveAddress, plan: ConsolidatePlan, address: str, cpus: float = 1,
                           ) -> ConsolidateResult:
    """The consolidation as one Ray task with `cpus` CPUs on the cluster at `address`; its result. An error in
    the consolidation itself is raised as it would be here; a task Ray lost raises TasksFailed."""
    (outcome,) = run_tasks(where, [plan], address, cpus)
    if isinstance(outcome, Failed):
        if isinstance(outcome.error, Exception):
            raise outcome.error
        raise TasksFailed([], {"the consolidation": outcome.why})
    return outcome


def eval_on_cluster(where: HiveAddress, plans: list[EvalPlan], address: str, cpus_per_eval: float = 1,
                    ) -> list[EvalResult]:
    """Each eval as one Ray task with `cpus_per_eval` CPUs on the cluster at `address`, all at once (as far as
    the cluster's CPUs allow); results in the plans' order. If any failed, TasksFailed is raised once every
    other one has finished, with the finished ones' results."""
    outcomes = run_tasks(where, plans, address, cpus_per_eval)
    failures = {plan.label: o.why for plan, o in zip(plans, outcomes) if isinstance(o, Failed)}
    results = [o for o in outcomes if not isinstance(o, Failed)]
    if failures:
        raise TasksFailed(results, failures)
    return results


def run_tasks(where: HiveAddress, plans: list, address: str, cpus: float) -> list:
    """Each plan as one Ray task with `cpus` CPUs that opens the hive at `where` and runs `plan.run(hive)`,
    all at once; each one's result, or Failed saying why, in the plans' order. Interrupted, the tasks still
    running are cancelled."""
    if not plans:  # nothing to run: no connection either
        return []
    require("cluster", "ray")
    import ray

    owned, runs = connect(address), {}
    try:
        remote = ray.remote(num_cpus=cpus, max_retries=0)(_run_plan)
        runs = {remote.remote(where, plan): i for i, plan in enumerate(plans)}
        outcomes = collect(dict(runs))
    except BaseException:
        for run in runs:  # a finished task is left as it is
            try:
                ray.cancel(run, force=True)
            except Exception:  # noqa: BLE001  (the connection may be gone: the first error is the one to raise)
                pass
        raise
    finally:
        if owned:
            ray.shutdown()
    return [outcomes[i] for i in range(len(plans))]


def _run_plan(where: HiveAddress, plan: ConsolidatePlan | EvalPlan):
    """A Ray task (made remote in `run_tasks`): open the hive, run the plan, hand back its result."""
    return plan.run(where.open())
