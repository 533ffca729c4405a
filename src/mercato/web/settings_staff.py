"""Settings, staff and roles: the accounts, their role and stores (``/v1/staff``).

Creating and changing go through ``flows.staff`` as the API does, so the auth service
decides which roles the signed-in user may give (``MANAGEABLE_ROLES``: an administrator
manages neither owners nor administrators) and a refusal is shown on the form.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from mercato.auth import service
from mercato.auth.permissions import MANAGEABLE_ROLES, Role
from mercato.auth.principal import Principal
from mercato.auth.schemas import (
    ApiTokenIn,
    ApiTokenOut,
    StaffUserIn,
    StaffUserOut,
    StaffUserPatch,
)
from mercato.deps import get_database
from mercato.errors import Problem
from mercato.flows import staff
from mercato.locations import service as locations
from mercato.locations.api import location_out
from mercato.locations.schemas import LocationOut
from mercato.web.pages import once, redirect, show, url_with
from mercato.web.rendering import gettext_for
from mercato.web.session import require_page
from mercato.web.settings_tabs import BASE, P, context, form_errors, parse, part_router

router = part_router()

Key = Annotated[str | None, Form(max_length=200)]
Stores = Annotated[list[int] | None, Form()]
# Statuses a refused form answers with its messages (others are error pages).
FORM_STATUSES = (403, 409, 422)


def user_out(session: Session, user_id: int) -> StaffUserOut:
    """The API's answer for a staff user (``GET /v1/staff/{id}``), with their stores."""
    out = StaffUserOut.model_validate(service.get_user(session, user_id))
    out.location_ids = sorted(service.user_location_ids(session, user_id))
    return out


def _locations(session: Session, principal: Principal) -> list[LocationOut]:
    if not principal.has(P.LOCATIONS_READ):
        return []
    return [location_out(x) for x in locations.list_locations(session, limit=200).items]


def _manageable(principal: Principal) -> list[Role]:
    allowed = MANAGEABLE_ROLES.get(principal.role) if principal.role else None
    return [role for role in Role if allowed and role in allowed]


