from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pycountry
from pydantic import Field, field_validator, model_validator

from mercato.schemas import ResponseModel, StrictModel

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_TIME = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class LocationType(StrEnum):
    WAREHOUSE = "warehouse"
    STORE = "store"
    DROPSHIP = "dropship"


class Capabilities(StrictModel):
    ship: bool = False
    pickup: bool = False
    ship_from_store: bool = False
    returns: bool = False


class Address(StrictModel):
    line1: str | None = Field(default=None, max_length=200)
    line2: str | None = Field(default=None, max_length=200)
    city: str | None = Field(default=None, max_length=100)
    region: str | None = Field(default=None, max_length=100)
    postal_code: str | None = Field(default=None, max_length=20)
    country: str = Field(min_length=2, max_length=2, description="ISO 3166-1 alpha-2")

    @field_validator("country")
    @classmethod
    def _country(cls, value: str) -> str:
        return validate_country(value)


def validate_country(value: str) -> str:
    code = value.upper()
    if pycountry.countries.get(alpha_2=code) is None:
        raise ValueError(f"{value!r} is not an ISO 3166-1 alpha-2 country code")
    return code


def validate_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"{value!r} is not an IANA time zone") from exc
    return value


def validate_opening_hours(value: dict[str, Any]) -> dict[str, list[list[str]]]:
    clean: dict[str, list[list[str]]] = {}
    for day, ranges in value.items():
        if day not in WEEKDAYS:
            raise ValueError(f"unknown weekday {day!r}; use {', '.join(WEEKDAYS)}")
        if not isinstance(ranges, list):
            raise ValueError(f"{day}: expected a list of [open, close] pairs")
        day_ranges: list[list[str]] = []
        for pair in ranges:
            if (
                not isinstance(pair, list | tuple)
                or len(pair) != 2
                or not all(isinstance(t, str) and _TIME.match(t) for t in pair)
            ):
                raise ValueError(f'{day}: each range is ["HH:MM", "HH:MM"]')
            if pair[0] >= pair[1]:
                raise ValueError(f"{day}: opening {pair[0]} is not before closing {pair[1]}")
            day_ranges.append([pair[0], pair[1]])
        clean[day] = sorted(day_ranges)
    return clean


class LocationIn(StrictModel):
    code: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$")
    name: str = Field(min_length=1, max_length=200)
    type: LocationType
    address: Address
    timezone: str = Field(description="IANA time zone, e.g. Europe/Berlin")
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)
    opening_hours: dict[str, Any] = Field(default_factory=dict)
    capabilities: Capabilities = Field(default_factory=Capabilities)
    daily_capacity: int | None = Field(default=None, ge=0, le=10_000_000)
    active: bool = True

    _tz = field_validator("timezone")(validate_timezone)
    _hours = field_validator("opening_hours")(validate_opening_hours)

    @model_validator(mode="after")
    def _coordinates_together(self) -> LocationIn:
        if (self.latitude is None) != (self.longitude is None):
            raise ValueError("latitude and longitude go together")
        return self


class LocationPatch(StrictModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    address: Address | None = None
    timezone: str | None = None
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)
    opening_hours: dict[str, Any] | None = None
    capabilities: Capabilities | None = None
    daily_capacity: int | None = Field(default=None, ge=0, le=10_000_000)
    active: bool | None = None

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str | None) -> str | None:
        return None if value is None else validate_timezone(value)

    @field_validator("opening_hours")
    @classmethod
    def _hours(cls, value: dict[str, Any] | None) -> dict[str, list[list[str]]] | None:
        return None if value is None else validate_opening_hours(value)


class LocationOut(ResponseModel):
    id: int
    code: str
    name: str
    type: LocationType
    address: Address
    timezone: str
    latitude: float | None
    longitude: float | None
    # given, or geocoded from the address: postal_code, city or country.
    coordinates_source: str | None = None
    opening_hours: dict[str, Any]
    capabilities: Capabilities
    daily_capacity: int | None
    active: bool
    created_at: datetime
    updated_at: datetime
    distance_km: float | None = None
