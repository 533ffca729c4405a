"""Settings, channels: the ways of selling and their API keys.

A new key is shown in the answer to the form that made it and never again (only its
prefix is kept, as in ``POST /v1/channels/{id}/keys``). The once-only form store keeps the
key's id, not the key: a resubmitted form says the key was already issued.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from mercato.auth.permissions import Permission
from mercato.auth.principal import Principal
from mercato.catalog import service as catalog
from mercato.catalog.api import category_out
from mercato.catalog.schemas import CategoryOut
from mercato.channels import service
from mercato.channels.api import channel_out
from mercato.channels.schemas import (
    ApiKeyCreated,
    ApiKeyOut,
    ChannelIn,
    ChannelLocationIn,
    ChannelOut,
    ChannelPatch,
    ChannelType,
)
from mercato.deps import get_database
from mercato.errors import FieldError, Problem, ValidationProblem
from mercato.locations import service as locations
from mercato.locations.api import location_out
from mercato.locations.schemas import LocationOut
from mercato.web.pages import once, redirect, show, url_with
from mercato.web.rendering import gettext_for
from mercato.web.session import require_page
from mercato.web.settings_tabs import (
    BASE,
    context,
    form_errors,
    parse,
    part_router,
    split_list,
)

router = part_router()

P = Permission
Text = Annotated[str, Form(max_length=200)]
Key = Annotated[str | None, Form(max_length=200)]


def _list_page(
    request: Request,
    principal: Principal,
    cursor: str | None,
    form: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    with get_database(request).read() as session:
        result = service.page_channels(session, cursor=cursor, limit=50)
        channels = [channel_out(session, c) for c in result.items]
    next_url = url_with(request, cursor=result.next_cursor) if result.next_cursor else None
    values = context(
        principal,
        "channels",
        channels=channels,
        next_url=next_url,
        types=list(ChannelType),
        form=form or {},
        errors=errors or {},
    )
    return show(request, "settings/channels.html", values, status_code=status_code)


@router.get("/settings/channels", response_class=HTMLResponse)
def channels(
    request: Request,
    cursor: str | None = None,
    principal: Principal = require_page(P.CHANNELS_READ),
) -> HTMLResponse:
    return _list_page(request, principal, cursor)


@router.post("/settings/channels", response_class=HTMLResponse)
def create_channel(
    request: Request,
    code: Annotated[str, Form(max_length=40)],
    name: Text,
    type: Annotated[str, Form(max_length=20)],
    default_locale: Annotated[str, Form(max_length=20)],
    currencies: Text,
    country: Annotated[str, Form(max_length=2)] = "",
    price_list: Annotated[str, Form(max_length=40)] = "",
    idempotency_key: Key = None,
    principal: Principal = require_page(P.CHANNELS_WRITE),
) -> Response:
    """As ``POST /v1/channels``: the channel, then its page (where keys are issued)."""
    form = {
        "code": code,
        "name": name,
        "type": type,
        "default_locale": default_locale,
        "currencies": currencies,
        "country": country,
        "price_list": price_list,
    }
    try:
        body = parse(
            ChannelIn,
            code=code.strip(),
            name=name.strip(),
            type=type,
            default_locale=default_locale.strip(),
            currencies=split_list(currencies),
            country=country.strip() or None,
            price_list=price_list.strip() or None,
        )
        with get_database(request).transaction() as session:

            def produce() -> dict[str, Any]:
                return {"id": service.create_channel(session, principal, body).id}

            made, _replayed = once(
                session, principal, "settings.channel", idempotency_key, form, produce
            )
    except Problem as problem:
        return _list_page(request, principal, None, form, form_errors(problem), 422)
    _ = gettext_for(request).gettext
    return redirect(
        request, f"{BASE}/channels/{made['id']}", _("Channel created: issue a key for it.")
    )


def edit_form(channel: ChannelOut) -> dict[str, Any]:
    """The edit form's values for a channel as the API shows it."""
    return {
        "name": channel.name,
        "default_locale": channel.default_locale,
        "locales": ", ".join(channel.locales),
        "currencies": ", ".join(channel.currencies),
        "country": channel.country or "",
        "price_list": channel.price_list or "",
        "ship_to_countries": ", ".join(channel.ship_to_countries),
        "priorities": {str(x.location_id): str(x.priority) for x in channel.locations},
        "assortment": [str(x) for x in channel.assortment_category_ids or []],
    }


