"""channels: countries each channel ships from

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 22:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("channels", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ship_origins", JSON, nullable=False, server_default="[]"))
    connection = op.get_bind()
    places = {
        row[0]: (row[1], bool(row[2]) and (bool(row[3]) or bool(row[4])))
        for row in connection.execute(sa.text(
            "SELECT id, country, active, can_ship, can_ship_from_store FROM locations"))
    }
    order: dict[int, list[int]] = {}
    for channel_id, location_id in connection.execute(sa.text(
        "SELECT channel_id, location_id FROM channel_locations "
        "ORDER BY channel_id, priority, location_id"
    )):
        order.setdefault(channel_id, []).append(location_id)
    channels = sa.table("channels", sa.column("id", sa.Integer),
                        sa.column("ship_origins", sa.JSON))
    for channel_id, location_ids in order.items():
        origins: list[str] = []
        for location_id in location_ids:
            country, ships = places.get(location_id, ("", False))
            if ships and country not in origins:
                origins.append(country)
        connection.execute(channels.update().where(channels.c.id == channel_id)
                           .values(ship_origins=origins))
    with op.batch_alter_table("channels", schema=None) as batch_op:
        batch_op.alter_column("ship_origins", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("channels", schema=None) as batch_op:
        batch_op.drop_column("ship_origins")
