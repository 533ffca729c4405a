from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from mercato.crypto import EncryptedJSON, EncryptedString
from mercato.db import Base, BigId, BigIntPK, JSONType, UTCDateTime, utcnow


class Cart(Base):
    """A shopper's cart: it keeps its currency and price list whichever channel opens it."""

    __tablename__ = "carts"
    __table_args__ = (Index("ix_carts_customer_status", "customer_id", "status"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    # The secret an anonymous shopper (or an app) holds to reach the cart.
    token: Mapped[str] = mapped_column(String(64), unique=True)
    customer_id: Mapped[int | None] = mapped_column(BigId)
    status: Mapped[str] = mapped_column(String(16), default="open")
    currency: Mapped[str] = mapped_column(String(3))
    price_list: Mapped[str] = mapped_column(String(40))
    created_channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id"))
    last_channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id"))
    # Where taxes are estimated before an address is known: the creating channel's market.
    tax_country: Mapped[str | None] = mapped_column(String(2))
    # Personal data, encrypted at rest (see mercato.crypto).
    email: Mapped[str | None] = mapped_column(EncryptedString())
    shipping_address: Mapped[dict[str, Any] | None] = mapped_column(EncryptedJSON())
    billing_address: Mapped[dict[str, Any] | None] = mapped_column(EncryptedJSON())
    shipping_option_id: Mapped[str | None] = mapped_column(String(200))
    codes: Mapped[list[str]] = mapped_column(JSONType, default=list)
    # Until when the shopper's stock hold (reservations referencing this cart) runs; None
    # when the cart holds nothing. Only a hint for reads: the reservations are the truth.
    held_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    order_id: Mapped[int | None] = mapped_column(BigId)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CartLine(Base):
    __tablename__ = "cart_lines"
    __table_args__ = (Index("ix_cart_lines_cart", "cart_id", "id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    cart_id: Mapped[int] = mapped_column(ForeignKey("carts.id", ondelete="CASCADE"))
    variant_id: Mapped[int] = mapped_column(ForeignKey("variants.id"))
    quantity: Mapped[int] = mapped_column(Integer)
    # ship (to the cart's address) or pickup (click & collect at pickup_location_id)
    delivery_mode: Mapped[str] = mapped_column(String(12), default="ship")
    pickup_location_id: Mapped[int | None] = mapped_column(ForeignKey("locations.id"))
    added_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
