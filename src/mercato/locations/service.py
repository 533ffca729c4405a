"""Warehouses, stores and dropship suppliers."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.auth.service import audit
from mercato.db import get_or_404
from mercato.errors import Conflict, ValidationProblem
from mercato.events import publish
from mercato.geocoding import Source, geocode
from mercato.locations.event_types import LocationCreated, LocationUpdated
from mercato.locations.models import Location
from mercato.locations.schemas import Address, Capabilities, LocationIn, LocationPatch
from mercato.pagination import Page, decode_id_cursor, page_of

EARTH_RADIUS_KM = 6371.0088
# What a PATCH may change but not clear (daily_capacity and the coordinates may be null).
NOT_NULL_FIELDS = ("name", "address", "timezone", "opening_hours", "capabilities", "active")


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(a))


def _apply_address(location: Location, address: Address) -> None:
    location.address_line1 = address.line1
    location.address_line2 = address.line2
    location.city = address.city
    location.region = address.region
    location.postal_code = address.postal_code
    location.country = address.country


def _place(location: Location, *, given: bool) -> None:
    """Coordinates typed in are kept (``given``); without them the location is geocoded
    from its address (postal code, else city, else country), so it is never "far away"."""
    if given:
        location.coordinates_source = Source.GIVEN.value
        return
    found = geocode(location.country, location.postal_code, location.city, location.region)
    location.latitude = None if found is None else found.latitude
    location.longitude = None if found is None else found.longitude
    location.coordinates_source = None if found is None else found.source.value


def _apply_capabilities(location: Location, caps: Capabilities) -> None:
    location.can_ship = caps.ship
    location.can_pickup = caps.pickup
    location.can_ship_from_store = caps.ship_from_store
    location.can_accept_returns = caps.returns


def snapshot(location: Location) -> dict[str, Any]:
    return {
        "id": location.id,
        "code": location.code,
        "name": location.name,
        "type": location.type,
        "country": location.country,
        "active": location.active,
    }


def create_location(session: Session, actor: Principal, data: LocationIn) -> Location:
    if session.scalar(select(Location.id).where(Location.code == data.code)) is not None:
        raise Conflict(f"location code {data.code} exists", code="duplicate-code")
    location = Location(
        code=data.code,
        name=data.name,
        type=data.type.value,
        timezone=data.timezone,
        latitude=data.latitude,
        longitude=data.longitude,
        opening_hours=data.opening_hours,
        daily_capacity=data.daily_capacity,
        active=data.active,
    )
    _apply_address(location, data.address)
    _place(location, given=data.latitude is not None)
    _apply_capabilities(location, data.capabilities)
    session.add(location)
    session.flush()
    audit(session, actor, "location.created", "location", location.id, snapshot(location))
    publish(session, LocationCreated(**snapshot(location)))
    return location


def update_location(
    session: Session, actor: Principal, location_id: int, patch: LocationPatch
) -> Location:
    location = get_location(session, location_id)
    actor.require_location(location.id)
    changes = patch.model_dump(exclude_unset=True, mode="json")
    for name in NOT_NULL_FIELDS:
        if name in changes and changes[name] is None:
            raise ValidationProblem.field(f"body.{name}", "may not be null")
    if patch.address is not None:
        _apply_address(location, patch.address)
    if patch.capabilities is not None:
        _apply_capabilities(location, patch.capabilities)
    for name in ("name", "timezone", "opening_hours", "daily_capacity", "active"):
        if name in changes:
            setattr(location, name, getattr(patch, name))
    if "latitude" in changes or "longitude" in changes:
        lat = patch.latitude if "latitude" in changes else location.latitude
        lon = patch.longitude if "longitude" in changes else location.longitude
        # One coordinate may move alone only from a position typed in, not a geocoded one.
        half = ("latitude" in changes) != ("longitude" in changes)
        if (lat is None) != (lon is None) or (
            half and location.coordinates_source != Source.GIVEN
        ):
            raise ValidationProblem.field("body.latitude", "latitude and longitude go together")
        location.latitude, location.longitude = lat, lon
        _place(location, given=lat is not None)
    elif patch.address is not None and location.coordinates_source != Source.GIVEN:
        _place(location, given=False)  # geocoded coordinates follow the address
    if changes:
        session.flush()
        audit(session, actor, "location.updated", "location", location.id, changes)
        publish(session, LocationUpdated(**snapshot(location)))
    return location


def get_location(session: Session, location_id: int) -> Location:
    return get_or_404(session, Location, location_id, f"location {location_id}")


def exists(session: Session, location_id: int) -> bool:
    return session.scalar(select(Location.id).where(Location.id == location_id)) is not None


def all_ids(session: Session, *, active_only: bool = True) -> list[int]:
    query = select(Location.id).order_by(Location.id)
    if active_only:
        query = query.where(Location.active.is_(True))
    return list(session.scalars(query))


def get_locations(session: Session, ids: Sequence[int]) -> list[Location]:
    if not ids:
        return []
    return list(session.scalars(select(Location).where(Location.id.in_(ids)).order_by(Location.id)))


def require_existing(session: Session, ids: Sequence[int], *, field: str) -> None:
    """Raise a 422 naming ``field`` if any id is not a known location."""
    wanted = set(ids)
    if not wanted:
        return
    found = set(session.scalars(select(Location.id).where(Location.id.in_(wanted))))
    missing = sorted(wanted - found)
    if missing:
        raise ValidationProblem.field(f"body.{field}", f"unknown location ids {missing}")


def list_locations(
    session: Session,
    *,
    type: str | None = None,
    country: str | None = None,
    capability: str | None = None,
    active: bool | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[Location]:
    query = select(Location).order_by(Location.id)
    if type:
        query = query.where(Location.type == type)
    if country:
        query = query.where(Location.country == country.upper())
    if capability:
        column = {
            "ship": Location.can_ship,
            "pickup": Location.can_pickup,
            "ship_from_store": Location.can_ship_from_store,
            "returns": Location.can_accept_returns,
        }[capability]
        query = query.where(column.is_(True))
    if active is not None:
        query = query.where(Location.active.is_(active))
    after = decode_id_cursor(cursor)
    if after is not None:
        query = query.where(Location.id > after)
    return page_of(list(session.scalars(query.limit(limit + 1))), limit, key=lambda x: x.id)


def nearest(
    locations: Sequence[Location], latitude: float, longitude: float
) -> list[tuple[Location, float]]:
    """Locations with coordinates, nearest first, with their great-circle distance in km."""
    placed = [
        (loc, haversine_km(latitude, longitude, loc.latitude, loc.longitude))
        for loc in locations
        if loc.latitude is not None and loc.longitude is not None
    ]
    return sorted(placed, key=lambda pair: (pair[1], pair[0].id))
