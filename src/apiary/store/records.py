"""Typed records of the experience store."""

from __future__ import annotations

from datetime import datetime, timezone

from typing import Literal

from pydantic import BaseModel, Field


def now() -> datetime:
    return datetime.now(timezone.utc)


class Episode(BaseModel):
    """One attempt at one task: the messages, the completion and its score."""

    id: int | None = None
    job: str
    task_id: str
    messages: list[dict]
    completion: str
    score: float | None = Field(default=None, ge=0.0, le=1.0)  # None: not scored (a served reply)
    answer: str | None = None  # the task's reference answer, when the job knows it
    origin: str | None = None  # what wrote it: rl | practice | critique | attempt | serve
    worker: str | None = None
    adapter_version: int = 0  # 0: the core alone
    run_id: int | None = None
    step: int | None = None
    created_at: datetime = Field(default_factory=now)
    tenant: str | None = None  # served episodes: whose request it answered
    info: dict | None = None  # multi-turn episodes: turns, invalid moves, success, cut_off


FeedbackKind = Literal["reward", "correction", "critique", "preference"]


class Worker(BaseModel):
    """A worker as the store holds it: its job (and where that job can be rebuilt from), the core
    version its adapters sit on, its tenant, and its live and latest adapter versions.

    The live version is the one that is served, evaluated, learned on and consolidated unless the
    user names another: a release (by `learn`, by the gate) or a rollback sets it. The latest version
    is the newest one saved, live or not (a refused or rolled-back version stays latest)."""

    name: str
    job: str
    core: str  # the core source it was made with
    job_spec: dict = Field(default_factory=dict)
    core_version: int = 0
    tenant: str | None = None  # None: the local tenant
    prompt_format: str = "chat"  # how prompts are written for its core (models.prompt_format)
    created_at: datetime = Field(default_factory=now)
    live_version: int = 0  # 0: the core alone
    latest_version: int = 0
    has_release: bool = False  # False: no release names its live version, so its latest version is live

    @property
    def origin(self) -> tuple[str, list[str]] | None:
        """The job spec and overrides its job is rebuilt from; None for a job defined in Python."""
        origin = self.job_spec.get("origin")
        return (origin["spec"], list(origin["overrides"])) if origin else None


class Feedback(BaseModel):
    """What someone said about an episode: a reward in [0, 1], the right output, words, or a
    preference for this episode over another one of the same prompt."""

    id: int | None = None
    episode_id: int
    kind: FeedbackKind
    reward: float | None = None
    text: str | None = None  # correction or critique
    other_episode_id: int | None = None  # preference: `episode_id` is preferred over this one
    by: str = "user"
    conflict: str | None = None  # set by the store when it contradicts earlier feedback
    created_at: datetime = Field(default_factory=now)


class AdapterVersion(BaseModel):
    """A saved adapter state of a worker, with the episodes that trained it since its parent."""

    id: int | None = None
    worker: str
    version: int
    parent: int
    path: str
    run_id: int | None = None
    step: int
    final: bool = False
    created_at: datetime = Field(default_factory=now)


class EvalResult(BaseModel):
    """Held-out score of a worker's adapter version (0: the core) on a job."""

    id: int | None = None
    worker: str | None = None
    adapter_version: int = 0
    job: str
    split: str = "heldout"
    n: int
    score: float
    details: dict = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=now)
    core_version: int | None = 0


class RunBudget(BaseModel):
    """What a run was given when it started or resumed: steps and/or minutes of learning (None: no limit of that
    kind), counted from step `from_step` at `since`. It lets a page say how far a running run has to go."""

    steps: int | None = None
    minutes: float | None = None
    from_step: int = 0
    since: datetime = Field(default_factory=now)


class Run(BaseModel):
    """One learning run of a worker on a job."""

    id: int | None = None
    worker: str
    job: str
    learner: str
    config: dict = Field(default_factory=dict)
    status: str = "running"  # running | finished | interrupted
    step: int = 0
    started_at: datetime = Field(default_factory=now)
    finished_at: datetime | None = None
    budget: RunBudget | None = None  # None: not recorded (a run of apiary before budgets were stored)


class CoreVersion(BaseModel):
    """A core the hive built from workers: the base core plus a core adapter, with its lineage."""

    version: int
    parent: int
    method: str
    path: str
    sources: list[dict] = Field(default_factory=list)  # the worker adapter versions it was built from
    details: dict = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=now)


class GateDecision(BaseModel):
    """Whether a candidate was released, why not if it was not, and the numbers behind it."""

    id: int | None = None
    candidate: str
    passed: bool
    reasons: list[str] = Field(default_factory=list)
    evidence: dict = Field(default_factory=dict)
    config: dict = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=now)
