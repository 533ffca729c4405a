"""Promotions, their codes, budgets, usage counters and redemptions.

Money is stored in the currency's minor unit (``*_minor`` integers): exact on SQLite and
PostgreSQL alike, and what the conditional UPDATEs compare against their limits.

The counters (``promotions.uses``, ``promotion_budgets.spent_minor``,
``promotion_customer_usage.uses``) exist only to enforce limits atomically; they are kept
while a limit is set and recounted from the redemption rows whenever a limit changes.
``promotion_codes.uses`` is always kept: a code's usage is shown to staff.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from mercato.db import Base, BigIntPK, JSONType, UTCDateTime, utcnow
from mercato.money import from_minor


class Promotion(Base):
    """One promotion: its engine definition (conditions and action as JSON) and its limits."""

    __tablename__ = "promotions"
    __table_args__ = (
        Index("ix_promotions_automatic", "status", "requires_code"),
        CheckConstraint("uses >= 0", name="uses_not_negative"),
        CheckConstraint("max_uses IS NULL OR max_uses >= 1", name="max_uses_positive"),
        CheckConstraint(
            "max_uses_per_customer IS NULL OR max_uses_per_customer >= 1",
            name="max_uses_per_customer_positive",
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    # draft -> active <-> paused; any of them -> archived (final)
    status: Mapped[str] = mapped_column(String(12))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    stacking: Mapped[str] = mapped_column(String(12))
    requires_code: Mapped[bool] = mapped_column(Boolean, default=False)
    conditions: Mapped[dict[str, Any]] = mapped_column(JSONType)
    action: Mapped[dict[str, Any]] = mapped_column(JSONType)
    starts_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    max_uses: Mapped[int | None] = mapped_column(Integer)
    uses: Mapped[int] = mapped_column(Integer, default=0)
    max_uses_per_customer: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PromotionBudget(Base):
    """The most a promotion may give away in one currency, and how much it has given."""

    __tablename__ = "promotion_budgets"
    __table_args__ = (
        CheckConstraint("limit_minor > 0", name="limit_positive"),
        CheckConstraint("spent_minor >= 0", name="spent_not_negative"),
    )

    promotion_id: Mapped[int] = mapped_column(
        ForeignKey("promotions.id", ondelete="CASCADE"), primary_key=True
    )
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    limit_minor: Mapped[int] = mapped_column(BigInteger)
    spent_minor: Mapped[int] = mapped_column(BigInteger, default=0)


class PromotionCustomerUsage(Base):
    """Active redemptions of one promotion by one customer (kept while a per-customer limit
    is set), so the limit is one conditional upsert instead of a count."""

    __tablename__ = "promotion_customer_usage"
    __table_args__ = (CheckConstraint("uses >= 0", name="uses_not_negative"),)

    promotion_id: Mapped[int] = mapped_column(
        ForeignKey("promotions.id", ondelete="CASCADE"), primary_key=True
    )
    customer_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    uses: Mapped[int] = mapped_column(Integer, default=0)


class PromotionCode(Base):
    """A code that applies a promotion: public, generated in a batch, or personal."""

    __tablename__ = "promotion_codes"
    __table_args__ = (
        CheckConstraint("uses >= 0", name="uses_not_negative"),
        CheckConstraint("max_uses IS NULL OR max_uses >= 1", name="max_uses_positive"),
        Index("ix_promotion_codes_promotion", "promotion_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    promotion_id: Mapped[int] = mapped_column(ForeignKey("promotions.id", ondelete="CASCADE"))
    # Normalised (upper case); unique across every promotion.
    code: Mapped[str] = mapped_column(String(64), unique=True)
    max_uses: Mapped[int | None] = mapped_column(Integer)
    uses: Mapped[int] = mapped_column(Integer, default=0)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A personal code: only this customer may use it.
    customer_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    batch: Mapped[str | None] = mapped_column(String(36), index=True)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Redemption(Base):
    """One promotion (and its code) used by one checkout: reserved -> confirmed | released."""

    __tablename__ = "promotion_redemptions"
    __table_args__ = (
        Index("ix_promotion_redemptions_promotion", "promotion_id", "status", "currency"),
        Index("ix_promotion_redemptions_reference", "reference", "status"),
        CheckConstraint("amount_minor >= 0", name="amount_not_negative"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    promotion_id: Mapped[int] = mapped_column(ForeignKey("promotions.id", ondelete="RESTRICT"))
    code_id: Mapped[int | None] = mapped_column(
        ForeignKey("promotion_codes.id", ondelete="SET NULL")
    )
    code: Mapped[str | None] = mapped_column(String(64))
    customer_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    reference: Mapped[str] = mapped_column(String(64))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(12))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def amount(self) -> Decimal:
        return from_minor(self.amount_minor, self.currency)
