"""Outbox messages name the order they are about, and the message a resend copies

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-07 19:30:00

Staff list an order's messages and resend one. Messages queued before keep a reference to
the order or to its fulfilment task; both are carried over to the new column.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The models' BigId: BIGINT on PostgreSQL, INTEGER on SQLite.
_ID = sa.BigInteger().with_variant(sa.INTEGER(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("marketing_messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("order_id", _ID, nullable=True))
        batch_op.add_column(sa.Column("resent_from_id", _ID, nullable=True))
    op.create_index("ix_marketing_messages_order", "marketing_messages", ["order_id", "id"])
    op.execute(
        "UPDATE marketing_messages SET order_id = CAST(reference_id AS BIGINT) "
        "WHERE reference_type = 'order'"
    )
    op.execute(
        "UPDATE marketing_messages SET order_id = (SELECT f.order_id FROM fulfillment_orders f "
        "WHERE f.id = CAST(marketing_messages.reference_id AS BIGINT)) "
        "WHERE reference_type = 'fulfillment_order'"
    )


def downgrade() -> None:
    op.drop_index("ix_marketing_messages_order", table_name="marketing_messages")
    with op.batch_alter_table("marketing_messages", schema=None) as batch_op:
        batch_op.drop_column("resent_from_id")
        batch_op.drop_column("order_id")
