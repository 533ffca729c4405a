"""Settings, carriers: a shipping zone's countries, regions and postal prefixes
(``PATCH /v1/shipping/zones/{id}``) and a rate table's prices
(``PUT /v1/shipping/rate-tables/{id}``).

Reading needs shipping:read; saving needs shipping:write. A rate table is replaced whole,
as the API does it: its service, zone, origin and currency stay, the prices change.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Form, Request
from fastapi.responses import HTMLResponse, Response

from mercato.auth.principal import Principal
from mercato.deps import get_database
from mercato.errors import FieldError, Problem, ValidationProblem
from mercato.shipping import service as shipping
from mercato.shipping.api import table_out, zones_out
from mercato.shipping.schemas import RateTableIn, RateTableOut, ZoneOut, ZonePatch
from mercato.web.pages import redirect, show
from mercato.web.rendering import gettext_for
from mercato.web.session import require_page
from mercato.web.settings_tabs import BASE, P, context, form_errors, parse, part_router, split_list

router = part_router()

Lines = Annotated[str, Form(max_length=100_000)]
Amount = Annotated[str, Form(max_length=30)]


def members_text(zone: ZoneOut) -> str:
    """A zone's members one a line: ``DE``, ``US-CA`` (a region), ``GB EC`` (a prefix)."""
    lines = []
    for member in zone.members:
        line = member.country + (f"-{member.region}" if member.region else "")
        lines.append(line + (f" {member.postal_prefix}" if member.postal_prefix else ""))
    return "\n".join(lines)


def parse_members(text: str) -> list[dict[str, Any]]:
    """The form's members as the API's ``members`` (the API's model checks each code)."""
    members: list[dict[str, Any]] = []
    for line in filter(None, (x.strip() for x in text.splitlines())):
        parts = line.split()
        if len(parts) > 2:
            raise ValidationProblem.field("body.members", f"{line!r}: write DE, US-CA or GB EC")
        country, _dash, region = parts[0].partition("-")
        member: dict[str, Any] = {"country": country}
        if region:
            member["region"] = region
        if len(parts) == 2:
            member["postal_prefix"] = parts[1]
        members.append(member)
    return members


def brackets_text(table: RateTableOut) -> str:
    return "\n".join(f"{b.up_to_g} {b.price}" for b in table.brackets)


def parse_brackets(text: str) -> list[dict[str, str]]:
    """``up-to grams`` and ``price`` on each line, e.g. ``2000 5.90``."""
    brackets: list[dict[str, str]] = []
    errors: list[FieldError] = []
    for line in filter(None, (x.strip() for x in text.splitlines())):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            errors.append(
                FieldError("body.brackets", f"{line!r}: write grams and price, 2000 5.90")
            )
            continue
        brackets.append({"up_to_g": parts[0], "price": parts[1].replace(",", ".")})
    if errors:
        raise ValidationProblem(errors[0]["reason"], errors=errors[:1])
    return brackets


def _zone_page(
    request: Request,
    principal: Principal,
    zone_id: int,
    form: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    with get_database(request).read() as session:
        zone = zones_out(session, [shipping.get_zone(session, zone_id)])[0]
    values = context(
        principal,
        "carriers",
        zone=zone,
        form=form or {"name": zone.name, "members": members_text(zone)},
        errors=errors or {},
    )
    return show(request, "settings/zone.html", values, status_code=status_code)


@router.get("/settings/carriers/zones/{zone_id}", response_class=HTMLResponse)
def zone(
    request: Request, zone_id: int, principal: Principal = require_page(P.SHIPPING_READ)
) -> HTMLResponse:
    return _zone_page(request, principal, zone_id)


@router.post("/settings/carriers/zones/{zone_id}", response_class=HTMLResponse)
def update_zone(
    request: Request,
    zone_id: int,
    name: Annotated[str, Form(max_length=200)],
    members: Lines,
    principal: Principal = require_page(P.SHIPPING_WRITE),
) -> Response:
    """As ``PATCH /v1/shipping/zones/{id}`` with the name and every member."""
    form = {"name": name, "members": members}
    try:
        patch = parse(ZonePatch, name=name.strip(), members=parse_members(members))
        with get_database(request).transaction() as session:
            shipping.update_zone(session, principal, zone_id, patch)
    except Problem as problem:
        if problem.status not in (409, 422):
            raise
        return _zone_page(request, principal, zone_id, form, form_errors(problem), 422)
    _ = gettext_for(request).gettext
    return redirect(request, f"{BASE}/carriers", _("The zone was saved."))


def _table_form(table: RateTableOut) -> dict[str, str]:
    def text(value: object) -> str:
        return "" if value is None else str(value)

    return {
        "brackets": brackets_text(table),
        "per_extra_kg": text(table.per_extra_kg),
        "free_over": text(table.free_over),
        "remote_surcharge": text(table.remote_surcharge),
        "remote_postal_prefixes": ", ".join(table.remote_postal_prefixes),
    }


def _table_page(
    request: Request,
    principal: Principal,
    table_id: int,
    form: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    with get_database(request).read() as session:
        table = table_out(session, table_id)
    values = context(
        principal,
        "carriers",
        table=table,
        form=form or _table_form(table),
        errors=errors or {},
    )
    return show(request, "settings/rate_table.html", values, status_code=status_code)


@router.get("/settings/carriers/rate-tables/{table_id}", response_class=HTMLResponse)
def rate_table(
    request: Request, table_id: int, principal: Principal = require_page(P.SHIPPING_READ)
) -> HTMLResponse:
    return _table_page(request, principal, table_id)


@router.post("/settings/carriers/rate-tables/{table_id}", response_class=HTMLResponse)
def replace_rate_table(
    request: Request,
    table_id: int,
    brackets: Lines,
    per_extra_kg: Amount = "",
    free_over: Amount = "",
    remote_surcharge: Amount = "",
    remote_postal_prefixes: Lines = "",
    principal: Principal = require_page(P.SHIPPING_WRITE),
) -> Response:
    """As ``PUT /v1/shipping/rate-tables/{id}``: the table's prices, replaced whole."""
    form = {
        "brackets": brackets,
        "per_extra_kg": per_extra_kg,
        "free_over": free_over,
        "remote_surcharge": remote_surcharge,
        "remote_postal_prefixes": remote_postal_prefixes,
    }

    def amount(text: str) -> str | None:
        return text.strip().replace(",", ".") or None

    try:
        with get_database(request).transaction() as session:
            table = table_out(session, table_id)
            body = parse(
                RateTableIn,
                service_id=table.service_id,
                zone_id=table.zone_id,
                origin_country=table.origin_country,
                currency=table.currency,
                brackets=parse_brackets(brackets),
                per_extra_kg=amount(per_extra_kg),
                free_over=amount(free_over),
                remote_surcharge=amount(remote_surcharge),
                remote_postal_prefixes=split_list(remote_postal_prefixes),
            )
            shipping.replace_rate_table(session, principal, table_id, body)
    except Problem as problem:
        if problem.status not in (409, 422):
            raise
        return _table_page(request, principal, table_id, form, form_errors(problem), 422)
    _ = gettext_for(request).gettext
    return redirect(request, f"{BASE}/carriers", _("The rate table was saved."))
