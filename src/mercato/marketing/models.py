"""Consent history, the outbox of rendered messages, offer rules and their runs.

Customer, order, category and promotion ids are plain columns: those rows belong to other
domains, which may merge, erase or archive them on their own schedule.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from mercato.crypto import EncryptedString
from mercato.db import Base, BigId, BigIntPK, JSONType, UTCDateTime, utcnow


class ConsentRecord(Base):
    """One decision of a customer about one purpose: append-only, never updated.

    The current state of (customer, purpose, channel) is its record with the highest id;
    ``channel_id`` NULL is the decision for every channel.
    """

    __tablename__ = "consent_records"
    __table_args__ = (
        Index("ix_consent_records_current", "customer_id", "purpose", "channel_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    customer_id: Mapped[int] = mapped_column(BigId)
    purpose: Mapped[str] = mapped_column(String(30))
    channel_id: Mapped[int | None] = mapped_column(BigId)
    granted: Mapped[bool] = mapped_column(Boolean)
    # channel (the shopper, through a channel) | staff | import
    source: Mapped[str] = mapped_column(String(10))
    source_channel_id: Mapped[int | None] = mapped_column(BigId)
    staff_user_id: Mapped[int | None] = mapped_column(BigId)
    # The version of the wording the customer was shown when deciding.
    wording_version: Mapped[str] = mapped_column(String(40))
    note: Mapped[str | None] = mapped_column(EncryptedString())  # typed by staff: encrypted
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Message(Base):
    """A rendered message in the notifier's outbox: queued -> sent | failed."""

    __tablename__ = "marketing_messages"
    __table_args__ = (
        Index("ix_marketing_messages_pending", "status", "id"),
        Index("ix_marketing_messages_customer", "customer_id", "id"),
        Index("ix_marketing_messages_order", "order_id", "id"),
        CheckConstraint("attempts >= 0", name="attempts_not_negative"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    # None for a service message to a guest (a click & collect order without an account).
    customer_id: Mapped[int | None] = mapped_column(BigId)
    channel: Mapped[str] = mapped_column(String(10))  # email | sms
    # Address, subject and body name the person (and carry personal codes): encrypted.
    recipient: Mapped[str] = mapped_column(EncryptedString())
    # The consent purpose the message needs (None for service messages).
    purpose: Mapped[str | None] = mapped_column(String(30))
    template: Mapped[str] = mapped_column(String(60))
    # The language the message was rendered in (after fallback).
    locale: Mapped[str] = mapped_column(String(20))
    subject: Mapped[str] = mapped_column(EncryptedString())
    body_text: Mapped[str] = mapped_column(EncryptedString())
    body_html: Mapped[str | None] = mapped_column(EncryptedString())
    status: Mapped[str] = mapped_column(String(10))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivery_id: Mapped[str | None] = mapped_column(String(300))
    reference_type: Mapped[str | None] = mapped_column(String(30))
    reference_id: Mapped[str | None] = mapped_column(String(64))
    # The order the message is about (whatever the reference), so staff see an order's messages.
    order_id: Mapped[int | None] = mapped_column(BigId)
    # A copy queued by staff names the message it repeats.
    resent_from_id: Mapped[int | None] = mapped_column(BigId)
    # A sender holds the message until then (a lease: several processes share the outbox).
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class OfferRule(Base):
    """Customers who bought products of a category at least N times in D days get a
    personal code from a template promotion, at most once per D days."""

    __tablename__ = "marketing_rules"
    __table_args__ = (
        CheckConstraint("min_purchases >= 1", name="min_purchases_positive"),
        CheckConstraint("window_days >= 1", name="window_days_positive"),
        CheckConstraint("valid_days >= 1", name="valid_days_positive"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    category_id: Mapped[int] = mapped_column(BigId)
    min_purchases: Mapped[int] = mapped_column(Integer)
    window_days: Mapped[int] = mapped_column(Integer)
    template_promotion_id: Mapped[int] = mapped_column(BigId)
    valid_days: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class OfferClaim(Base):
    """When a customer last got an offer from a rule. Taken with one conditional upsert, so
    two concurrent runs cannot both issue her a code within the rule's period."""

    __tablename__ = "marketing_offer_claims"

    rule_id: Mapped[int] = mapped_column(
        ForeignKey("marketing_rules.id", ondelete="CASCADE"), primary_key=True
    )
    customer_id: Mapped[int] = mapped_column(BigId, primary_key=True)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    run_id: Mapped[int] = mapped_column(BigId)


class RuleRun(Base):
    """One run of a rule: who started it, the window it looked at, what it did."""

    __tablename__ = "marketing_rule_runs"
    __table_args__ = (Index("ix_marketing_rule_runs_rule", "rule_id", "id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("marketing_rules.id", ondelete="CASCADE"))
    actor_type: Mapped[str] = mapped_column(String(20))
    actor_id: Mapped[str | None] = mapped_column(String(64))
    window_from: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    matched: Mapped[int] = mapped_column(Integer, default=0)
    issued: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)


class RunResult(Base):
    """What a run did for one matching customer, and why."""

    __tablename__ = "marketing_run_results"

    run_id: Mapped[int] = mapped_column(
        ForeignKey("marketing_rule_runs.id", ondelete="CASCADE"), primary_key=True
    )
    customer_id: Mapped[int] = mapped_column(BigId, primary_key=True)
    purchases: Mapped[int] = mapped_column(Integer)
    channel_ids: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    outcome: Mapped[str] = mapped_column(String(12))  # issued | skipped | failed
    reason: Mapped[str | None] = mapped_column(String(30))
    detail: Mapped[str | None] = mapped_column(Text)
    code_id: Mapped[int | None] = mapped_column(BigId)
    message_id: Mapped[int | None] = mapped_column(BigId)
