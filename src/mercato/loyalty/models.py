"""Loyalty tables: the programme's rules, one points account per customer, its ledger, the
lots that expire first in first out, and what each order earned."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Boolean, CheckConstraint, Date, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from mercato.crypto import EncryptedString
from mercato.db import Base, BigId, BigIntPK, FixedDecimal, JSONType, UTCDateTime, utcnow

PROGRAMME_ID = 1


class Programme(Base):
    """The business's one programme (a single row, id 1)."""

    __tablename__ = "loyalty_programme"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Points expire this many months after they were earned; None: they never expire.
    expiry_months: Mapped[int | None] = mapped_column(Integer)
    # "Expiring soon" on the shopper's page looks this many days ahead.
    expiring_soon_days: Mapped[int] = mapped_column(Integer, default=30)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CurrencyRule(Base):
    """How points are earned and what a point is worth in one currency."""

    __tablename__ = "loyalty_currency_rules"
    __table_args__ = (
        CheckConstraint("earn_points >= 0", name="earn_points_not_negative"),
        CheckConstraint("earn_amount > 0", name="earn_amount_positive"),
    )

    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    # ``earn_points`` points per ``earn_amount`` spent (1 point per 100 JPY).
    earn_points: Mapped[int] = mapped_column(Integer)
    earn_amount: Mapped[Decimal] = mapped_column(FixedDecimal(4))
    # What one point pays for at checkout (1 JPY, 0.01 EUR); None: not redeemable here.
    point_value: Mapped[Decimal | None] = mapped_column(FixedDecimal(6))


class CategoryMultiplier(Base):
    """Extra earning on a category and everything below it (double points on coffee)."""

    __tablename__ = "loyalty_category_multipliers"

    category_id: Mapped[int] = mapped_column(BigId, primary_key=True)
    multiplier: Mapped[Decimal] = mapped_column(FixedDecimal(4))


class Tier(Base):
    """A level reached with ``threshold`` qualifying points over the last 12 months."""

    __tablename__ = "loyalty_tiers"
    __table_args__ = (CheckConstraint("threshold >= 0", name="threshold_not_negative"),)

    code: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    threshold: Mapped[int] = mapped_column(Integer, unique=True)
    earn_multiplier: Mapped[Decimal] = mapped_column(FixedDecimal(4))
    # The customer group the tier stands for, so prices and promotions can target it.
    customer_group: Mapped[str | None] = mapped_column(String(60))


