"""carts: until when a shopper's stock hold runs

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-24 00:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import mercato.db

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("carts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("held_until", mercato.db.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("carts", schema=None) as batch_op:
        batch_op.drop_column("held_until")
