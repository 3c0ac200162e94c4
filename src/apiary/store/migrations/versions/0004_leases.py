"""Leases: a piece of work that must run once however many processes could (a worker's background learning,
with several server replicas on one store) is done by whoever holds its lease (store.leases).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if "leases" in sa.inspect(op.get_bind()).get_table_names():  # a hive stamped again after losing its revision
        return
    op.create_table("leases",
                    sa.Column("name", sa.String(), primary_key=True),
                    sa.Column("holder", sa.String(), nullable=False),
                    sa.Column("expires", sa.Float(), nullable=False))


def downgrade() -> None:
    op.drop_table("leases")
