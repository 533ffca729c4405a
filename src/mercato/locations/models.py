from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from mercato.db import Base, BigIntPK, JSONType, UTCDateTime, utcnow


class Location(Base):
    """A place that holds stock: warehouse, store or dropship supplier."""

    __tablename__ = "locations"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(20), index=True)
    address_line1: Mapped[str | None] = mapped_column(String(200))
    address_line2: Mapped[str | None] = mapped_column(String(200))
    city: Mapped[str | None] = mapped_column(String(100))
    region: Mapped[str | None] = mapped_column(String(100))
    postal_code: Mapped[str | None] = mapped_column(String(20))
    country: Mapped[str] = mapped_column(String(2), index=True)
    timezone: Mapped[str] = mapped_column(String(64))
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    # given (typed in), postal_code, city or country (geocoded from the address, offline).
    coordinates_source: Mapped[str | None] = mapped_column(String(20))
    # {"mon": [["09:00", "20:00"]], ...}; a missing day means closed.
    opening_hours: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    can_ship: Mapped[bool] = mapped_column(Boolean, default=False)
    can_pickup: Mapped[bool] = mapped_column(Boolean, default=False)
    can_ship_from_store: Mapped[bool] = mapped_column(Boolean, default=False)
    can_accept_returns: Mapped[bool] = mapped_column(Boolean, default=False)
    daily_capacity: Mapped[int | None] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
