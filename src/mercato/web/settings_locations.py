"""Settings, locations: warehouses, stores and suppliers with their opening hours,
capabilities and daily capacity (``/v1/locations``).

Store managers and associates read them (locations:read) and change nothing: changing
needs locations:write, and the service keeps a store-scoped writer to their own stores.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import Form, Query, Request
from fastapi.responses import HTMLResponse, Response

from mercato.auth.permissions import Permission
from mercato.auth.principal import Principal
from mercato.deps import get_database
from mercato.errors import FieldError, Problem, ValidationProblem
from mercato.locations import service
from mercato.locations.api import location_out
from mercato.locations.schemas import (
    WEEKDAYS,
    Capabilities,
    LocationIn,
    LocationOut,
    LocationPatch,
    LocationType,
)
from mercato.web.pages import once, redirect, show, url_with
from mercato.web.rendering import gettext_for
from mercato.web.session import require_page
from mercato.web.settings_tabs import BASE, context, form_errors, parse, part_router

router = part_router()

P = Permission
CAPABILITIES = ("ship", "pickup", "ship_from_store", "returns")
_RANGE = re.compile(r"^\s*(\d{1,2}:\d{2})\s*[-\u2013]\s*(\d{1,2}:\d{2})\s*$")
Hours = Annotated[str, Form(max_length=200)]
Flag = Annotated[str | None, Form(max_length=10)]


ADDRESS = ("line1", "line2", "postal_code", "city", "region", "country")
Line = Annotated[str, Form(max_length=200)]
Short = Annotated[str, Form(max_length=100)]
Number = Annotated[str, Form(max_length=40)]


def _list_page(
    request: Request,
    principal: Principal,
    kind: str | None,
    country: str | None,
    cursor: str | None,
    form: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    with get_database(request).read() as session:
        result = service.list_locations(
            session, type=kind, country=country or None, cursor=cursor, limit=50
        )
        rows = [location_out(x) for x in result.items]
    next_url = url_with(request, cursor=result.next_cursor) if result.next_cursor else None
    values = context(
        principal,
        "locations",
        locations=rows,
        next_url=next_url,
        filters={"type": kind or "", "country": country or ""},
        types=list(LocationType),
        capabilities=CAPABILITIES,
        form=form or {"type": "store", "ship": True},
        errors=errors or {},
    )
    return show(request, "settings/locations.html", values, status_code=status_code)


@router.get("/settings/locations", response_class=HTMLResponse)
def locations(
    request: Request,
    type: Annotated[str | None, Query(max_length=20)] = None,
    country: Annotated[str | None, Query(max_length=2)] = None,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    principal: Principal = require_page(P.LOCATIONS_READ),
) -> HTMLResponse:
    """As ``GET /v1/locations`` with its filters, kept in the URL."""
    kind = type if type in ("warehouse", "store", "dropship") else None
    return _list_page(request, principal, kind, country, cursor)


def coordinate(text: str, field: str) -> float | None:
    """A typed latitude or longitude (a dot or a comma as the decimal mark), or None;
    the API's model checks the range."""
    text = text.strip().replace(",", ".")
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise ValidationProblem.field(f"body.{field}", "a number such as 52.52") from None


def address_values(form: dict[str, Any]) -> dict[str, Any]:
    """The form's address fields as the API's ``Address`` (empty lines are null)."""
    address: dict[str, Any] = {
        name: (str(form.get(name, "")).strip() or None) for name in ADDRESS if name != "country"
    }
    address["country"] = str(form.get("country", "")).strip()
    return address