def _editing_lists(
    session: Session, principal: Principal
) -> tuple[list[LocationOut], list[CategoryOut]]:
    """The locations and categories the edit form offers, each only to a role that may
    read them (``GET /v1/locations``, ``GET /v1/categories``)."""
    places: list[LocationOut] = []
    categories: list[CategoryOut] = []
    if principal.has(P.CHANNELS_WRITE) and principal.has(P.LOCATIONS_READ):
        places = [location_out(x) for x in locations.list_locations(session, limit=200).items]
    if principal.has(P.CHANNELS_WRITE) and principal.has(P.CATALOG_READ):
        found = catalog.page_categories(session, limit=200).items
        categories = [category_out(c, {}) for c in found]
    return places, categories


def _channel_page(
    request: Request,
    principal: Principal,
    channel_id: int,
    issued: ApiKeyCreated | None = None,
    notice: str | None = None,
    form: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    with get_database(request).read() as session:
        channel = channel_out(session, service.get_channel(session, channel_id))
        keys: list[ApiKeyOut] = []
        if principal.has(P.CHANNELS_WRITE):  # GET /v1/channels/{id}/keys needs it
            keys = [
                ApiKeyOut.model_validate(k)
                for k in service.list_keys(session, channel_id, limit=200).items
            ]
        # The sell-from locations by code, for a role that may read them.
        codes: dict[int, str] = {}
        if principal.has(P.LOCATIONS_READ):
            ids = [x.location_id for x in channel.locations]
            codes = {x.id: x.code for x in locations.get_locations(session, ids)}
        places, categories = _editing_lists(session, principal)
    values = context(
        principal,
        "channels",
        channel=channel,
        keys=keys,
        issued=issued,
        codes=codes,
        places=places,
        categories=categories,
        form=form or edit_form(channel),
        errors=errors or {},
    )
    if notice:
        values["flash"] = notice
    return show(request, "settings/channel.html", values, status_code=status_code)


@router.get("/settings/channels/{channel_id}", response_class=HTMLResponse)
def channel(
    request: Request, channel_id: int, principal: Principal = require_page(P.CHANNELS_READ)
) -> HTMLResponse:
    return _channel_page(request, principal, channel_id)


def sell_from(location_ids: list[int], priorities: list[str]) -> list[ChannelLocationIn]:
    """The form's sell-from rows (a priority per location, empty for not sold from) as the
    API's ``locations``: a lower number is tried first."""
    rows: list[dict[str, Any]] = []
    errors: list[FieldError] = []
    for location_id, text in zip(location_ids, priorities, strict=False):
        text = text.strip()
        if not text:
            continue
        if not text.isdigit():
            errors.append(FieldError("body.locations", "a priority is a whole number"))
            continue
        rows.append({"location_id": location_id, "priority": int(text)})
    if errors:
        raise ValidationProblem(errors[0]["reason"], errors=errors[:1])
    return [ChannelLocationIn.model_validate(r) for r in rows]


@router.post("/settings/channels/{channel_id}", response_class=HTMLResponse)
def update_channel(
    request: Request,
    channel_id: int,
    name: Text,
    default_locale: Annotated[str, Form(max_length=20)],
    currencies: Text,
    locales: Annotated[str, Form(max_length=1000)] = "",
    country: Annotated[str, Form(max_length=2)] = "",
    price_list: Annotated[str, Form(max_length=40)] = "",
    ship_to_countries: Annotated[str, Form(max_length=2000)] = "",
    location_id: Annotated[list[int] | None, Form()] = None,
    priority: Annotated[list[str] | None, Form()] = None,
    assortment: Annotated[list[int] | None, Form()] = None,
    principal: Principal = require_page(P.CHANNELS_WRITE),
) -> Response:
    """As ``PATCH /v1/channels/{id}``. Sell-from locations and the assortment are sent only
    by a role that was shown them (one that may read locations, categories), so a form
    without them leaves them as they are."""
    ids = location_id or []
    given = priority or []
    form: dict[str, Any] = {
        "name": name,
        "default_locale": default_locale,
        "locales": locales,
        "currencies": currencies,
        "country": country,
        "price_list": price_list,
        "ship_to_countries": ship_to_countries,
        "priorities": {str(i): p for i, p in zip(ids, given, strict=False)},
        "assortment": [str(x) for x in assortment or []],
    }
    values: dict[str, Any] = {
        "name": name.strip(),
        "default_locale": default_locale.strip(),
        "locales": split_list(locales),
        "currencies": split_list(currencies),
        "country": country.strip() or None,
        "price_list": price_list.strip() or None,
        "ship_to_countries": split_list(ship_to_countries),
    }
    try:
        if principal.has(P.LOCATIONS_READ):
            values["locations"] = sell_from(ids, given)
        if principal.has(P.CATALOG_READ):
            # No category ticked: the channel sells the whole catalogue (null in the API).
            chosen = sorted(set(assortment or []))
            values["assortment_category_ids"] = chosen or None
        patch = parse(ChannelPatch, **values)
        with get_database(request).transaction() as session:
            service.update_channel(session, principal, channel_id, patch)
    except Problem as problem:
        if problem.status not in (409, 422):
            raise
        return _channel_page(
            request,
            principal,
            channel_id,
            form=form,
            errors=form_errors(problem),
            status_code=422,
        )
    _ = gettext_for(request).gettext
    return redirect(request, f"{BASE}/channels/{channel_id}", _("The channel was saved."))


def _issue(
    session: Session, principal: Principal, channel_id: int, name: str, revoke: int | None
) -> tuple[ApiKeyCreated, dict[str, Any]]:
    key, secret = service.issue_key(session, principal, channel_id, name)
    if revoke is not None:
        service.revoke_key(session, principal, channel_id, revoke)
    created = ApiKeyCreated(
        id=key.id,
        name=key.name,
        key_prefix=key.key_prefix,
        created_at=key.created_at,
        revoked_at=key.revoked_at,
        key=secret,
    )
    return created, {"id": key.id}


def _issue_page(
    request: Request,
    principal: Principal,
    channel_id: int,
    name: str,
    revoke: int | None,
    idempotency_key: str | None,
) -> HTMLResponse:
    _ = gettext_for(request).gettext
    shown: list[ApiKeyCreated] = []
    with get_database(request).transaction() as session:

        def produce() -> dict[str, Any]:
            created, stored = _issue(session, principal, channel_id, name, revoke)
            shown.append(created)
            return stored

        payload = {"channel": channel_id, "name": name, "revoke": revoke}
        _made, replayed = once(
            session, principal, "settings.channel_key", idempotency_key, payload, produce
        )
    if replayed:
        notice = _("This key was already issued; it was shown once and cannot be shown again.")
        return _channel_page(request, principal, channel_id, notice=notice)
    return _channel_page(request, principal, channel_id, issued=shown[0])


@router.get("/settings/channels/{channel_id}/keys")
def keys_page(
    channel_id: int, principal: Principal = require_page(P.CHANNELS_READ)
) -> RedirectResponse:
    """Where a reloaded key form lands: the channel's page (the key is not shown again)."""
    return RedirectResponse(f"{BASE}/channels/{channel_id}", status_code=303)


@router.post("/settings/channels/{channel_id}/keys", response_class=HTMLResponse)
def issue_key(
    request: Request,
    channel_id: int,
    name: Annotated[str, Form(min_length=1, max_length=100)],
    idempotency_key: Key = None,
    principal: Principal = require_page(P.CHANNELS_WRITE),
) -> HTMLResponse:
    """As ``POST /v1/channels/{id}/keys``: the key is in this answer only."""
    return _issue_page(request, principal, channel_id, name.strip(), None, idempotency_key)


@router.post("/settings/channels/{channel_id}/keys/{key_id}/rotate", response_class=HTMLResponse)
def rotate_key(
    request: Request,
    channel_id: int,
    key_id: int,
    name: Annotated[str, Form(min_length=1, max_length=100)],
    idempotency_key: Key = None,
    principal: Principal = require_page(P.CHANNELS_WRITE),
) -> HTMLResponse:
    """A new key in place of an old one, in one transaction: the old one stops working as
    the new one is shown (as issuing, then ``DELETE /v1/channels/{id}/keys/{key_id}``)."""
    return _issue_page(request, principal, channel_id, name.strip(), key_id, idempotency_key)


@router.post("/settings/channels/{channel_id}/keys/{key_id}/revoke")
def revoke_key(
    request: Request,
    channel_id: int,
    key_id: int,
    principal: Principal = require_page(P.CHANNELS_WRITE),
) -> Response:
    with get_database(request).transaction() as session:
        service.revoke_key(session, principal, channel_id, key_id)
    _ = gettext_for(request).gettext
    return redirect(request, f"{BASE}/channels/{channel_id}", _("The key was revoked."))
