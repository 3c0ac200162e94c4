"""Baseline: the tables of the store as apiary made them before Alembic.

Revision ID: 0001
Revises: (none)
"""

from alembic import op

from apiary.store.migrations import baseline

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # checkfirst: an old hive already has these tables (legacy.bring_to_baseline made them whole)
    baseline.metadata.create_all(op.get_bind(), checkfirst=True)


def downgrade() -> None:
    baseline.metadata.drop_all(op.get_bind())
