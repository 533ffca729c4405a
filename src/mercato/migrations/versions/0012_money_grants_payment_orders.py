"""loyalty_grant_tallies: points granted by hand per staff member and day

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "loyalty_grant_tallies",
        sa.Column("staff_user_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "points >= 0", name=op.f("ck_loyalty_grant_tallies_points_not_negative")
        ),
        sa.PrimaryKeyConstraint("staff_user_id", "day", name=op.f("pk_loyalty_grant_tallies")),
    )


def downgrade() -> None:
    op.drop_table("loyalty_grant_tallies")
