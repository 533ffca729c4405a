from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import Boolean, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from mercato.db import Base, BigIntPK, FixedDecimal, UTCDateTime, utcnow


class PriceList(Base):
    """A set of prices a channel sells at; prices are per currency inside the list."""

    __tablename__ = "price_lists"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    # The currency other currencies are converted from when they have no explicit price.
    base_currency: Mapped[str] = mapped_column(String(3))
    tax_inclusive: Mapped[bool] = mapped_column(Boolean, default=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Price(Base):
    """One explicit price; the most specific one that applies wins (see service)."""

    __tablename__ = "prices"
    __table_args__ = (
        Index("ix_prices_lookup", "price_list_id", "variant_id", "currency"),
        UniqueConstraint(
            "price_list_id",
            "variant_id",
            "currency",
            "country",
            "customer_group",
            "starts_at",
            name="uq_prices_scope",
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    price_list_id: Mapped[int] = mapped_column(ForeignKey("price_lists.id", ondelete="CASCADE"))
    variant_id: Mapped[int] = mapped_column(ForeignKey("variants.id", ondelete="CASCADE"))
    currency: Mapped[str] = mapped_column(String(3))
    amount: Mapped[Decimal] = mapped_column(FixedDecimal(4))
    country: Mapped[str | None] = mapped_column(String(2))
    customer_group: Mapped[str | None] = mapped_column(String(40))
    starts_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ExchangeRate(Base):
    """1 ``base`` = ``rate`` ``quote`` from ``effective_at`` on (imported, never fetched)."""

    __tablename__ = "exchange_rates"
    __table_args__ = (
        UniqueConstraint("base_currency", "quote_currency", "effective_at", name="uq_rates_day"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    base_currency: Mapped[str] = mapped_column(String(3))
    quote_currency: Mapped[str] = mapped_column(String(3))
    rate: Mapped[Decimal] = mapped_column(FixedDecimal(10, 24))
    effective_at: Mapped[datetime] = mapped_column(UTCDateTime)
    source: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CurrencyRounding(Base):
    """How converted prices land in a currency: 1000 VND steps, whole yen, .99 endings."""

    __tablename__ = "currency_rounding"

    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    increment: Mapped[Decimal] = mapped_column(FixedDecimal(4))
    mode: Mapped[str] = mapped_column(String(10), default="half_up")
    ending: Mapped[Decimal | None] = mapped_column(FixedDecimal(4, 8))
