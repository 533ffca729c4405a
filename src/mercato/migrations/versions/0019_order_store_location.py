"""The store of a sale on its order (a pickup store, else the store behind a POS channel)

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07 15:00:00

Events about an order carry it, so the customers domain counts a sale for its store from
the event alone instead of reading the order's lines. Orders placed before are given
their first pickup store (a POS sale without one keeps none: its figures were counted
already).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.INTEGER(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("store_location_id", _ID, nullable=True))
    op.execute(
        "UPDATE orders SET store_location_id = ("
        " SELECT order_lines.pickup_location_id FROM order_lines"
        " WHERE order_lines.order_id = orders.id AND order_lines.pickup_location_id IS NOT NULL"
        " ORDER BY order_lines.line_no LIMIT 1)"
    )


def downgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_column("store_location_id")
