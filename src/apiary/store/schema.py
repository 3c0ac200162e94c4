"""Tables of the experience store as they are now (SQLAlchemy Core; SQLite by default, PostgreSQL by URL).

The database is made and migrated by the Alembic revisions in `store/migrations` (run at open), not
from these tables: a change here goes with a new revision there that makes it."""

from sqlalchemy import JSON, Boolean, Column, DateTime, Float, ForeignKey, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()

workers = Table(
    "workers", metadata,
    Column("name", String, primary_key=True),
    Column("job", String, nullable=False),
    Column("core", String, nullable=False),
    Column("job_spec", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("core_version", Integer),  # the core version its adapters sit on (null in old hives: 0)
    Column("tenant", String),  # who may reach it through the server (null: the local tenant)
    Column("prompt_format", String),  # the core's prompt format: chat, plain or a template file (null in old hives: chat)
)

runs = Table(
    "runs", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("worker", String, ForeignKey("workers.name"), nullable=False),
    Column("job", String, nullable=False),
    Column("learner", String, nullable=False),
    Column("config", JSON, nullable=False),
    Column("status", String, nullable=False),
    Column("step", Integer, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("budget", JSON),  # RunBudget: steps/minutes given at its last start (null in old hives: not recorded)
    Index("ix_runs_worker", "worker"),
)

episodes = Table(
    "episodes", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job", String, nullable=False, index=True),
    Column("task_id", String, nullable=False),
    Column("messages", JSON, nullable=False),
    Column("completion", Text, nullable=False),
    Column("score", Float),  # null: not scored (a served reply; people's feedback judges it)
    Column("answer", Text),  # the task's reference answer, when the job knows it
    Column("origin", String),  # what wrote it: rl | practice | critique | attempt | serve
    Column("worker", String, index=True),
    Column("adapter_version", Integer, nullable=False),
    Column("run_id", Integer, ForeignKey("runs.id")),
    Column("step", Integer),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("tenant", String),  # served episodes: the tenant whose request it answered
    Column("info", JSON),  # multi-turn episodes: turns, invalid moves, success, cut_off
    Index("ix_episodes_worker_origin", "worker", "origin"),  # the index revision 0002 adds
    Index("ix_episodes_run_id", "run_id"),
)

adapter_versions = Table(
    "adapter_versions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("worker", String, ForeignKey("workers.name"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("parent", Integer, nullable=False),
    Column("path", String, nullable=False),
    Column("run_id", Integer, ForeignKey("runs.id")),
    Column("step", Integer, nullable=False),
    Column("final", Boolean, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_adapter_versions_worker_version", "worker", "version"),
)

# Provenance: which episodes trained an adapter version (beyond those of its parent version).
adapter_episodes = Table(
    "adapter_episodes", metadata,
    Column("adapter_version_id", Integer, ForeignKey("adapter_versions.id"), primary_key=True),
    Column("episode_id", Integer, ForeignKey("episodes.id"), primary_key=True),
)

# Anything a person (or a simulated one) said about an episode.
feedback = Table(
    "feedback", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("episode_id", Integer, ForeignKey("episodes.id"), nullable=False, index=True),
    Column("kind", String, nullable=False),  # reward | correction | critique | preference
    Column("reward", Float),
    Column("text", Text),
    Column("other_episode_id", Integer, ForeignKey("episodes.id")),  # preference: episode_id is preferred over it
    Column("by", String, nullable=False),
    Column("conflict", Text),  # why it contradicts earlier feedback on the same episode, if it does
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_feedback_other_episode_id", "other_episode_id"),
)

# Provenance: which feedback an adapter version learned from (beyond that of its parent version).
adapter_feedback = Table(
    "adapter_feedback", metadata,
    Column("adapter_version_id", Integer, ForeignKey("adapter_versions.id"), primary_key=True),
    Column("feedback_id", Integer, ForeignKey("feedback.id"), primary_key=True),
    Index("ix_adapter_feedback_feedback_id", "feedback_id"),
)

evals = Table(
    "evals", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("worker", String),
    Column("adapter_version", Integer, nullable=False),
    Column("job", String, nullable=False),
    Column("split", String, nullable=False),
    Column("n", Integer, nullable=False),
    Column("score", Float, nullable=False),
    Column("details", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("core_version", Integer),  # the core version evaluated (with the worker's adapter, if any)
    Index("ix_evals_worker", "worker"),
)

# Core versions the hive built (version 0, the base core, is implicit), with their lineage.
core_versions = Table(
    "core_versions", metadata,
    Column("version", Integer, primary_key=True),
    Column("parent", Integer, nullable=False),
    Column("method", String, nullable=False),  # distill | linear | ties | dare_linear
    Column("path", String, nullable=False),  # the core adapter's directory
    Column("sources", JSON, nullable=False),  # [{"worker": ..., "adapter_version": ...}, ...]
    Column("details", JSON, nullable=False),  # settings, eval ids, anything the method reports
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# Which core version is current: the latest row wins; rollbacks append, so history is kept.
releases = Table(
    "releases", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("core_version", Integer, nullable=False),
    Column("reason", String, nullable=False),  # release | rollback
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# Which adapter version of a worker is live (served): the latest row per worker wins. `learn` releases
# the version it ends with; the server releases a version it learned only past the gate; rollbacks append.
worker_releases = Table(
    "worker_releases", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("worker", String, ForeignKey("workers.name"), nullable=False),
    Column("adapter_version", Integer, nullable=False),
    Column("reason", String, nullable=False),  # learn | gate | rollback | serve (pinned before learning)
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_worker_releases_worker", "worker"),
)

# Every gate decision with its numbers, passed or not.
gate_decisions = Table(
    "gate_decisions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("candidate", String, nullable=False),  # "core:3" or "worker:arith:5"
    Column("passed", Boolean, nullable=False),
    Column("reasons", JSON, nullable=False),
    Column("evidence", JSON, nullable=False),
    Column("config", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_gate_decisions_candidate", "candidate"),
)

# Who does a piece of work that must run once however many processes could (a worker's background learning,
# whichever server replica takes it): held until `expires` (unix seconds), renewed while the work runs
# (store.leases). Not history: not exported.
leases = Table(
    "leases", metadata,
    Column("name", String, primary_key=True),  # e.g. "learn:arith"
    Column("holder", String, nullable=False),  # host:pid:random of the process holding it
    Column("expires", Float, nullable=False),
)

EXPORTED = ["workers", "runs", "episodes", "feedback", "adapter_versions", "adapter_episodes", "adapter_feedback", "evals",
            "core_versions", "releases", "worker_releases", "gate_decisions"]