class Campaign(Base):
    """Extra points for a while: a multiplier (x2 at weekends) and/or fixed bonus points."""

    __tablename__ = "loyalty_campaigns"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(120))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    multiplier: Mapped[Decimal] = mapped_column(FixedDecimal(4), default=Decimal(1))
    bonus_points: Mapped[int] = mapped_column(Integer, default=0)
    first_order_only: Mapped[bool] = mapped_column(Boolean, default=False)
    # ISO weekdays (1 Monday .. 7 Sunday) in ``timezone``; empty: every day.
    weekdays: Mapped[list[int]] = mapped_column(JSONType, default=list)
    timezone: Mapped[str] = mapped_column(String(60), default="UTC")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Account(Base):
    """A customer's points. ``balance`` is changed only by UPDATEs that also write an entry.

    ``balance`` always equals the sum of the account's entries (``verify`` proves it). It
    may go below zero only when a return takes back points that were already spent; a
    redemption never takes more than the balance.
    """

    __tablename__ = "loyalty_accounts"

    customer_id: Mapped[int] = mapped_column(BigId, primary_key=True)
    balance: Mapped[int] = mapped_column(Integer, default=0)
    tier_code: Mapped[str | None] = mapped_column(String(40))
    tier_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The order that took the first-order bonus (claimed once, with a conditional UPDATE).
    first_order_id: Mapped[int | None] = mapped_column(BigId)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Entry(Base):
    """The append-only points ledger: one row per change of a balance."""

    __tablename__ = "loyalty_entries"
    __table_args__ = (
        Index("ix_loyalty_entries_customer", "customer_id", "id"),
        Index("ix_loyalty_entries_reference", "reference_type", "reference_id"),
        CheckConstraint("points <> 0", name="points_not_zero"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    customer_id: Mapped[int] = mapped_column(BigId)
    # earn | redeem | refund | reverse | expire | adjust
    kind: Mapped[str] = mapped_column(String(12))
    points: Mapped[int] = mapped_column(Integer)
    balance_after: Mapped[int] = mapped_column(Integer)
    reference_type: Mapped[str | None] = mapped_column(String(30))
    reference_id: Mapped[str | None] = mapped_column(String(64))
    order_id: Mapped[int | None] = mapped_column(BigId)
    channel_id: Mapped[int | None] = mapped_column(BigId)
    actor_type: Mapped[str | None] = mapped_column(String(20))
    actor_id: Mapped[str | None] = mapped_column(String(64))
    # Typed by staff for adjustments (may quote the customer): encrypted.
    reason: Mapped[str | None] = mapped_column(EncryptedString())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Lot(Base):
    """Points credited together, which expire together; debits consume the oldest first.

    For every account, the sum of ``remaining`` equals the balance when it is positive and
    zero otherwise (a debt is paid back by the next credits before they make a lot).
    """

    __tablename__ = "loyalty_lots"
    __table_args__ = (
        Index("ix_loyalty_lots_customer", "customer_id", "remaining"),
        Index("ix_loyalty_lots_expiry", "expires_at"),
        CheckConstraint("remaining >= 0", name="remaining_not_negative"),
        CheckConstraint("remaining <= points", name="remaining_within_points"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    customer_id: Mapped[int] = mapped_column(BigId)
    entry_id: Mapped[int] = mapped_column(BigId)
    # The order that earned the lot: a return of that order takes back these points first.
    order_id: Mapped[int | None] = mapped_column(BigId)
    points: Mapped[int] = mapped_column(Integer)
    remaining: Mapped[int] = mapped_column(Integer)
    earned_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class OrderPoints(Base):
    """What one order earns: pending until fulfilled, then granted once, reversed on returns."""

    __tablename__ = "loyalty_orders"
    __table_args__ = (Index("ix_loyalty_orders_customer", "customer_id", "status"),)

    order_id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int] = mapped_column(BigId)
    number: Mapped[str] = mapped_column(String(20))
    channel_id: Mapped[int | None] = mapped_column(BigId)
    currency: Mapped[str] = mapped_column(String(3))
    # pending -> granted, or pending -> cancelled
    status: Mapped[str] = mapped_column(String(12))
    points: Mapped[int] = mapped_column(Integer)
    bonus_points: Mapped[int] = mapped_column(Integer, default=0)
    # Per variant: quantity, amount paid and weight (exact points before rounding).
    lines: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    # Per variant id (as text): units and amount returned so far.
    returned: Mapped[dict[str, dict[str, Any]]] = mapped_column(JSONType, default=dict)
    granted_points: Mapped[int] = mapped_column(Integer, default=0)
    reversed_points: Mapped[int] = mapped_column(Integer, default=0)
    placed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    granted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ProcessedEvent(Base):
    """Events applied once although delivered at least once (returns)."""

    __tablename__ = "loyalty_processed_events"

    event_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    processed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TenderCall(Base):
    """The ``loyalty_points`` payment provider's answer to each key (asked again: same answer).

    An authorisation row also tracks how much of the redeemed points was given back by
    refunds, so the points returned for a payment never exceed the points it took.
    """

    __tablename__ = "loyalty_tender_calls"
    __table_args__ = (
        CheckConstraint("refunded_minor <= amount_minor", name="refunded_within_amount"),
        CheckConstraint("restored_points <= points", name="restored_within_points"),
    )

    key: Mapped[str] = mapped_column(String(120), primary_key=True)
    operation: Mapped[str] = mapped_column(String(12))
    payment_id: Mapped[int] = mapped_column(BigId)
    customer_id: Mapped[int | None] = mapped_column(BigId)
    outcome: Mapped[str] = mapped_column(String(20))
    code: Mapped[str | None] = mapped_column(String(50))
    message: Mapped[str | None] = mapped_column(String(300))
    currency: Mapped[str] = mapped_column(String(3))
    amount_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    points: Mapped[int] = mapped_column(Integer, default=0)
    refunded_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    restored_points: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class GrantTally(Base):
    """Points one staff member granted by hand on one day (UTC), against the role's limit.

    Raised by one conditional upsert per grant (see ``loyalty.grants``), never read and
    then written, so grants racing for the last of a day's allowance cannot both pass.
    """

    __tablename__ = "loyalty_grant_tallies"
    __table_args__ = (CheckConstraint("points >= 0", name="points_not_negative"),)

    staff_user_id: Mapped[int] = mapped_column(BigId, primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    points: Mapped[int] = mapped_column(Integer)
