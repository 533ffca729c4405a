"""outbox: claim tokens and lanes; one initial routing decision per order

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-25 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The lanes of mercato.events.LANES at the time of this migration (0 urgent, 2 bulk).
_URGENT = ("order", "payment", "fulfillment", "shipment")
_BULK = ("stock", "product", "category", "prices")


def _prefixes(kinds: tuple[str, ...]) -> str:
    return " OR ".join(f"type LIKE '{kind}.%'" for kind in kinds)


def upgrade() -> None:
    with op.batch_alter_table("outbox_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claim_token", sa.String(length=32), nullable=True))
        batch_op.add_column(
            sa.Column("priority", sa.SmallInteger(), server_default=sa.text("1"), nullable=False)
        )
        batch_op.drop_index("ix_outbox_events_pending")
    # Only events still waiting are claimed, so only they need their lane.
    op.execute(
        f"UPDATE outbox_events SET priority = 0 "
        f"WHERE dispatched_at IS NULL AND ({_prefixes(_URGENT)})"
    )
    op.execute(
        f"UPDATE outbox_events SET priority = 2 "
        f"WHERE dispatched_at IS NULL AND ({_prefixes(_BULK)})"
    )
    with op.batch_alter_table("outbox_events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_outbox_events_due",
            ["priority", "id"],
            unique=False,
            postgresql_where=sa.text("dispatched_at IS NULL"),
            sqlite_where=sa.text("dispatched_at IS NULL"),
        )

    # An order routed twice before this revision keeps both decisions; the later ones are
    # marked as the duplicates they are, so that the index below can hold.
    op.execute(
        "UPDATE routing_decisions SET trigger = 'duplicate' "
        "WHERE trigger = 'initial' AND id > ("
        "SELECT MIN(earlier.id) FROM routing_decisions AS earlier "
        "WHERE earlier.order_id = routing_decisions.order_id AND earlier.trigger = 'initial')"
    )
    with op.batch_alter_table("routing_decisions", schema=None) as batch_op:
        batch_op.create_index(
            "uq_routing_decisions_initial",
            ["order_id"],
            unique=True,
            postgresql_where=sa.text("trigger = 'initial'"),
            sqlite_where=sa.text("trigger = 'initial'"),
        )


def downgrade() -> None:
    with op.batch_alter_table("routing_decisions", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_routing_decisions_initial",
            postgresql_where=sa.text("trigger = 'initial'"),
            sqlite_where=sa.text("trigger = 'initial'"),
        )
    with op.batch_alter_table("outbox_events", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_outbox_events_due",
            postgresql_where=sa.text("dispatched_at IS NULL"),
            sqlite_where=sa.text("dispatched_at IS NULL"),
        )
        batch_op.create_index("ix_outbox_events_pending", ["dispatched_at", "id"], unique=False)
        batch_op.drop_column("priority")
        batch_op.drop_column("claim_token")
