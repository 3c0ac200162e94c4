"""Several workers learning at once on a Ray cluster: each worker's learning run is one Ray actor with the
CPUs it asks for, on whichever node has them; every actor opens the same hive (the directory for artifacts,
the store URL for records), so it must be reachable from every node (a shared directory; PostgreSQL, or an
SQLite file on that directory for a few local nodes). Each actor runs `Hive.learn` as a single process
does, writing its own episodes, checkpoints and adapter versions, and hands back its LearnResult.

The hive's consolidation and held-out evals run as Ray tasks through the same connection (hive.cluster_tasks).
Ray is imported only here and there, and only when an address is given (`cluster=`, or $RAY_ADDRESS, as
`ray.init(address=...)` takes it); without one the plans run one after another in this process."""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

from apiary.evals.gate import GateConfig
from apiary.extras import require
from apiary.hive.learning import LearnResult
from apiary.hive.mix import DEFAULT_LEARNERS
from apiary.jobs.base import Job
from apiary.learners.common import LearnerConfig
from apiary.learners.grpo import GRPOConfig
from apiary.models.adapters import LoraSpec

if TYPE_CHECKING:
    from apiary.hive.hive import Hive

NAMESPACE = "apiary"  # the Ray namespace of apiary's actors: `ray.get_actor(actor_name(w), namespace=NAMESPACE)`


@dataclass(frozen=True)
class LearnPlan:
    """One worker's learning run, with the settings `Hive.learn` takes (see there)."""
    job: Job | str
    worker: str
    overrides: tuple[str, ...] = ()
    steps: int | None = None
    minutes: float | None = None
    learners: tuple[str, ...] = DEFAULT_LEARNERS
    config: GRPOConfig | None = None
    configs: dict[str, LearnerConfig] | None = None
    lora: LoraSpec | None = None
    checkpoint_every: int = 5
    release: str = "gated"
    gate: GateConfig | None = None
    start_version: int | None = None
    seed: int = 0
    show_progress: bool = False  # a progress bar in this process (an actor's goes to its node's log)

    def run(self, hive: Hive) -> LearnResult:
        return hive.learn(self.job, self.worker, minutes=self.minutes, steps=self.steps, learners=list(self.learners),
                          config=self.config, configs=self.configs, lora=self.lora, overrides=list(self.overrides),
                          checkpoint_every=self.checkpoint_every, show_progress=self.show_progress, release=self.release,
                          gate=self.gate, start_version=self.start_version, seed=self.seed)


@dataclass(frozen=True)
class HiveAddress:
    """What a node needs to open the same hive as this process: the hive directory (absolute), the store's
    URL, the core it was opened with, its prompt format and the artifact URL (if it shares its artifacts)."""
    path: str
    db_url: str
    core: str | None = None
    template: str | None = None
    artifacts_url: str | None = None

    def open(self) -> Hive:
        from apiary.hive.hive import Hive  # hive.py imports this module

        return Hive(self.path, core=self.core, db_url=self.db_url, template=self.template, artifacts_url=self.artifacts_url)


def ray_address(cluster: str | None) -> str | None:
    """The Ray address a call runs on: `cluster`, else $RAY_ADDRESS, else None (run here, without Ray)."""
    return cluster or os.environ.get("RAY_ADDRESS") or None


@dataclass(frozen=True)
class Failed:
    """Why one run on the cluster failed: `why` in one line, and `error`, the run's own exception when the
    run itself raised one (None when Ray lost it: its actor or task killed, out of memory, its node lost)."""
    why: str
    error: BaseException | None = None


class ClusterUnreachable(ConnectionError):
    """No Ray cluster answers at the address given; the message names it."""


class WorkersFailed(RuntimeError):
    """Some workers' runs failed (an actor killed, a node lost, an error in learning) while the others
    finished: `results` holds the finished ones, `failures` why each other one failed (worker -> reason).
    A failed worker resumes from its last checkpoint when it learns again."""

    def __init__(self, results: list[LearnResult], failures: dict[str, str]):
        super().__init__("; ".join(f"worker {w!r} failed: {why}" for w, why in failures.items()))
        self.results, self.failures = results, failures


