from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, validates

from mercato.crypto import BLIND_INDEX, EncryptedJSON, EncryptedString, blind_index
from mercato.customers.normalize import normalise_phone
from mercato.db import Base, BigId, BigIntPK, FixedDecimal, JSONType, UTCDateTime, utcnow


def contact_email(value: str | None) -> str | None:
    """The normal form an order's email is indexed under (the customers' email form)."""
    email = None if value is None else value.strip().lower()
    return email if email and "@" in email else None


def contact_phone(address: Mapping[str, Any] | None) -> str | None:
    """The address's phone in E.164 when it parses (the form customers' phone identities
    are indexed under)."""

    raw = None if not address else address.get("phone")
    if not raw or address is None:
        return None
    region = address.get("country")
    try:
        return normalise_phone(str(raw), str(region) if region else None)
    except ValueError:
        return None


def buyer_phone(
    shipping: Mapping[str, Any] | None, billing: Mapping[str, Any] | None
) -> str | None:
    """The phone an order can be found (and linked to a profile) by: the billing address's,
    when the buyer gave one apart from the shipping address. A shipping address's phone is
    the recipient's (a gift, a parcel for a colleague), and a billing address copied from
    it says no more: neither may make the order someone else's."""
    if not billing or billing == shipping:
        return None
    return contact_phone(billing)


def _email_input(row: Mapping[str, Any]) -> tuple[str, str] | None:
    email = contact_email(row.get("email"))
    return None if email is None else ("email", email)


def _phone_input(row: Mapping[str, Any]) -> tuple[str, str] | None:
    phone = buyer_phone(row.get("shipping_address"), row.get("billing_address"))
    return None if phone is None else ("phone", phone)


class Order(Base):
    """One order, whatever channel it came from; totals are reproducible from its lines."""

    __tablename__ = "orders"
    __table_args__ = (
        Index("ix_orders_customer", "customer_id", "placed_at"),
        Index("ix_orders_channel_status", "channel_id", "status"),
        Index("ix_orders_external", "channel_id", "external_id", unique=True),
        # The home page's sales of a period, and its orders on hold.
        Index("ix_orders_placed_at", "placed_at"),
        Index("ix_orders_on_hold", "on_hold", "status"),
        Index("ix_orders_store_location", "store_location_id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    number: Mapped[str] = mapped_column(String(20), unique=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id"))
    customer_id: Mapped[int | None] = mapped_column(BigId)
    cart_id: Mapped[int | None] = mapped_column(BigId, index=True)
    # The store of the sale: a pickup store, else the store behind a POS channel.
    store_location_id: Mapped[int | None] = mapped_column(BigId)
    external_id: Mapped[str | None] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(20))  # checkout | staff | import
    status: Mapped[str] = mapped_column(String(24), index=True)
    currency: Mapped[str] = mapped_column(String(3))
    price_list: Mapped[str | None] = mapped_column(String(40))
    tax_included: Mapped[bool] = mapped_column(default=True)
    locale: Mapped[str | None] = mapped_column(String(20))
    subtotal: Mapped[Decimal] = mapped_column(FixedDecimal(4))
    discount_total: Mapped[Decimal] = mapped_column(FixedDecimal(4))
    shipping_total: Mapped[Decimal] = mapped_column(FixedDecimal(4))
    tax_total: Mapped[Decimal] = mapped_column(FixedDecimal(4))
    grand_total: Mapped[Decimal] = mapped_column(FixedDecimal(4))
    # Personal data, encrypted at rest (see mercato.crypto).
    email: Mapped[str | None] = mapped_column(EncryptedString())
    # Keyed hashes of the email and phone (see mercato.crypto): how a guest's orders
    # are found for the person's export, erasure and linking to their profile.
    email_index: Mapped[str | None] = mapped_column(
        String(64), index=True, info={BLIND_INDEX: _email_input}
    )
    phone_index: Mapped[str | None] = mapped_column(
        String(64), index=True, info={BLIND_INDEX: _phone_input}
    )
    shipping_address: Mapped[dict[str, Any] | None] = mapped_column(EncryptedJSON())
    # The shipping address's country, in the clear: not personal on its own, and what
    # sales by region group on without decrypting every address of a period.
    ship_country: Mapped[str | None] = mapped_column(String(2))
    billing_address: Mapped[dict[str, Any] | None] = mapped_column(EncryptedJSON())
    shipping_option: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # Import duty and tax of a cross-border order as estimated at checkout, and whether the
    # shopper paid them with the order (ddp: in the grand total) or pays on delivery (dap).
    import_charges: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # Changes to how the order ships after checkout (another origin or carrier than quoted),
    # oldest first: what the shopper is told.
    shipping_changes: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType)
    tax_breakdown: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    promotions: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    fraud: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # Free text typed by the customer or staff: personal data, encrypted like the email.
    note: Mapped[str | None] = mapped_column(EncryptedString())
    # A hold stops fulfilment (fraud doubt, customer request) until staff release it.
    on_hold: Mapped[bool] = mapped_column(default=False)
    hold_reason: Mapped[str | None] = mapped_column(EncryptedString())
    placed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @validates("email")
    def _index_email(self, _key: str, value: str | None) -> str | None:
        email = contact_email(value)
        self.email_index = None if email is None else blind_index("email", email)
        return value

    @validates("shipping_address", "billing_address")
    def _index_phone(self, key: str, value: dict[str, Any] | None) -> dict[str, Any] | None:
        shipping = value if key == "shipping_address" else self.shipping_address
        billing = value if key == "billing_address" else self.billing_address
        phone = buyer_phone(shipping, billing)
        self.phone_index = None if phone is None else blind_index("phone", phone)
        if key == "shipping_address":
            country = (value or {}).get("country")
            self.ship_country = str(country)[:2].upper() if country else None
        return value