@router.post("/settings/locations", response_class=HTMLResponse)
def create_location(
    request: Request,
    code: Annotated[str, Form(max_length=40)],
    name: Line,
    type: Annotated[str, Form(max_length=20)],
    country: Annotated[str, Form(max_length=2)],
    timezone: Short,
    line1: Line = "",
    line2: Line = "",
    postal_code: Annotated[str, Form(max_length=20)] = "",
    city: Short = "",
    region: Short = "",
    latitude: Number = "",
    longitude: Number = "",
    ship: Flag = None,
    pickup: Flag = None,
    ship_from_store: Flag = None,
    returns: Flag = None,
    idempotency_key: Annotated[str | None, Form(max_length=200)] = None,
    principal: Principal = require_page(P.LOCATIONS_WRITE),
) -> Response:
    """As ``POST /v1/locations``: a location without typed coordinates is placed from
    its address; hours and capacity are set on its page afterwards."""
    flags = {
        "ship": ship is not None,
        "pickup": pickup is not None,
        "ship_from_store": ship_from_store is not None,
        "returns": returns is not None,
    }
    form: dict[str, Any] = {
        "code": code,
        "name": name,
        "type": type,
        "line1": line1,
        "line2": line2,
        "postal_code": postal_code,
        "city": city,
        "region": region,
        "country": country,
        "timezone": timezone,
        "latitude": latitude,
        "longitude": longitude,
        **flags,
    }
    try:
        body = parse(
            LocationIn,
            code=code.strip(),
            name=name.strip(),
            type=type,
            address=address_values(form),
            timezone=timezone.strip(),
            latitude=coordinate(latitude, "latitude"),
            longitude=coordinate(longitude, "longitude"),
            capabilities=flags,
        )
        with get_database(request).transaction() as session:

            def produce() -> dict[str, Any]:
                return {"id": service.create_location(session, principal, body).id}

            made, _replayed = once(
                session, principal, "settings.location", idempotency_key, form, produce
            )
    except Problem as problem:
        if problem.status not in (409, 422):
            raise
        errors = form_errors(problem)
        return _list_page(request, principal, None, None, None, form, errors, 422)
    _ = gettext_for(request).gettext
    message = _("The location was created: set its opening hours and capacity here.")
    return redirect(request, f"{BASE}/locations/{made['id']}", message)


def hours_text(ranges: list[list[str]] | None) -> str:
    """A day's opening hours as the form shows them: ``09:00-13:00, 14:00-18:00``."""
    return ", ".join(f"{a}-{b}" for a, b in ranges or [])


def parse_hours(days: dict[str, str]) -> dict[str, list[list[str]]]:
    """The form's hours (one field per weekday, empty for closed) as the API's
    ``opening_hours``; the API's model checks the times themselves."""
    hours: dict[str, list[list[str]]] = {}
    errors: list[FieldError] = []
    for day, text in days.items():
        ranges: list[list[str]] = []
        for part in filter(None, (p.strip() for p in text.split(","))):
            found = _RANGE.match(part)
            if found is None:
                errors.append(FieldError(f"body.opening_hours.{day}", "write 09:00-18:00"))
                break
            ranges.append([t.zfill(5) for t in found.groups()])
        if ranges:
            hours[day] = ranges
    if errors:
        raise ValidationProblem("; ".join(e["reason"] for e in errors), errors=errors)
    return hours