def actor_name(worker: str) -> str:
    """The Ray actor learning for `worker` (one at a time per worker: a second is refused by name)."""
    return f"learn:{worker}"


class _LearnActor:
    """A Ray actor (made remote in `learn_on_cluster`): opens the hive once, then learns one plan."""

    def __init__(self, where: HiveAddress):
        self.hive = where.open()

    def learn(self, plan: LearnPlan) -> LearnResult:
        return plan.run(self.hive)


def learn_on_cluster(where: HiveAddress, plans: list[LearnPlan], address: str, cpus_per_worker: float = 1,
                     ) -> list[LearnResult]:
    """Each plan as one actor with `cpus_per_worker` CPUs on the Ray cluster at `address`, all at once (as
    far as the cluster's CPUs allow; the rest wait for a free node). Results come back in the plans' order;
    if any run failed, WorkersFailed is raised once every other run has finished."""
    require("cluster", "ray")
    import ray

    owned, actors = connect(address), {}
    try:
        remote = ray.remote(num_cpus=cpus_per_worker, max_restarts=0)(_LearnActor)
        for plan in plans:  # a worker whose actor is still alive elsewhere is refused by its name
            actors[plan.worker] = remote.options(name=actor_name(plan.worker), namespace=NAMESPACE).remote(where)
        outcomes = collect({actors[p.worker].learn.remote(p): p.worker for p in plans},
                           finished=lambda worker: ray.kill(actors[worker]))
    finally:  # interrupted or not, no actor outlives the call
        for actor in actors.values():
            ray.kill(actor)
        if owned:
            ray.shutdown()
    results = [outcomes[p.worker] for p in plans if not isinstance(outcomes[p.worker], Failed)]
    failures = {p.worker: outcomes[p.worker].why for p in plans if isinstance(outcomes[p.worker], Failed)}
    if failures:
        raise WorkersFailed(results, failures)
    return results


def collect(runs: dict, finished=None) -> dict:
    """Each run's result, or Failed saying why it failed, by the key `runs` gives its object ref, as the runs
    finish; `finished(key)` is called as each one does (learning ends its actor there, so that its CPUs go
    to a plan still waiting for them)."""
    import ray
    from ray.exceptions import RayError, RayTaskError

    outcomes = {}
    while runs:
        (run,), _ = ray.wait(list(runs), num_returns=1)
        key = runs.pop(run)
        try:
            outcomes[key] = ray.get(run)
        except RayTaskError as err:  # an error in the run itself: say what it was, not where Ray ran it
            cause = err.cause
            outcomes[key] = Failed(f"{type(cause).__name__}: {_first_line(cause)}" if cause else _first_line(err), cause)
        except RayError as err:  # the actor or task died: killed, out of memory, its node lost
            outcomes[key] = Failed(_first_line(err))
        if finished is not None:
            finished(key)
    return outcomes


def connect(address: str) -> bool:
    """Connect this process to the cluster unless it already is (then the caller's connection is used as is);
    True if this call connected. A host:port that takes no connection is refused at once: Ray itself
    would wait for it indefinitely."""
    import ray

    if ray.is_initialized():
        return False
    _check_reachable(address)
    try:
        ray.init(address=address, namespace=NAMESPACE, logging_level=logging.WARNING, log_to_driver=False)
    except ConnectionError as err:
        raise ClusterUnreachable(f"no Ray cluster at {address!r}: {_first_line(err)} (start one with "
                                 "`ray start --head`, then give its address as --cluster or RAY_ADDRESS)") from None
    return True


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """A "host:port" or "ray://host:port" address must accept a TCP connection ("auto" and "local" are Ray's)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        if address in ("auto", "local"):
            return
        raise ClusterUnreachable(f"Ray address {address!r} is not host:port, ray://host:port, auto or local")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        raise ClusterUnreachable(f"cannot reach the Ray cluster at {address!r}: {err.strerror or err} (is its head "
                                 "running? `ray start --head` prints the address to give as --cluster or RAY_ADDRESS)"
                                 ) from None


def _first_line(err: BaseException) -> str:
    lines = [line for line in str(err).splitlines() if line.strip()]
    return lines[0][:300] if lines else type(err).__name__
