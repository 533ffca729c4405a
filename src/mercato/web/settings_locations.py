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
from mercato.locations.schemas import WEEKDAYS, Capabilities, LocationOut, LocationPatch
from mercato.web.pages import redirect, show, url_with
from mercato.web.rendering import gettext_for
from mercato.web.session import require_page
from mercato.web.settings_tabs import BASE, context, form_errors, parse, part_router

router = part_router()

P = Permission
CAPABILITIES = ("ship", "pickup", "ship_from_store", "returns")
_RANGE = re.compile(r"^\s*(\d{1,2}:\d{2})\s*[-\u2013]\s*(\d{1,2}:\d{2})\s*$")
Hours = Annotated[str, Form(max_length=200)]
Flag = Annotated[str | None, Form(max_length=10)]


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
    )
    return show(request, "settings/locations.html", values)


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
    principal: Principal = require_page(P.LOCATIONS_WRITE),
) -> Response:
    """As ``PATCH /v1/locations/{id}`` with name, hours, capabilities, capacity, status."""
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
        **days,
        **flags,
    }
    try:
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
        )
        with get_database(request).transaction() as session:
            service.update_location(session, principal, location_id, patch)
    except Problem as problem:
        if problem.status not in (409, 422):
            raise
        with get_database(request).read() as session:
            found = location_out(service.get_location(session, location_id))
        return _location_page(request, principal, found, form, form_errors(problem), 422)
    _ = gettext_for(request).gettext
    return redirect(request, f"{BASE}/locations/{location_id}", _("The location was saved."))
