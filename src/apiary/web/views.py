"""What each page shows, read from the store for one tenant: no HTML here, and nothing written.

The hive's own readers do the work (hive.status, evals.curves, store.browse); this module only
keeps each page to what its tenant may see: its own workers, their gate decisions and feedback, and
of the shared core versions only which of its own workers they came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from apiary.evals.curves import learning_curves
from apiary.hive.status import gate_verdict, status
from apiary.store.browse import Scope
from apiary.store.records import EvalResult, Run, RunBudget, Worker, now
from apiary.store.store import Store


@dataclass
class RunProgress:
    """A learning run as its page shows it: where it is, how its last step scored, and how far it has to go."""

    run: Run
    last_reward: float | None
    episodes: int
    seconds: float  # since it started (or resumed)
    last_step: int | None = None  # the step its budget ends at, when the budget counts steps
    seconds_left: float | None = None  # None: not known (see time_left)


@dataclass
class LearnedItem:
    """A piece of feedback an adapter version learned from, as the core lineage lists it."""

    id: int
    kind: str
    episode_id: int


@dataclass
class VersionScore:
    """The held-out score of one adapter version of a worker (0: the core alone)."""

    version: int
    score: float
    n: int
    at: str


def overview(store: Store, scope: Scope, served: dict[str, int | None]) -> dict:
    """The Overview page: the core lineage, its releases and gates, and the tenant's workers and their gates."""
    s = status(store)
    cores = []
    for c in s["core_versions"]:
        mine = [x | {"feedback": learned_feedback(store, x["worker"], x["adapter_version"])}
                for x in c["sources"] if scope.owns_worker(x.get("worker"))]
        cores.append(c | {"own_sources": mine, "other_sources": len(c["sources"]) - len(mine),
                          "verdict": "passed" if c["passed"] else ("refused: " + "; ".join(c["reasons"])
                                                                   if c["passed"] is False else "not gated")})
    workers = [w | {"served_version": served.get(w["name"]), "pending": len(store.feedback(w["name"], unconsumed=True))}
               for w in s["workers"] if scope.owns_worker(w["name"])]
    gates = [g | {"verdict": gate_verdict(g)} for g in s["worker_gates"] if scope.owns_worker(g["worker"])]
    return {"current_core": s["current_core"], "base_core": s["base_core"], "cores": cores, "releases": s["releases"],
            "workers": workers, "gates": gates[::-1]}


def learned_feedback(store: Store, worker: str, version: int) -> list[LearnedItem]:
    """The feedback that adapter `version` of `worker` (and the versions it grew from) learned from, oldest first."""
    ids = store.feedback_learned(worker, version)
    by_id = store.feedback_by_id(ids) if ids else {}
    return [LearnedItem(i, by_id[i].kind, by_id[i].episode_id) for i in sorted(set(ids)) if i in by_id]


def heldout_by_version(store: Store, worker: Worker) -> list[VersionScore]:
    """The worker's held-out score at each evaluated adapter version on its current core (the latest of each)."""
    core_only = [e for e in store.evals(None) if e.worker is None and e.job == worker.job
                 and e.core_version == worker.core_version]
    own = [e for e in store.evals(worker.name) if e.job == worker.job and e.core_version == worker.core_version]
    latest: dict[int, EvalResult] = {}
    for e in core_only[-1:] + own:
        latest[e.adapter_version] = e
    return [VersionScore(v, e.score, e.n, e.created_at.strftime("%Y-%m-%d %H:%M")) for v, e in sorted(latest.items())]


def worker_page(store: Store, scope: Scope, name: str) -> dict | None:
    """The worker page's figures; None if the tenant has no worker of that name."""
    worker = store.worker(name)
    if worker is None or not scope.owns_worker(name):
        return None
    s = status(store)
    gates = [g | {"verdict": gate_verdict(g)} for g in s["worker_gates"] if g["worker"] == name]
    releases = sorted((r for r in store.table_rows("worker_releases") if r["worker"] == name), key=lambda r: r["id"])
    feedback = store.feedback_log(name)
    return {"worker": worker, "heldout": heldout_by_version(store, worker), "gates": gates[::-1],
            "releases": releases[::-1], "feedback": feedback[::-1],
            "pending": sum(1 for f in feedback if f["learned_by_version"] is None),
            "rollback_to": sorted(store.released_worker_versions(name) - {worker.live_version}, reverse=True),
            "curve": learning_curves(store).get(name), "run": run_progress(store, name)}


def run_progress(store: Store, name: str) -> RunProgress | None:
    """The worker's run in progress (None when it has none): its step, the mean reward of its last step."""
    run = store.unfinished_run(name)
    if run is None or run.status != "running":
        return None
    episodes = store.episodes(name, run_id=run.id)
    last = [e.score for e in episodes if e.step == max(x.step or 0 for x in episodes) and e.score is not None]
    at = now()
    budget = run.budget
    return RunProgress(run=run, last_reward=sum(last) / len(last) if last else None, episodes=len(episodes),
                       seconds=(at - _aware(budget.since if budget else run.started_at)).total_seconds(),
                       last_step=budget.from_step + budget.steps if budget and budget.steps is not None else None,
                       seconds_left=time_left(budget, run.step, at) if budget else None)


def time_left(budget: RunBudget, step: int, at: datetime) -> float | None:
    """Seconds until a run at `step` ends its budget: the sooner of its minutes by the clock and its steps left
    at the pace of its steps so far. None when the budget has no limit, or counts only steps and none is done yet."""
    elapsed = (at - _aware(budget.since)).total_seconds()
    left = []
    if budget.minutes is not None:
        left.append(max(0.0, budget.minutes * 60 - elapsed))
    done = step - budget.from_step
    if budget.steps is not None and done > 0:
        left.append(max(0, budget.steps - done) * elapsed / done)
    return min(left) if left else None


def _aware(moment):
    """A stored time with its zone (SQLite gives them back without one; they are written in UTC)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
