"""Indexes for the queries the server and the hive run on every request: a worker's runs, adapter
versions, releases, evals and episodes by origin; episodes by run; feedback on the other episode of a
preference; what adapter learned a piece of feedback; gate decisions by candidate.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

INDEXES = {  # name: (table, columns); schema.py declares the same
    "ix_episodes_worker_origin": ("episodes", ["worker", "origin"]),
    "ix_episodes_run_id": ("episodes", ["run_id"]),
    "ix_feedback_other_episode_id": ("feedback", ["other_episode_id"]),
    "ix_adapter_feedback_feedback_id": ("adapter_feedback", ["feedback_id"]),
    "ix_adapter_versions_worker_version": ("adapter_versions", ["worker", "version"]),
    "ix_runs_worker": ("runs", ["worker"]),
    "ix_worker_releases_worker": ("worker_releases", ["worker"]),
    "ix_evals_worker": ("evals", ["worker"]),
    "ix_gate_decisions_candidate": ("gate_decisions", ["candidate"]),
}


def upgrade() -> None:
    for name, (table, columns) in INDEXES.items():
        op.create_index(name, table, columns, if_not_exists=True)  # a hive stamped again may have them


def downgrade() -> None:
    for name, (table, _) in INDEXES.items():
        op.drop_index(name, table_name=table)
