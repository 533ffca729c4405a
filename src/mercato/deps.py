"""FastAPI dependencies: the request's unit of work and who is calling."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Header, Query, Request
from sqlalchemy.orm import Session

from mercato.auth import service as auth_service
from mercato.auth.permissions import Permission
from mercato.auth.principal import Principal
from mercato.db import Database
from mercato.errors import Unauthorized
from mercato.idempotency import check_key
from mercato.pagination import DEFAULT_LIMIT, MAX_LIMIT
from mercato.settings import Settings

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_database(request: Request) -> Database:
    db: Database = request.app.state.database
    return db


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_session(request: Request) -> Iterator[Session]:
    """One transaction per request: committed before the response is sent, or rolled back."""
    db = get_database(request)
    if request.method in SAFE_METHODS:
        with db.read() as session:
            yield session
        return
    with db.transaction() as session:
        session.info["request_id"] = getattr(request.state, "request_id", None)
        yield session


DbSession = Annotated[Session, Depends(get_session, scope="function")]


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def staff_principal(
    session: DbSession,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Principal:
    token = bearer_token(authorization)
    if token is None:
        raise Unauthorized(
            "a staff bearer token is required",
            code="missing-token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return auth_service.authenticate(session, token)


StaffPrincipal = Annotated[Principal, Depends(staff_principal)]


def require(permission: Permission) -> Callable[[Principal], Principal]:
    """A dependency that authenticates staff and checks one permission."""

    def check(principal: StaffPrincipal) -> Principal:
        principal.require(permission)
        return principal

    check.__name__ = f"require_{permission.name.lower()}"
    return check


def pagination(
    cursor: Annotated[str | None, Query(description="Opaque cursor from next_cursor")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> tuple[str | None, int]:
    return cursor, limit


Pagination = Annotated[tuple[str | None, int], Depends(pagination)]


def idempotency_key(
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="Makes the request safe to retry: a retry gets the first answer back",
        ),
    ] = None,
) -> str | None:
    return check_key(idempotency_key)


IdempotencyKey = Annotated[str | None, Depends(idempotency_key)]


def require_outside_transaction(permission: Permission) -> Callable[..., Principal]:
    """As :func:`require`, authenticated in a short read transaction of its own.

    For endpoints that run several transactions themselves and call outside services
    (payment providers) between them: the request must not hold a transaction open.
    """

    def check(
        request: Request,
        authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
    ) -> Principal:
        token = bearer_token(authorization)
        if token is None:
            raise Unauthorized(
                "a staff bearer token is required",
                code="missing-token",
                headers={"WWW-Authenticate": "Bearer"},
            )
        with get_database(request).read() as session:
            principal = auth_service.authenticate(session, token)
        principal.require(permission)
        return principal

    check.__name__ = f"require_{permission.name.lower()}"
    return check
