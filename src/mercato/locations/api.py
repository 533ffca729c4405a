from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Depends, Query

from mercato.auth.permissions import Permission
from mercato.auth.principal import Principal
from mercato.deps import DbSession, Pagination, require
from mercato.locations import service
from mercato.locations.models import Location
from mercato.locations.schemas import (
    Address,
    Capabilities,
    LocationIn,
    LocationOut,
    LocationPatch,
    LocationType,
)
from mercato.routing import router
from mercato.schemas import PageOut

api = router("/v1/locations", tags=["locations"])


def location_out(location: Location, distance_km: float | None = None) -> LocationOut:
    return LocationOut(
        id=location.id,
        code=location.code,
        name=location.name,
        type=LocationType(location.type),
        address=Address(
            line1=location.address_line1,
            line2=location.address_line2,
            city=location.city,
            region=location.region,
            postal_code=location.postal_code,
            country=location.country,
        ),
        timezone=location.timezone,
        latitude=location.latitude,
        longitude=location.longitude,
        coordinates_source=location.coordinates_source,
        opening_hours=location.opening_hours,
        capabilities=Capabilities(
            ship=location.can_ship,
            pickup=location.can_pickup,
            ship_from_store=location.can_ship_from_store,
            returns=location.can_accept_returns,
        ),
        daily_capacity=location.daily_capacity,
        active=location.active,
        created_at=location.created_at,
        updated_at=location.updated_at,
        distance_km=None if distance_km is None else round(distance_km, 3),
    )


@api.get("", response_model=PageOut[LocationOut])
def list_locations(
    session: DbSession,
    page: Pagination,
    principal: Annotated[Principal, Depends(require(Permission.LOCATIONS_READ))],
    type: LocationType | None = None,
    country: Annotated[str | None, Query(min_length=2, max_length=2)] = None,
    capability: Literal["ship", "pickup", "ship_from_store", "returns"] | None = None,
    active: bool | None = None,
) -> PageOut[LocationOut]:
    cursor, limit = page
    result = service.list_locations(
        session,
        type=type.value if type else None,
        country=country,
        capability=capability,
        active=active,
        cursor=cursor,
        limit=limit,
    )
    return PageOut(items=[location_out(x) for x in result.items], next_cursor=result.next_cursor)


@api.post("", response_model=LocationOut, status_code=201)
def create_location(
    body: LocationIn,
    session: DbSession,
    principal: Annotated[Principal, Depends(require(Permission.LOCATIONS_WRITE))],
) -> LocationOut:
    return location_out(service.create_location(session, principal, body))


@api.get("/{location_id}", response_model=LocationOut)
def get_location(
    location_id: int,
    session: DbSession,
    principal: Annotated[Principal, Depends(require(Permission.LOCATIONS_READ))],
) -> LocationOut:
    return location_out(service.get_location(session, location_id))


@api.patch("/{location_id}", response_model=LocationOut)
def update_location(
    location_id: int,
    body: LocationPatch,
    session: DbSession,
    principal: Annotated[Principal, Depends(require(Permission.LOCATIONS_WRITE))],
) -> LocationOut:
    return location_out(service.update_location(session, principal, location_id, body))
