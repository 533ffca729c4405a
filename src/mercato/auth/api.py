from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Query, Request, Response
from sqlalchemy.orm import Session

from mercato.auth import service
from mercato.auth.models import StaffUser
from mercato.auth.passwords import PasswordChange
from mercato.auth.permissions import Permission, Role
from mercato.auth.principal import Principal
from mercato.auth.schemas import (
    ApiTokenIn,
    ApiTokenOut,
    AuditEntryOut,
    LoginIn,
    MeOut,
    MePatch,
    PasswordChangeIn,
    StaffUserIn,
    StaffUserOut,
    StaffUserPatch,
    TokenOut,
)
from mercato.deps import (
    DbSession,
    IdempotencyKey,
    Pagination,
    StaffPrincipal,
    bearer_token,
    get_database,
    get_settings_dep,
    require,
)
from mercato.errors import Unauthorized
from mercato.flows import staff
from mercato.http_security import client_address
from mercato.openapi import problem_responses
from mercato.routing import router
from mercato.schemas import PageOut
from mercato.settings import Settings

api = router("/v1", tags=["staff & access"])


def _user_out(session: Session, user: StaffUser) -> StaffUserOut:
    out = StaffUserOut.model_validate(user)
    out.location_ids = sorted(service.user_location_ids(session, user.id))
    return out


@api.post("/auth/login", response_model=TokenOut, responses=problem_responses(401, 429))
def login(
    body: LoginIn, request: Request, settings: Annotated[Settings, Depends(get_settings_dep)]
) -> TokenOut:
    """Sign in. Repeated failures lock the account, and the client address, for a while
    (the lockout doubles each time up to a cap; a correct password resets the account)."""
    database = get_database(request)
    token, row = service.login(
        database, body.email, body.password, client_address(request), settings
    )
    with database.read() as session:
        user = _user_out(session, service.get_user(session, row.user_id))
    return TokenOut(token=token, expires_at=row.expires_at, user=user)


def _signed_in_staff(
    request: Request,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Principal:
    """The signed-in staff user, read in a short transaction of its own."""
    token = bearer_token(authorization)
    if token is None:
        raise Unauthorized(
            "a staff bearer token is required",
            code="missing-token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    with get_database(request).read() as session:
        return service.authenticate(session, token)


@api.post(
    "/auth/password",
    status_code=204,
    responses={
        409: {"description": "A request with this Idempotency-Key is in progress"},
        401: {"description": "No valid staff token"},
        422: {"description": "`body.current_password` is wrong, or the new one is not valid"},
        429: {"description": "Too many wrong passwords (`too-many-attempts`), see `Retry-After`"},
    },
)
def change_password(
    body: PasswordChangeIn,
    request: Request,
    principal: Annotated[Principal, Depends(_signed_in_staff)],
    settings: Annotated[Settings, Depends(get_settings_dep)],
    key: IdempotencyKey,
) -> Response:
    """Change your own password. Every other session and API token of yours ends; this
    one goes on. A wrong current password counts as a failed sign-in."""
    change = PasswordChange(body.current_password, body.new_password, key)
    replayed = service.change_own_password(
        get_database(request), principal, change, client_address(request), settings
    )
    return Response(status_code=204, headers={"Idempotent-Replayed": "true"} if replayed else None)


@api.post("/auth/logout", status_code=204)
def logout(
    session: DbSession,
    principal: StaffPrincipal,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> None:
    token = bearer_token(authorization)
    if token:
        service.logout(session, token)


@api.get("/auth/me", response_model=MeOut)
def me(session: DbSession, principal: StaffPrincipal) -> MeOut:
    assert principal.id is not None
    user = service.get_user(session, principal.id)
    return MeOut(
        user=_user_out(session, user), permissions=sorted(p.value for p in principal.permissions)
    )


@api.patch("/auth/me", response_model=MeOut, responses=problem_responses(401, 422))
def update_me(session: DbSession, principal: StaffPrincipal, body: MePatch) -> MeOut:
    """Change your own settings: the back office's language."""
    service.set_own_locale(session, principal, body.locale)
    return me(session, principal)


@api.get("/staff", response_model=PageOut[StaffUserOut])
def list_staff(
    session: DbSession,
    page: Pagination,
    principal: Annotated[Principal, Depends(require(Permission.STAFF_READ))],
) -> PageOut[StaffUserOut]:
    result = service.list_users(session, *page)
    return PageOut(
        items=[_user_out(session, u) for u in result.items], next_cursor=result.next_cursor
    )


@api.post("/staff", response_model=StaffUserOut, status_code=201)
def create_staff(
    body: StaffUserIn,
    session: DbSession,
    principal: Annotated[Principal, Depends(require(Permission.STAFF_WRITE))],
) -> StaffUserOut:
    user = staff.create_staff_user(
        session,
        principal,
        email=body.email,
        name=body.name,
        password=body.password,
        role=body.role,
        location_ids=body.location_ids,
    )
    return _user_out(session, user)


@api.get("/staff/{user_id}", response_model=StaffUserOut)
def get_staff(
    user_id: int,
    session: DbSession,
    principal: Annotated[Principal, Depends(require(Permission.STAFF_READ))],
) -> StaffUserOut:
    return _user_out(session, service.get_user(session, user_id))


@api.patch("/staff/{user_id}", response_model=StaffUserOut)
def update_staff(
    user_id: int,
    body: StaffUserPatch,
    session: DbSession,
    principal: Annotated[Principal, Depends(require(Permission.STAFF_WRITE))],
) -> StaffUserOut:
    user = staff.update_staff_user(
        session,
        principal,
        user_id,
        name=body.name,
        role=body.role,
        active=body.active,
        password=body.password,
        location_ids=body.location_ids,
    )
    return _user_out(session, user)


@api.post("/staff/{user_id}/api-tokens", response_model=ApiTokenOut, status_code=201)
def issue_token(
    user_id: int,
    body: ApiTokenIn,
    session: DbSession,
    principal: Annotated[Principal, Depends(require(Permission.STAFF_WRITE))],
) -> ApiTokenOut:
    return ApiTokenOut(token=service.issue_api_token(session, principal, user_id, body.name))


@api.get("/roles")
def list_roles(principal: StaffPrincipal) -> dict[str, list[str]]:
    return {role.value: service.permissions_of(role) for role in Role}


@api.get("/audit", response_model=PageOut[AuditEntryOut])
def list_audit(
    session: DbSession,
    page: Pagination,
    principal: Annotated[Principal, Depends(require(Permission.AUDIT_READ))],
    entity_type: Annotated[str | None, Query(max_length=40)] = None,
    entity_id: Annotated[str | None, Query(max_length=64)] = None,
    actor_id: Annotated[str | None, Query(max_length=64)] = None,
    action: Annotated[str | None, Query(max_length=80)] = None,
) -> PageOut[AuditEntryOut]:
    cursor, limit = page
    result = service.list_audit(
        session,
        entity_type=entity_type,
        entity_id=entity_id,
        actor_id=actor_id,
        action=action,
        cursor=cursor,
        limit=limit,
    )
    return PageOut(
        items=[AuditEntryOut.model_validate(e) for e in result.items],
        next_cursor=result.next_cursor,
    )
