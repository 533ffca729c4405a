from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from mercato.db import Base, BigIntPK, JSONType, UTCDateTime, utcnow


class Channel(Base):
    """A way of selling: a web store, an app, a store's POS, a marketplace, a call centre."""

    __tablename__ = "channels"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(20))
    default_locale: Mapped[str] = mapped_column(String(20))
    # Every locale the channel serves, default first.
    locales: Mapped[list[str]] = mapped_column(JSONType, default=list)
    # ISO 4217 codes the channel sells in, default first.
    currencies: Mapped[list[str]] = mapped_column(JSONType, default=list)
    price_list: Mapped[str | None] = mapped_column(String(40))
    country: Mapped[str | None] = mapped_column(String(2))
    # Which of its currencies a shopper from a country is quoted in ({"JP": "JPY"});
    # countries not listed get the default (the first currency).
    country_currencies: Mapped[dict[str, str]] = mapped_column(JSONType, default=dict)
    # Countries the channel ships to (empty: its home country only).
    ship_to_countries: Mapped[list[str]] = mapped_column(JSONType, default=list)
    # The sell-from locations in priority order, kept in step with ``channel_locations`` so
    # that resolving a channel key is one query however many locations the channel has.
    location_order: Mapped[list[int]] = mapped_column(JSONType, default=list)
    # Countries the channel ships from (its active shipping locations, priority order):
    # carts quote shipping from here. Refreshed when a location changes (events).
    ship_origins: Mapped[list[str]] = mapped_column(JSONType, default=list)
    # Import duties and taxes of a cross-border parcel: "ddp" the shopper pays them at
    # checkout (delivered duty paid), "dap" the carrier collects them on delivery.
    import_duties: Mapped[str] = mapped_column(String(3), default="dap", server_default="dap")
    # None: every active product; a list: only products in these categories and below.
    assortment_category_ids: Mapped[list[int] | None] = mapped_column(JSONType)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class ChannelLocation(Base):
    """A stock location the channel may sell from (lower priority number first)."""

    __tablename__ = "channel_locations"

    channel_id: Mapped[int] = mapped_column(
        ForeignKey("channels.id", ondelete="CASCADE"), primary_key=True
    )
    location_id: Mapped[int] = mapped_column(
        ForeignKey("locations.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    priority: Mapped[int] = mapped_column(Integer, default=0)


class ChannelApiKey(Base):
    """A secret a storefront, app or POS sends as ``X-Channel-Key``; stored as SHA-256."""

    __tablename__ = "channel_api_keys"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    channel_id: Mapped[int] = mapped_column(
        ForeignKey("channels.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    key_prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
