"""loyalty_grant_tallies: points granted by hand per staff member and day; payments.order_id

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Ids are BIGINT on PostgreSQL, SQLite integers are 64 bits already.
_ID = sa.BigInteger().with_variant(sa.INTEGER(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "loyalty_grant_tallies",
        sa.Column("staff_user_id", _ID, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "points >= 0", name=op.f("ck_loyalty_grant_tallies_points_not_negative")
        ),
        sa.PrimaryKeyConstraint("staff_user_id", "day", name=op.f("pk_loyalty_grant_tallies")),
    )
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("order_id", _ID, nullable=True))
        batch_op.create_index("ix_payments_order", ["order_id", "id"], unique=False)
    # Every payment so far paid for the order whose number is its reference.
    op.execute(
        "UPDATE payments SET order_id = "
        "(SELECT orders.id FROM orders WHERE orders.number = payments.reference)"
    )


def downgrade() -> None:
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_index("ix_payments_order")
        batch_op.drop_column("order_id")
    op.drop_table("loyalty_grant_tallies")