class OrderLine(Base):
    __tablename__ = "order_lines"
    __table_args__ = (Index("ix_order_lines_order", "order_id", "line_no"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    line_no: Mapped[int] = mapped_column(Integer)
    variant_id: Mapped[int] = mapped_column(BigId, index=True)
    sku: Mapped[str] = mapped_column(String(80))
    name: Mapped[str] = mapped_column(String(400))
    tax_class: Mapped[str] = mapped_column(String(40))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[Decimal] = mapped_column(FixedDecimal(4))
    subtotal: Mapped[Decimal] = mapped_column(FixedDecimal(4))
    discount: Mapped[Decimal] = mapped_column(FixedDecimal(4))
    tax: Mapped[Decimal] = mapped_column(FixedDecimal(4))
    tax_rate: Mapped[Decimal] = mapped_column(FixedDecimal(6, 10))
    total: Mapped[Decimal] = mapped_column(FixedDecimal(4))
    delivery_mode: Mapped[str] = mapped_column(String(12))  # ship | pickup
    pickup_location_id: Mapped[int | None] = mapped_column(BigId)
    status: Mapped[str] = mapped_column(String(20), default="open")
    cancelled_quantity: Mapped[int] = mapped_column(Integer, default=0)
    fulfilled_quantity: Mapped[int] = mapped_column(Integer, default=0)
    returned_quantity: Mapped[int] = mapped_column(Integer, default=0)


class OrderTransition(Base):
    """Every change of an order's status: who, when, why. The order's timeline."""

    __tablename__ = "order_transitions"
    __table_args__ = (Index("ix_order_transitions_order", "order_id", "id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    from_status: Mapped[str | None] = mapped_column(String(24))
    to_status: Mapped[str] = mapped_column(String(24))
    actor_type: Mapped[str] = mapped_column(String(20))
    actor_id: Mapped[str | None] = mapped_column(String(64))
    # Typed by staff (a cancellation reason may quote the customer): encrypted.
    reason: Mapped[str | None] = mapped_column(EncryptedString())
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class OrderNote(Base):
    """A staff note on an order (call centre, store, support), or a hold put on it or
    released (``kind``); part of its timeline."""

    __tablename__ = "order_notes"
    __table_args__ = (Index("ix_order_notes_order", "order_id", "id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    # note | hold | hold_released
    kind: Mapped[str] = mapped_column(String(16), default="note", server_default="note")
    # Staff write what customers tell them (phone numbers, addresses): encrypted at rest.
    body: Mapped[str] = mapped_column(EncryptedString())
    author_type: Mapped[str] = mapped_column(String(20))
    author_id: Mapped[str | None] = mapped_column(String(64))
    author_label: Mapped[str | None] = mapped_column(String(254))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class OrderLocation(Base):
    """A location that serves the order: the pickup store of a line, or a location routing
    gave some of its lines to (kept from ``fulfillment.task_created``). What the order
    search by location matches."""

    __tablename__ = "order_locations"
    __table_args__ = (Index("ix_order_locations_location", "location_id", "order_id"),)

    order_id: Mapped[int] = mapped_column(
        ForeignKey("orders.id", ondelete="CASCADE"), primary_key=True
    )
    location_id: Mapped[int] = mapped_column(BigId, primary_key=True)