def _location_page(
    request: Request,
    principal: Principal,
    location: LocationOut,
    form: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    editable = principal.has(P.LOCATIONS_WRITE) and principal.can_access_location(location.id)
    shown = form or {
        "name": location.name,
        "daily_capacity": "" if location.daily_capacity is None else str(location.daily_capacity),
        "active": location.active,
        **{name: getattr(location.address, name) or "" for name in ADDRESS},
        "timezone": location.timezone,
        "latitude": "" if location.latitude is None else str(location.latitude),
        "longitude": "" if location.longitude is None else str(location.longitude),
        **{day: hours_text(location.opening_hours.get(day)) for day in WEEKDAYS},
        **{name: getattr(location.capabilities, name) for name in CAPABILITIES},
    }
    values = context(
        principal,
        "locations",
        location=location,
        editable=editable,
        weekdays=WEEKDAYS,
        capabilities=CAPABILITIES,
        form=shown,
        errors=errors or {},
    )
    return show(request, "settings/location.html", values, status_code=status_code)


@router.get("/settings/locations/{location_id}", response_class=HTMLResponse)
def location(
    request: Request, location_id: int, principal: Principal = require_page(P.LOCATIONS_READ)
) -> HTMLResponse:
    with get_database(request).read() as session:
        found = location_out(service.get_location(session, location_id))
    return _location_page(request, principal, found)


def where(form: dict[str, Any], has_address: bool, has_timezone: bool) -> dict[str, Any]:
    """The address and time zone of a form that shows them (an older form without them
    changes neither)."""
    values: dict[str, Any] = {}
    if has_address:
        values["address"] = address_values(form)
    if has_timezone:
        values["timezone"] = str(form["timezone"]).strip()
    return values


def placed(
    patch: LocationPatch, found: LocationOut, lat: float | None, lon: float | None
) -> LocationPatch:
    """The patch without an unchanged address or time zone (saving the hours neither
    re-places the location nor fills the audit entry with what stayed), and with the
    typed coordinates only if they differ from the location's."""
    changed = patch.model_dump(exclude_unset=True)
    if patch.address == found.address:
        changed.pop("address", None)
    if patch.timezone == found.timezone:
        changed.pop("timezone", None)
    if (lat, lon) != (found.latitude, found.longitude):
        changed |= {"latitude": lat, "longitude": lon}
    return parse(LocationPatch, **changed)


@router.post("/settings/locations/{location_id}", response_class=HTMLResponse)
def update_location(
    request: Request,
    location_id: int,
    name: Annotated[str, Form(max_length=200)],
    daily_capacity: Annotated[str, Form(max_length=12)] = "",
    mon: Hours = "",
    tue: Hours = "",
    wed: Hours = "",
    thu: Hours = "",
    fri: Hours = "",
    sat: Hours = "",
    sun: Hours = "",
    ship: Flag = None,
    pickup: Flag = None,
    ship_from_store: Flag = None,
    returns: Flag = None,
    active: Flag = None,
    line1: Line = "",
    line2: Line = "",
    postal_code: Annotated[str, Form(max_length=20)] = "",
    city: Short = "",
    region: Short = "",
    country: Annotated[str | None, Form(max_length=2)] = None,
    timezone: Annotated[str | None, Form(max_length=100)] = None,
    latitude: Number = "",
    longitude: Number = "",
    principal: Principal = require_page(P.LOCATIONS_WRITE),
) -> Response:
    """As ``PATCH /v1/locations/{id}`` with name, address, time zone, coordinates, hours,
    capabilities, capacity and status. The coordinates are sent only when changed: left
    as they are, geocoded ones keep following the address."""
    days = {"mon": mon, "tue": tue, "wed": wed, "thu": thu, "fri": fri, "sat": sat, "sun": sun}
    flags = {
        "ship": ship is not None,
        "pickup": pickup is not None,
        "ship_from_store": ship_from_store is not None,
        "returns": returns is not None,
    }
    form: dict[str, Any] = {
        "name": name,
        "daily_capacity": daily_capacity,
        "active": active is not None,
        "line1": line1,
        "line2": line2,
        "postal_code": postal_code,
        "city": city,
        "region": region,
        "country": country or "",
        "timezone": timezone or "",
        "latitude": latitude,
        "longitude": longitude,
        **days,
        **flags,
    }
    try:
        lat, lon = coordinate(latitude, "latitude"), coordinate(longitude, "longitude")
        capacity = daily_capacity.strip()
        if capacity and not capacity.isdigit():
            raise ValidationProblem.field("body.daily_capacity", "a whole number, or empty")
        patch = parse(
            LocationPatch,
            name=name.strip(),
            opening_hours=parse_hours(days),
            capabilities=Capabilities(**flags),
            daily_capacity=int(capacity) if capacity else None,
            active=active is not None,
            **where(form, country is not None, timezone is not None),
        )
        with get_database(request).transaction() as session:
            found = location_out(service.get_location(session, location_id))
            patch = placed(patch, found, lat, lon)
            service.update_location(session, principal, location_id, patch)
    except Problem as problem:
        if problem.status not in (409, 422):
            raise
        with get_database(request).read() as session:
            found = location_out(service.get_location(session, location_id))
        return _location_page(request, principal, found, form, form_errors(problem), 422)
    _ = gettext_for(request).gettext
    return redirect(request, f"{BASE}/locations/{location_id}", _("The location was saved."))
