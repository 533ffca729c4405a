"""Where coordinates came from, import duties per channel, shipping changes on orders

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 11:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("locations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("coordinates_source", sa.String(length=20), nullable=True))
    # Coordinates stored before were typed in by staff.
    op.execute("UPDATE locations SET coordinates_source = 'given' WHERE latitude IS NOT NULL")
    with op.batch_alter_table("channels", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("import_duties", sa.String(length=3), nullable=False, server_default="dap")
        )
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("import_charges", JSON, nullable=True))
        batch_op.add_column(sa.Column("shipping_changes", JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_column("shipping_changes")
        batch_op.drop_column("import_charges")
    with op.batch_alter_table("channels", schema=None) as batch_op:
        batch_op.drop_column("import_duties")
    with op.batch_alter_table("locations", schema=None) as batch_op:
        batch_op.drop_column("coordinates_source")
