"""Orders keep their shipping country in the clear, and indexes for the home page

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-07 19:20:00

Sales by region group on the country without decrypting each address. Orders stored
before keep no country here; the home page reads their address instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ship_country", sa.String(length=2), nullable=True))
    op.create_index("ix_orders_placed_at", "orders", ["placed_at"])
    op.create_index("ix_orders_on_hold", "orders", ["on_hold", "status"])
    op.create_index("ix_orders_store_location", "orders", ["store_location_id"])


def downgrade() -> None:
    op.drop_index("ix_orders_store_location", table_name="orders")
    op.drop_index("ix_orders_on_hold", table_name="orders")
    op.drop_index("ix_orders_placed_at", table_name="orders")
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_column("ship_country")
