"""auth_throttles (failed sign-ins per account and address); customer sessions with
refresh tokens

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-25 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import mercato.db

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.INTEGER(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "auth_throttles",
        sa.Column("scope", sa.String(length=32), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("lockouts", sa.Integer(), nullable=False),
        sa.Column("last_failure_at", mercato.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("locked_until", mercato.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("scope", "key_hash", name=op.f("pk_auth_throttles")),
    )
    op.create_index(
        op.f("ix_auth_throttles_last_failure_at"), "auth_throttles", ["last_failure_at"]
    )
    op.create_table(
        "customer_refresh_tokens",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("customer_id", _ID, nullable=False),
        sa.Column("session_id", sa.String(length=32), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", mercato.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", mercato.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", mercato.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", mercato.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_customer_refresh_tokens_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_refresh_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_customer_refresh_tokens_token_hash")),
    )
    op.create_index(
        op.f("ix_customer_refresh_tokens_customer_id"), "customer_refresh_tokens", ["customer_id"]
    )
    op.create_index(
        op.f("ix_customer_refresh_tokens_session_id"), "customer_refresh_tokens", ["session_id"]
    )
    with op.batch_alter_table("customer_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("session_id", sa.String(length=32), nullable=True))
        batch_op.create_index(batch_op.f("ix_customer_tokens_session_id"), ["session_id"])


def downgrade() -> None:
    with op.batch_alter_table("customer_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_customer_tokens_session_id"))
        batch_op.drop_column("session_id")
    op.drop_index(
        op.f("ix_customer_refresh_tokens_session_id"), table_name="customer_refresh_tokens"
    )
    op.drop_index(
        op.f("ix_customer_refresh_tokens_customer_id"), table_name="customer_refresh_tokens"
    )
    op.drop_table("customer_refresh_tokens")
    op.drop_index(op.f("ix_auth_throttles_last_failure_at"), table_name="auth_throttles")
    op.drop_table("auth_throttles")
