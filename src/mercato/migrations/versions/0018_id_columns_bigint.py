"""Columns holding ids are BIGINT like the ids they hold (PostgreSQL)

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07 11:30:00

An INTEGER column holding another row's id failed any statement that bound a larger id,
even a list filter naming an id that cannot exist. SQLite integers are 64 bits already.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID_COLUMNS: dict[str, tuple[str, ...]] = {
    "carts": ("customer_id", "order_id"),
    "consent_records": ("channel_id", "customer_id", "source_channel_id", "staff_user_id"),
    "customer_activity": ("channel_id",),
    "customer_addresses": ("source_channel_id",),
    "customer_identities": ("source_channel_id",),
    "customer_merge_moves": ("from_id", "into_id"),
    "customer_order_facts": ("channel_id", "order_id", "store_location_id"),
    "customers": ("preferred_store_id",),
    "fulfillment_lines": ("order_line_id", "reservation_id", "variant_id"),
    "fulfillment_orders": ("destination_location_id",),
    "gift_cards": ("customer_id",),
    "loyalty_accounts": ("customer_id", "first_order_id"),
    "loyalty_category_multipliers": ("category_id",),
    "loyalty_entries": ("channel_id", "customer_id", "order_id"),
    "loyalty_lots": ("customer_id", "entry_id", "order_id"),
    "loyalty_orders": ("channel_id", "customer_id", "order_id"),
    "loyalty_tender_calls": ("customer_id", "payment_id"),
    "marketing_messages": ("customer_id",),
    "marketing_offer_claims": ("customer_id", "run_id"),
    "marketing_rules": ("category_id", "template_promotion_id"),
    "marketing_run_results": ("code_id", "customer_id", "message_id"),
    "order_lines": ("pickup_location_id", "variant_id"),
    "order_locations": ("location_id",),
    "orders": ("cart_id", "customer_id"),
    "payments": ("channel_id", "customer_id", "location_id"),
    "privacy_requests": ("customer_id",),
    "return_lines": ("exchange_variant_id", "order_line_id", "variant_id"),
    "return_settlements": ("exchange_order_id",),
    "returns": ("channel_id", "customer_id", "exchange_order_id", "origin_channel_id"),
    "shipments": ("label_id", "location_id"),
    "shipping_tracking_events": ("carrier_id",),
    "stock_movements": ("channel_id", "location_id", "variant_id"),
    "stock_reservations": ("channel_id", "location_id", "variant_id"),
    "support_case_orders": ("order_id",),
    "support_cases": ("assignee_id", "channel_id", "customer_id"),
    "support_messages": ("author_id",),
}


def _retype(old: sa.types.TypeEngine[int], new: sa.types.TypeEngine[int]) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, columns in ID_COLUMNS.items():
        for column in columns:
            op.alter_column(table, column, existing_type=old, type_=new)


def upgrade() -> None:
    _retype(sa.Integer(), sa.BigInteger())


def downgrade() -> None:
    _retype(sa.BigInteger(), sa.Integer())