def _list_page(
    request: Request,
    principal: Principal,
    cursor: str | None,
    form: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    with get_database(request).read() as session:
        result = service.list_users(session, cursor, 50)
        users = [user_out(session, u.id) for u in result.items]
        places = _locations(session, principal)
    next_url = url_with(request, cursor=result.next_cursor) if result.next_cursor else None
    values = context(
        principal,
        "staff",
        users=users,
        next_url=next_url,
        places=places,
        place_codes={p.id: p.code for p in places},
        roles=_manageable(principal),
        form=form or {"location_ids": []},
        errors=errors or {},
    )
    return show(request, "settings/staff.html", values, status_code=status_code)


@router.get("/settings/staff", response_class=HTMLResponse)
def staff_list(
    request: Request,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    principal: Principal = require_page(P.STAFF_READ),
) -> HTMLResponse:
    return _list_page(request, principal, cursor)


@router.post("/settings/staff", response_class=HTMLResponse)
def create_staff(
    request: Request,
    email: Annotated[str, Form(max_length=254)],
    name: Annotated[str, Form(max_length=200)],
    password: Annotated[str, Form(max_length=200)],
    role: Annotated[str, Form(max_length=40)],
    location_ids: Stores = None,
    idempotency_key: Key = None,
    principal: Principal = require_page(P.STAFF_WRITE),
) -> Response:
    """As ``POST /v1/staff``; the new member signs in with this password."""
    stores = sorted(set(location_ids or []))
    form = {"email": email, "name": name, "role": role, "location_ids": stores}
    try:
        body = parse(
            StaffUserIn,
            email=email.strip(),
            name=name.strip(),
            password=password,
            role=role,
            location_ids=stores,
        )
        with get_database(request).transaction() as session:

            def produce() -> dict[str, Any]:
                user = staff.create_staff_user(
                    session,
                    principal,
                    email=body.email,
                    name=body.name,
                    password=body.password,
                    role=body.role,
                    location_ids=body.location_ids,
                )
                return {"id": user.id}

            made, _replayed = once(
                session, principal, "settings.staff", idempotency_key, form, produce
            )
    except Problem as problem:
        if problem.status not in FORM_STATUSES:
            raise
        errors = form_errors(problem)
        if problem.status == 403:
            errors["role"] = gettext_for(request).gettext("Your role may not give this role.")
        return _list_page(request, principal, None, form, errors, problem.status)
    _ = gettext_for(request).gettext
    return redirect(request, f"{BASE}/staff/{made['id']}", _("The staff member was created."))


def _member_page(
    request: Request,
    principal: Principal,
    user_id: int,
    form: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
    issued: ApiTokenOut | None = None,
    notice: str | None = None,
) -> HTMLResponse:
    with get_database(request).read() as session:
        user = user_out(session, user_id)
        places = _locations(session, principal)
    roles = _manageable(principal)
    values = context(
        principal,
        "staff",
        user=user,
        places=places,
        place_codes={p.id: p.code for p in places},
        roles=roles,
        # The service refuses the rest; the page offers changes only where they may work.
        manageable=principal.has(P.STAFF_WRITE) and user.role in roles,
        form=form
        or {"name": user.name, "role": user.role.value, "location_ids": user.location_ids},
        errors=errors or {},
        issued=issued,
        # Long-lived tokens are for integration accounts (people sign in); the API's
        # POST /v1/staff/{id}/api-tokens decides who may issue them.
        integration=user.role == Role.INTEGRATION,
    )
    if notice:
        values["flash"] = notice
    return show(request, "settings/member.html", values, status_code=status_code)


@router.get("/settings/staff/{user_id}", response_class=HTMLResponse)
def member(
    request: Request, user_id: int, principal: Principal = require_page(P.STAFF_READ)
) -> HTMLResponse:
    return _member_page(request, principal, user_id)


def _update(
    request: Request,
    principal: Principal,
    user_id: int,
    patch: dict[str, Any],
    form: dict[str, Any] | None,
    message: str,
) -> Response:
    try:
        body = parse(StaffUserPatch, **patch)
        with get_database(request).transaction() as session:
            staff.update_staff_user(
                session,
                principal,
                user_id,
                name=body.name,
                role=body.role,
                active=body.active,
                password=body.password,
                location_ids=body.location_ids,
            )
    except Problem as problem:
        if problem.status not in FORM_STATUSES:
            raise
        return _member_page(request, principal, user_id, form, form_errors(problem), problem.status)
    return redirect(request, f"{BASE}/staff/{user_id}", message)


@router.post("/settings/staff/{user_id}", response_class=HTMLResponse)
def update_staff(
    request: Request,
    user_id: int,
    name: Annotated[str, Form(max_length=200)],
    role: Annotated[str, Form(max_length=40)],
    location_ids: Stores = None,
    principal: Principal = require_page(P.STAFF_WRITE),
) -> Response:
    """As ``PATCH /v1/staff/{id}`` with name, role and stores."""
    stores = sorted(set(location_ids or []))
    form = {"name": name, "role": role, "location_ids": stores}
    patch = {"name": name.strip(), "role": role, "location_ids": stores}
    saved = gettext_for(request).gettext("Saved.")
    return _update(request, principal, user_id, patch, form, saved)


@router.post("/settings/staff/{user_id}/active", response_class=HTMLResponse)
def set_active(
    request: Request,
    user_id: int,
    active: Annotated[bool, Form()],
    principal: Principal = require_page(P.STAFF_WRITE),
) -> Response:
    """Deactivate (their sessions stop working at once) or reactivate an account."""
    _ = gettext_for(request).gettext
    message = _("The account is active again.") if active else _("The account was deactivated.")
    return _update(request, principal, user_id, {"active": active}, None, message)


@router.post("/settings/staff/{user_id}/password", response_class=HTMLResponse)
def reset_password(
    request: Request,
    user_id: int,
    new_password: Annotated[str, Form(max_length=200)],
    principal: Principal = require_page(P.STAFF_WRITE),
) -> Response:
    """A new password set by a manager: every session of the account ends."""
    _ = gettext_for(request).gettext
    message = _("The password was reset; the account's sessions ended.")
    return _update(request, principal, user_id, {"password": new_password}, None, message)


@router.post("/settings/staff/{user_id}/api-tokens", response_class=HTMLResponse)
def issue_token(
    request: Request,
    user_id: int,
    name: Annotated[str, Form(max_length=100)],
    idempotency_key: Key = None,
    principal: Principal = require_page(P.STAFF_WRITE),
) -> Response:
    """As ``POST /v1/staff/{id}/api-tokens``: the token is in this answer only (the
    once-only store keeps that it was issued, never the token)."""
    shown: list[ApiTokenOut] = []
    try:
        body = parse(ApiTokenIn, name=name.strip())
        with get_database(request).transaction() as session:

            def produce() -> dict[str, Any]:
                token = service.issue_api_token(session, principal, user_id, body.name)
                shown.append(ApiTokenOut(token=token))
                return {"user_id": user_id}

            payload = {"user_id": user_id, "name": body.name}
            _made, replayed = once(
                session, principal, "settings.staff_token", idempotency_key, payload, produce
            )
    except Problem as problem:
        if problem.status not in FORM_STATUSES:
            raise
        errors = {"token_name": form_errors(problem).get("name", problem.detail)}
        return _member_page(request, principal, user_id, None, errors, problem.status)
    if replayed:
        _ = gettext_for(request).gettext
        notice = _("This token was already issued; it was shown once and cannot be shown again.")
        return _member_page(request, principal, user_id, notice=notice)
    return _member_page(request, principal, user_id, issued=shown[0])


@router.get("/settings/staff/{user_id}/api-tokens")
def token_page(user_id: int, principal: Principal = require_page(P.STAFF_READ)) -> RedirectResponse:
    """Where a reloaded token form lands: the account's page (the token is not shown again)."""
    return RedirectResponse(f"{BASE}/staff/{user_id}", status_code=303)
