"""Shipping tables: carrier configuration, rate tables, customs rules, labels, tracking.

Money is stored as integers in the currency's minor unit (``*_minor`` columns, exact on
every backend); rates are stored in parts per million (``*_ppm``: 19% is 190000).
"""

from __future__ import annotations

from datetime import datetime
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
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from mercato.crypto import EncryptedString
from mercato.db import Base, BigId, BigIntPK, JSONType, UTCDateTime, utcnow

# ``origin_country`` of a rate table that applies to parcels from any origin.
ANY_ORIGIN = "*"


class ShippingCarrier(Base):
    """A carrier account: which countries it ships from and to, and how it is reached."""

    __tablename__ = "shipping_carriers"
    __table_args__ = (CheckConstraint("label_serial >= 0", name="label_serial_not_negative"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Registry name of the integration that prices, labels and tracks ("table": built in).
    adapter: Mapped[str] = mapped_column(String(40), default="table")
    # The two service-indicator letters of this carrier's UPU S10 tracking numbers.
    tracking_prefix: Mapped[str] = mapped_column(String(2), unique=True)
    # IANA zone the carrier's working days are counted in.
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    # HMAC-SHA256 key of the carrier's tracking webhooks; never returned by the API.
    webhook_secret: Mapped[str | None] = mapped_column(String(200))
    # Last serial number issued for a label; advanced by one conditional UPDATE per label.
    label_serial: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CarrierCountry(Base):
    """A country a carrier ships from (``direction="from"``) or to (``"to"``)."""

    __tablename__ = "shipping_carrier_countries"
    __table_args__ = (Index("ix_shipping_carrier_countries_lookup", "direction", "country"),)

    carrier_id: Mapped[int] = mapped_column(
        ForeignKey("shipping_carriers.id", ondelete="CASCADE"), primary_key=True
    )
    direction: Mapped[str] = mapped_column(String(4), primary_key=True)
    country: Mapped[str] = mapped_column(String(2), primary_key=True)


class ShippingService(Base):
    """A service level of one carrier, with its transit time in business days."""

    __tablename__ = "shipping_services"
    __table_args__ = (
        UniqueConstraint("carrier_id", "code"),
        CheckConstraint("min_days >= 0", name="min_days_not_negative"),
        CheckConstraint("max_days >= min_days", name="max_days_after_min"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    carrier_id: Mapped[int] = mapped_column(ForeignKey("shipping_carriers.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(200))
    level: Mapped[str] = mapped_column(String(20))
    # "domestic" (origin and destination in one country), "international" or "any".
    scope: Mapped[str] = mapped_column(String(16), default="any")
    min_days: Mapped[int] = mapped_column(Integer)
    max_days: Mapped[int] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ShippingZone(Base):
    """A named set of destinations (countries, regions, postal-code prefixes)."""

    __tablename__ = "shipping_zones"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ZoneMember(Base):
    """One destination of a zone: a whole country, one region of it or a postal prefix."""

    __tablename__ = "shipping_zone_members"
    __table_args__ = (Index("ix_shipping_zone_members_country", "country", "zone_id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    zone_id: Mapped[int] = mapped_column(ForeignKey("shipping_zones.id", ondelete="CASCADE"))
    country: Mapped[str] = mapped_column(String(2))
    # ISO 3166-2 subdivision code without the country ("CA" for US-CA, "13" for JP-13).
    region: Mapped[str | None] = mapped_column(String(10))
    # Normalised postal-code prefix: upper case, without spaces or hyphens.
    postal_prefix: Mapped[str | None] = mapped_column(String(12))


class RateTable(Base):
    """Prices of one service for parcels from one origin (or any) to one zone, one currency."""

    __tablename__ = "shipping_rate_tables"
    __table_args__ = (
        UniqueConstraint("service_id", "origin_country", "zone_id", "currency"),
        Index("ix_shipping_rate_tables_zone", "zone_id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    service_id: Mapped[int] = mapped_column(ForeignKey("shipping_services.id", ondelete="CASCADE"))
    origin_country: Mapped[str] = mapped_column(String(2))  # ANY_ORIGIN for every origin
    zone_id: Mapped[int] = mapped_column(ForeignKey("shipping_zones.id", ondelete="RESTRICT"))
    currency: Mapped[str] = mapped_column(String(3))
    per_extra_kg_minor: Mapped[int | None] = mapped_column(BigInteger)
    free_over_minor: Mapped[int | None] = mapped_column(BigInteger)
    remote_surcharge_minor: Mapped[int | None] = mapped_column(BigInteger)
    remote_postal_prefixes: Mapped[list[str]] = mapped_column(JSONType, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RateBracket(Base):
    """Parcels up to ``up_to_g`` grams (and above the previous bracket) cost ``price``."""

    __tablename__ = "shipping_rate_brackets"
    __table_args__ = (
        CheckConstraint("up_to_g > 0", name="up_to_positive"),
        CheckConstraint("price_minor >= 0", name="price_not_negative"),
    )

    rate_table_id: Mapped[int] = mapped_column(
        ForeignKey("shipping_rate_tables.id", ondelete="CASCADE"), primary_key=True
    )
    up_to_g: Mapped[int] = mapped_column(Integer, primary_key=True)
    price_minor: Mapped[int] = mapped_column(BigInteger)


class CustomsCountry(Base):
    """Import rules of one destination country: thresholds, default duty, import tax."""

    __tablename__ = "shipping_customs_countries"

    country: Mapped[str] = mapped_column(String(2), primary_key=True)
    currency: Mapped[str] = mapped_column(String(3))
    duty_de_minimis_minor: Mapped[int | None] = mapped_column(BigInteger)
    tax_de_minimis_minor: Mapped[int | None] = mapped_column(BigInteger)
    default_duty_ppm: Mapped[int] = mapped_column(Integer)
    import_tax_ppm: Mapped[int] = mapped_column(Integer)
    tax_name: Mapped[str] = mapped_column(String(40))
    valuation: Mapped[str] = mapped_column(String(3))  # "cif" or "fob"
    preferential_origins: Mapped[list[str]] = mapped_column(JSONType, default=list)
    note: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CustomsDutyRate(Base):
    """The duty rate of an HS chapter (2 digits), heading (4) or subheading (6+)."""

    __tablename__ = "shipping_customs_duty_rates"

    country: Mapped[str] = mapped_column(
        ForeignKey("shipping_customs_countries.country", ondelete="CASCADE"), primary_key=True
    )
    hs_prefix: Mapped[str] = mapped_column(String(10), primary_key=True)
    rate_ppm: Mapped[int] = mapped_column(Integer)
    description: Mapped[str | None] = mapped_column(String(200))


class CustomsExchangeRate(Base):
    """Customs valuation rate: one unit of ``from_currency`` is ``rate`` ``to_currency``.

    Stored as decimal text: rates such as VND->USD need more digits than a fixed scale
    keeps, and nothing computes with them in SQL.
    """

    __tablename__ = "shipping_customs_exchange_rates"

    from_currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    to_currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    rate: Mapped[str] = mapped_column(String(40))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ShippingLabel(Base):
    """A label bought from a carrier for one parcel, and the parcel's latest status."""

    __tablename__ = "shipping_labels"
    __table_args__ = (Index("ix_shipping_labels_reference", "reference"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    tracking_number: Mapped[str] = mapped_column(String(40), unique=True)
    carrier_id: Mapped[int] = mapped_column(ForeignKey("shipping_carriers.id"))
    service_id: Mapped[int] = mapped_column(ForeignKey("shipping_services.id"))
    carrier_code: Mapped[str] = mapped_column(String(40))
    service_code: Mapped[str] = mapped_column(String(40))
    reference: Mapped[str | None] = mapped_column(String(64))
    origin_country: Mapped[str] = mapped_column(String(2))
    destination_country: Mapped[str] = mapped_column(String(2))
    weight_g: Mapped[int] = mapped_column(Integer)
    format: Mapped[str] = mapped_column(String(8))
    # The printable label names the recipient: personal data, encrypted at rest.
    content: Mapped[str | None] = mapped_column(EncryptedString())
    url: Mapped[str | None] = mapped_column(String(500))
    customs: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    status: Mapped[str] = mapped_column(String(24))
    # occurred_at of the tracking event that set ``status`` (events may arrive out of order).
    status_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    voided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class TrackingEventRecord(Base):
    """One scan or status change of a parcel, from the API, a webhook or a carrier poll."""

    __tablename__ = "shipping_tracking_events"
    __table_args__ = (
        # A carrier's event id is recorded once: webhook retries change nothing.
        UniqueConstraint("carrier_id", "external_id"),
        Index("ix_shipping_tracking_events_label", "label_id", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    label_id: Mapped[int] = mapped_column(ForeignKey("shipping_labels.id", ondelete="CASCADE"))
    carrier_id: Mapped[int] = mapped_column(BigId)
    tracking_number: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(24))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    location: Mapped[str | None] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(10))
    external_id: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
