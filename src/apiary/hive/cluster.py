"""Several workers learning at once on a Ray cluster: each worker's learning run is one Ray actor with the
CPUs it asks for, on whichever node has them; every actor opens the same hive (the directory for artifacts,
the store URL for records), so it must be reachable from every node (a shared directory; PostgreSQL, or an
SQLite file on that directory for a few local nodes). Each actor runs `Hive.learn` as a single process
does, writing its own episodes, checkpoints and adapter versions, and hands back its LearnResult.

Ray is imported only here, and only when an address is given (`cluster=`, or $RAY_ADDRESS, as
`ray.init(address=...)` takes it); without one the plans run one after another in this process."""

from __future__ import annotations

import logging
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

    owned, actors = _connect(address), []
    try:
        remote = ray.remote(num_cpus=cpus_per_worker, max_restarts=0)(_LearnActor)
        for plan in plans:  # a worker whose actor is still alive elsewhere is refused by its name
            actors.append(remote.options(name=actor_name(plan.worker), namespace=NAMESPACE).remote(where))
        outcomes = _collect({actor.learn.remote(plan): (plan.worker, actor) for plan, actor in zip(plans, actors)})
    finally:  # interrupted or not, no actor outlives the call
        for actor in actors:
            ray.kill(actor)
        if owned:
            ray.shutdown()
    results = [outcomes[p.worker] for p in plans if isinstance(outcomes[p.worker], LearnResult)]
    failures = {p.worker: outcomes[p.worker] for p in plans if isinstance(outcomes[p.worker], str)}
    if failures:
        raise WorkersFailed(results, failures)
    return results


def _collect(runs: dict) -> dict[str, LearnResult | str]:
    """Each run's LearnResult, or why it failed, by worker, as the runs finish; a finished run's actor is
    ended at once, so that its CPUs go to a plan still waiting for them."""
    import ray
    from ray.exceptions import RayError, RayTaskError

    outcomes = {}
    while runs:
        (run,), _ = ray.wait(list(runs), num_returns=1)
        worker, actor = runs.pop(run)
        try:
            outcomes[worker] = ray.get(run)
        except RayTaskError as err:  # an error in the learning itself: say what it was, not where Ray ran it
            outcomes[worker] = f"{type(err.cause).__name__}: {_first_line(err.cause)}" if err.cause else _first_line(err)
        except RayError as err:  # the actor died: killed, out of memory, its node lost
            outcomes[worker] = _first_line(err)
        ray.kill(actor)
    return outcomes


def _connect(address: str) -> bool:
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
