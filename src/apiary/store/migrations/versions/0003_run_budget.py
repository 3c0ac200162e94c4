"""A run records the budget it was given (steps and/or minutes, counted from which step, since when), so a
page can show a running run's step of its steps and its time left. Null for runs of older hives.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a hive that lost its revision and is stamped again may have the column already (legacy.bring_to_baseline)
    if "budget" in {c["name"] for c in sa.inspect(op.get_bind()).get_columns("runs")}:
        return
    with op.batch_alter_table("runs") as batch:  # batch: SQLite's way of altering a table
        batch.add_column(sa.Column("budget", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("budget")
