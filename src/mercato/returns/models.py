"""Tables of the returns domain: policies, return authorisations, their lines, timeline and
refund attempts. Amounts are decimals kept with four places and shown in the currency's unit."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from mercato.crypto import EncryptedString
from mercato.db import Base, BigId, BigIntPK, FixedDecimal, JSONType, UTCDateTime, utcnow


class ReturnPolicy(Base):
    """Return rules for a channel, a country, both, or everything (both empty).

    ``scope`` spells the pair (``channel:3|country:DE``, ``channel:*|country:*``) so that a
    unique constraint covers the empty cases too (NULLs are never equal in SQL).
    """

    __tablename__ = "return_policies"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    scope: Mapped[str] = mapped_column(String(60), unique=True)
    channel_id: Mapped[int | None] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    country: Mapped[str | None] = mapped_column(String(2))
    days_allowed: Mapped[int] = mapped_column(Integer)
    non_returnable_category_ids: Mapped[list[int]] = mapped_column(JSONType, default=list)
    accept_store_returns: Mapped[bool] = mapped_column(Boolean, default=True)
    restocking_fee_percent: Mapped[Decimal] = mapped_column(FixedDecimal(4))
    auto_approve: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Return(Base):
    """One return authorisation (RMA) for units of one order."""

    __tablename__ = "returns"
    __table_args__ = (
        Index("ix_returns_order", "order_id", "id"),
        Index("ix_returns_customer", "customer_id", "id"),
        Index("ix_returns_status", "status", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    number: Mapped[str] = mapped_column(String(20), unique=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="RESTRICT"))
    order_number: Mapped[str] = mapped_column(String(20))
    channel_id: Mapped[int] = mapped_column(BigId)  # the order's channel
    origin_channel_id: Mapped[int | None] = mapped_column(BigId)  # where it was started
    customer_id: Mapped[int | None] = mapped_column(BigId)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(20))
    refund_method: Mapped[str] = mapped_column(String(20))
    # The policy that applied when the return was requested (its later edits do not apply).
    policy: Mapped[dict[str, Any]] = mapped_column(JSONType)
    location_id: Mapped[int | None] = mapped_column(ForeignKey("locations.id"))
    # Known once received: the shipping share refunded, and what the lines are worth.
    shipping_refund: Mapped[Decimal] = mapped_column(FixedDecimal(4), default=Decimal(0))
    refund_total: Mapped[Decimal | None] = mapped_column(FixedDecimal(4))
    refunded_total: Mapped[Decimal] = mapped_column(FixedDecimal(4), default=Decimal(0))
    exchange_order_id: Mapped[int | None] = mapped_column(BigId)
    exchange_order_number: Mapped[str | None] = mapped_column(String(20))
    exchange_charge: Mapped[Decimal] = mapped_column(FixedDecimal(4), default=Decimal(0))
    # none -> pending -> done, or failed (retry allowed); guarded by conditional UPDATEs.
    settlement: Mapped[str] = mapped_column(String(12), default="none")
    note: Mapped[str | None] = mapped_column(EncryptedString())  # their words: encrypted
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ReturnLine(Base):
    __tablename__ = "return_lines"
    __table_args__ = (
        Index("ix_return_lines_return", "return_id", "line_no"),
        Index("ix_return_lines_order_line", "order_line_id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    return_id: Mapped[int] = mapped_column(ForeignKey("returns.id", ondelete="CASCADE"))
    line_no: Mapped[int] = mapped_column(Integer)
    order_line_id: Mapped[int] = mapped_column(BigId)
    variant_id: Mapped[int] = mapped_column(BigId)
    sku: Mapped[str] = mapped_column(String(80))
    name: Mapped[str] = mapped_column(String(400))
    quantity: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(20))
    note: Mapped[str | None] = mapped_column(EncryptedString())  # their words: encrypted
    exchange_variant_id: Mapped[int | None] = mapped_column(BigId)
    condition: Mapped[str | None] = mapped_column(String(12))  # restock | damaged | to_vendor
    # Set when received: the customer's payment for these units, the fee kept, the credit.
    paid: Mapped[Decimal | None] = mapped_column(FixedDecimal(4))
    restocking_fee: Mapped[Decimal | None] = mapped_column(FixedDecimal(4))
    amount: Mapped[Decimal | None] = mapped_column(FixedDecimal(4))
    # The money due back for this line: its credit, or what is left of it after an exchange.
    refund: Mapped[Decimal | None] = mapped_column(FixedDecimal(4))


class ReturnTransition(Base):
    """Every status change of a return: who, when, why (the return's timeline)."""

    __tablename__ = "return_transitions"
    __table_args__ = (Index("ix_return_transitions_return", "return_id", "id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    return_id: Mapped[int] = mapped_column(ForeignKey("returns.id", ondelete="CASCADE"))
    from_status: Mapped[str | None] = mapped_column(String(20))
    to_status: Mapped[str] = mapped_column(String(20))
    actor_type: Mapped[str] = mapped_column(String(20))
    actor_id: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(EncryptedString())  # typed by staff: encrypted
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ReturnSettlement(Base):
    """One attempt to pay a return out: refund, store credit, exchange difference.

    Written before any provider call (``pending``) and completed after it, so a crash in
    between leaves a visible row that the next attempt resumes with the same keys.
    """

    __tablename__ = "return_settlements"
    __table_args__ = (
        UniqueConstraint("request_key"),
        Index("ix_return_settlements_return", "return_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    return_id: Mapped[int] = mapped_column(ForeignKey("returns.id", ondelete="CASCADE"))
    request_key: Mapped[str] = mapped_column(String(80))
    method: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(12))  # pending | succeeded | failed
    amount: Mapped[Decimal] = mapped_column(FixedDecimal(4))  # to give back in this attempt
    refunded: Mapped[Decimal] = mapped_column(FixedDecimal(4), default=Decimal(0))
    charge: Mapped[Decimal] = mapped_column(FixedDecimal(4), default=Decimal(0))
    exchange_order_id: Mapped[int | None] = mapped_column(BigId)
    charge_payment_ids: Mapped[list[int]] = mapped_column(JSONType, default=list)
    hold_ids: Mapped[list[int]] = mapped_column(JSONType, default=list)
    refund_ids: Mapped[list[int]] = mapped_column(JSONType, default=list)
    # Per return line id: the money this attempt gives back for it (decimal strings).
    line_amounts: Mapped[dict[str, str]] = mapped_column(JSONType, default=dict)
    actor_type: Mapped[str] = mapped_column(String(20))
    actor_id: Mapped[str | None] = mapped_column(String(64))
    actor_label: Mapped[str | None] = mapped_column(String(254))
    failure_code: Mapped[str | None] = mapped_column(String(60))
    failure_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class FulfilmentDate(Base):
    """When each order was last fulfilled, delivered or picked up, learnt from order events.

    The return window counts from it (from the order date when no such event was seen).
    """

    __tablename__ = "return_fulfilment_dates"

    order_id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=False)
    fulfilled_at: Mapped[datetime] = mapped_column(UTCDateTime)
