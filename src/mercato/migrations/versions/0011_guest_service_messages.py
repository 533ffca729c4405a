"""marketing_messages: service messages to guests have no customer

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-24 00:55:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("marketing_messages", schema=None) as batch_op:
        batch_op.alter_column("customer_id", existing_type=sa.Integer(), nullable=True)


def downgrade() -> None:
    # Guests' messages cannot keep a customer they never had: they go.
    op.execute("DELETE FROM marketing_messages WHERE customer_id IS NULL")
    with op.batch_alter_table("marketing_messages", schema=None) as batch_op:
        batch_op.alter_column("customer_id", existing_type=sa.Integer(), nullable=False)
