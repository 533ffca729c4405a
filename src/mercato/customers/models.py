"""The customer profile: one per person across every channel.

Personal data (emails, phone numbers, names, identifier values, addresses) is stored
encrypted (``mercato.crypto``); each value that must be found has a blind index beside
it, declared with ``info={BLIND_INDEX: ...}`` so that a key rotation recomputes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column, validates

from mercato.crypto import BLIND_INDEX, EncryptedJSON, EncryptedString, blind_index
from mercato.customers.normalize import address_key, area_key, index_kind, name_key
from mercato.db import Base, BigId, BigIntPK, FixedDecimal, JSONType, UTCDateTime, utcnow

ACTIVE = "active"
MERGED = "merged"
# Personal data removed on request; the id stays for orders and accounting.
ERASED = "erased"


def _email_input(row: Mapping[str, Any]) -> tuple[str, str] | None:
    return None if row.get("email") is None else ("email", row["email"])


def _phone_input(row: Mapping[str, Any]) -> tuple[str, str] | None:
    return None if row.get("phone") is None else ("phone", row["phone"])


def _name_input(row: Mapping[str, Any]) -> tuple[str, str] | None:
    key = name_key(row.get("first_name"), row.get("last_name"))
    return None if key is None else ("name", key)


def _identity_input(row: Mapping[str, Any]) -> tuple[str, str] | None:
    return (index_kind(row["type"], row.get("source_channel_id")), row["value"])


def _address_input(row: Mapping[str, Any]) -> tuple[str, str] | None:
    return None if row.get("data") is None else ("address", address_key(row["data"]))


def _area_input(row: Mapping[str, Any]) -> tuple[str, str] | None:
    area = None if row.get("data") is None else area_key(row["data"])
    return None if area is None else ("area", area)


class Customer(Base):
    """A person's profile, shared by every channel; an account when it has a password."""

    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    # The login email of an account (other emails are identities).
    email: Mapped[str | None] = mapped_column(EncryptedString())
    email_index: Mapped[str | None] = mapped_column(
        String(64), unique=True, info={BLIND_INDEX: _email_input}
    )
    phone: Mapped[str | None] = mapped_column(EncryptedString())
    phone_index: Mapped[str | None] = mapped_column(
        String(64), index=True, info={BLIND_INDEX: _phone_input}
    )
    password_hash: Mapped[str | None] = mapped_column(String(200))
    first_name: Mapped[str | None] = mapped_column(EncryptedString())
    last_name: Mapped[str | None] = mapped_column(EncryptedString())
    # Exact-name duplicate detection without the name in clear.
    name_index: Mapped[str | None] = mapped_column(
        String(64), index=True, info={BLIND_INDEX: _name_input}
    )
    # Preferences: language, currency, the store the customer usually goes to.
    locale: Mapped[str | None] = mapped_column(String(20))
    currency: Mapped[str | None] = mapped_column(String(3))
    preferred_store_id: Mapped[int | None] = mapped_column(BigId)
    # Customer groups and segments that prices and promotions target ("members", "vip").
    groups: Mapped[list[str]] = mapped_column(JSONType, default=list)
    # Staff labels with no pricing meaning ("wholesale", "press").
    tags: Mapped[list[str]] = mapped_column(JSONType, default=list)
    # active, or merged into another profile (which then answers for this one).
    status: Mapped[str] = mapped_column(String(12), default=ACTIVE)
    merged_into_id: Mapped[int | None] = mapped_column(
        ForeignKey("customers.id", ondelete="SET NULL"), index=True
    )
    registered_channel_id: Mapped[int | None] = mapped_column(
        ForeignKey("channels.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=utcnow)

    @validates("email")
    def _index_email(self, _key: str, value: str | None) -> str | None:
        email = None if value is None else value.strip().lower()
        self.email_index = None if email is None else blind_index("email", email)
        return email

    @validates("phone")
    def _index_phone(self, _key: str, value: str | None) -> str | None:
        self.phone_index = None if value is None else blind_index("phone", value)
        return value

    @validates("first_name", "last_name")
    def _index_name(self, key: str, value: str | None) -> str | None:
        first = value if key == "first_name" else self.first_name
        last = value if key == "last_name" else self.last_name
        folded = name_key(first, last)
        self.name_index = None if folded is None else blind_index("name", folded)
        return value


class CustomerToken(Base):
    """A short-lived access token of a customer session (``customers/sessions.py``)."""

    __tablename__ = "customer_tokens"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The sign-in this token belongs to (shared with its refresh tokens); null before 0012.
    session_id: Mapped[str | None] = mapped_column(String(32), index=True)


class CustomerRefreshToken(Base):
    """A refresh token: used once, for the session's next pair of tokens.

    A refresh token presented a second time was copied: the whole session is revoked.
    """

    __tablename__ = "customer_refresh_tokens"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    session_id: Mapped[str] = mapped_column(String(32), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class CustomerIdentity(Base):
    """One identifier of a person: email, phone, loyalty card, POS number, buyer id, device.

    A verified identifier belongs to one profile only (partial unique index); unverified
    ones may repeat, which is how likely duplicates are noticed.
    """

    __tablename__ = "customer_identities"
    __table_args__ = (
        Index("ix_customer_identities_lookup", "type", "value_index"),
        Index(
            "uq_customer_identities_verified",
            "type",
            "value_index",
            unique=True,
            postgresql_where=text("verified"),
            sqlite_where=text("verified"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    type: Mapped[str] = mapped_column(String(20))
    value: Mapped[str] = mapped_column(EncryptedString())
    value_index: Mapped[str] = mapped_column(String(64), info={BLIND_INDEX: _identity_input})
    verified: Mapped[bool] = mapped_column(Boolean, default=False)
    source_channel_id: Mapped[int | None] = mapped_column(BigId)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CustomerAddress(Base):
    """A postal address of the person, encrypted whole; indexes find the same place."""

    __tablename__ = "customer_addresses"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    label: Mapped[str | None] = mapped_column(String(40))
    data: Mapped[dict[str, Any]] = mapped_column(EncryptedJSON())
    address_index: Mapped[str] = mapped_column(
        String(64), index=True, info={BLIND_INDEX: _address_input}
    )
    # Country and postal code: the block in which similar names are compared.
    area_index: Mapped[str | None] = mapped_column(
        String(64), index=True, info={BLIND_INDEX: _area_input}
    )
    default_shipping: Mapped[bool] = mapped_column(Boolean, default=False)
    default_billing: Mapped[bool] = mapped_column(Boolean, default=False)
    source_channel_id: Mapped[int | None] = mapped_column(BigId)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class MergeSuggestion(Base):
    """Two profiles that probably are one person, with a score (0-100) and the reasons."""

    __tablename__ = "customer_merge_suggestions"
    __table_args__ = (
        Index("uq_customer_merge_suggestions_pair", "customer_id", "candidate_id", unique=True),
        Index("ix_customer_merge_suggestions_open", "status", "score"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    # The pair is stored lower id first so that it is recorded once.
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    candidate_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    score: Mapped[int] = mapped_column(Integer)
    reasons: Mapped[list[str]] = mapped_column(JSONType, default=list)
    status: Mapped[str] = mapped_column(String(12), default="open")  # open|merged|dismissed
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CustomerMerge(Base):
    """Profile ``from_id`` merged into ``into_id``, with exactly what moved (for undo)."""

    __tablename__ = "customer_merges"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    into_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    from_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(12))  # merged | undone
    moved: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    actor_type: Mapped[str] = mapped_column(String(20))
    actor_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    undone_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class CustomerActivity(Base):
    """Changes to the profile itself, for the timeline (names of fields, never values)."""

    __tablename__ = "customer_activity"
    __table_args__ = (Index("ix_customer_activity_customer", "customer_id", "at"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    kind: Mapped[str] = mapped_column(String(40))
    channel_id: Mapped[int | None] = mapped_column(BigId)
    data: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)


class CustomerOrderFact(Base):
    """One order as the profile's figures count it, written from order events."""

    __tablename__ = "customer_order_facts"
    __table_args__ = (Index("ix_customer_order_facts_customer", "customer_id", "placed_at"),)

    order_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    channel_id: Mapped[int | None] = mapped_column(BigId)
    store_location_id: Mapped[int | None] = mapped_column(BigId)
    currency: Mapped[str] = mapped_column(String(3))
    grand_total: Mapped[Decimal] = mapped_column(FixedDecimal(4))
    placed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class CustomerFigures(Base):
    """Lifetime value and order count of a profile in one currency (orders not cancelled)."""

    __tablename__ = "customer_figures"
    __table_args__ = (Index("ix_customer_figures_currency_value", "currency", "lifetime_value"),)

    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True
    )
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    order_count: Mapped[int] = mapped_column(Integer, default=0)
    lifetime_value: Mapped[Decimal] = mapped_column(FixedDecimal(4), default=Decimal(0))


class CustomerSeenEvent(Base):
    """Events the figures already counted: delivery is at least once."""

    __tablename__ = "customer_seen_events"

    event_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
