"""Staff users, tokens and the audit log."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from mercato.auth import throttle
from mercato.auth.models import AuditEntry, StaffToken, StaffUser, StaffUserLocation
from mercato.auth.passwords import (
    PasswordChange,
    hash_password,
    new_token,
    token_hash,
    verify_password,
)
from mercato.auth.permissions import (
    LOCATION_SCOPED_ROLES,
    MANAGEABLE_ROLES,
    ROLE_PERMISSIONS,
    Permission,
    Role,
)
from mercato.auth.principal import Principal
from mercato.db import Database, locked_row, utcnow
from mercato.errors import Conflict, Forbidden, NotFound, Unauthorized, ValidationProblem
from mercato.pagination import Page, decode_cursor, page_of
from mercato.settings import Settings

STAFF_TOKEN_PREFIX = "mst"


def audit(
    session: Session,
    actor: Principal,
    action: str,
    entity_type: str,
    entity_id: int | str | None,
    changes: dict[str, Any] | None = None,
    note: str | None = None,
) -> None:
    session.add(
        AuditEntry(
            at=utcnow(),
            actor_type=actor.kind,
            actor_id=None if actor.id is None else str(actor.id),
            actor_label=actor.label,
            action=action,
            entity_type=entity_type,
            entity_id=None if entity_id is None else str(entity_id),
            changes=changes or {},
            request_id=session.info.get("request_id"),
            note=note,
        )
    )


def list_audit(
    session: Session,
    *,
    entity_type: str | None = None,
    entity_id: str | None = None,
    actor_id: str | None = None,
    action: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[AuditEntry]:
    query = select(AuditEntry).order_by(AuditEntry.id.desc())
    if entity_type:
        query = query.where(AuditEntry.entity_type == entity_type)
    if entity_id:
        query = query.where(AuditEntry.entity_id == entity_id)
    if actor_id:
        query = query.where(AuditEntry.actor_id == actor_id)
    if action:
        query = query.where(AuditEntry.action == action)
    after = decode_cursor(cursor)
    if after is not None:
        if not isinstance(after, int) or isinstance(after, bool):
            raise ValidationProblem.field("query.cursor", "not a cursor returned by this API")
        query = query.where(AuditEntry.id < after)
    rows = list(session.scalars(query.limit(limit + 1)))
    return page_of(rows, limit, key=lambda e: e.id)


def user_location_ids(session: Session, user_id: int) -> frozenset[int]:
    return frozenset(
        session.scalars(
            select(StaffUserLocation.location_id).where(StaffUserLocation.user_id == user_id)
        )
    )


def principal_for(session: Session, user: StaffUser, token_id: int | None = None) -> Principal:
    role = Role(user.role)
    # Only location-scoped roles carry locations; skip the lookup for the others.
    places = user_location_ids(session, user.id) if role in LOCATION_SCOPED_ROLES else frozenset()
    return Principal.staff(user.id, user.email, role, places, token_id=token_id)


def login(
    database: Database, email: str, password: str, address: str, settings: Settings
) -> tuple[str, StaffToken]:
    """A new session for the right password, within the brute-force limits (``throttle``).

    The password is checked with no transaction open: argon2 takes a while and must not
    hold SQLite's write lock meanwhile.
    """
    email = email.strip().lower()
    keys = throttle.sign_in_keys("staff", email, address, settings)
    with database.transaction() as session:
        refused = throttle.claim(session, keys)
        user = None if refused else _user_by_email(session, email)
    if refused:
        raise refused
    ok = verify_password(user.password_hash if user else None, password)
    if user is None or not ok or not user.active:
        raise Unauthorized("wrong email or password", code="invalid-credentials")
    with database.transaction() as session:
        throttle.succeeded(session, keys)
        return _new_session(session, user.id, settings.token_ttl_hours)


def _user_by_email(session: Session, email: str) -> StaffUser | None:
    return session.scalar(select(StaffUser).where(StaffUser.email == email))


def _new_session(session: Session, user_id: int, ttl_hours: int) -> tuple[str, StaffToken]:
    token = new_token(STAFF_TOKEN_PREFIX)
    row = StaffToken(
        user_id=user_id,
        token_hash=token_hash(token),
        name="login",
        created_at=utcnow(),
        expires_at=utcnow() + timedelta(hours=ttl_hours),
    )
    session.add(row)
    session.flush()
    return token, row


def change_own_password(
    database: Database,
    principal: Principal,
    change: PasswordChange,
    address: str,
    settings: Settings,
) -> bool:
    """The signed-in user changes their password; their other sessions end. True when this
    is a retry (same Idempotency-Key and passwords) of a change already made.

    The current password is checked like a sign-in (same limits), so a stolen session
    cannot be used to guess it.
    """
    assert principal.id is not None
    user_id = principal.id
    scope = f"staff-password:{user_id}"
    keys = throttle.sign_in_keys("staff", principal.label or str(user_id), address, settings)
    with database.transaction() as session:
        if change.already_made(session, scope):
            return True
        refused = throttle.claim(session, keys)
        stored_hash = _get_user(session, user_id).password_hash
    if refused:
        raise refused
    if not verify_password(stored_hash, change.current):
        raise ValidationProblem.field("body.current_password", "is not your current password")
    new_hash = hash_password(change.new)
    with database.transaction() as session:
        throttle.succeeded(session, keys)
        user = locked_row(session, StaffUser, user_id, f"staff user {user_id}")
        user.password_hash = new_hash
        ended = revoke_sessions(session, user_id, keep=principal.token_id)
        audit(
            session,
            principal,
            "staff.password_changed",
            "staff_user",
            user_id,
            {"password": "changed", "sessions_ended": ended},
        )
        change.remember(session, scope)
    return False


STAFF_LOCALES = ("en", "vi", "ja", "de")


def set_own_locale(session: Session, principal: Principal, locale: str | None) -> str | None:
    """The signed-in user's language for the back office (None: follow the browser)."""
    if locale is not None and locale not in STAFF_LOCALES:
        raise ValidationProblem.field(
            "body.locale", f"is not one of the back office's languages {list(STAFF_LOCALES)}"
        )
    assert principal.id is not None
    user = locked_row(session, StaffUser, principal.id, f"staff user {principal.id}")
    if user.locale != locale:
        audit(
            session,
            principal,
            "staff.locale_changed",
            "staff_user",
            user.id,
            {"locale": [user.locale, locale]},
        )
        user.locale = locale
    return locale


def revoke_sessions(session: Session, user_id: int, *, keep: int | None = None) -> int:
    """End every token of the user but ``keep``: login sessions and API tokens alike, since
    a password changes because the old one may be known, and whoever knew it may have
    issued tokens with it."""
    query = update(StaffToken).where(StaffToken.user_id == user_id, StaffToken.revoked_at.is_(None))
    if keep is not None:
        query = query.where(StaffToken.id != keep)
    result = session.execute(query.values(revoked_at=utcnow()))
    return int(getattr(result, "rowcount", 0) or 0)


def issue_api_token(session: Session, actor: Principal, user_id: int, name: str) -> str:
    """A long-lived token for an integration user (no expiry; revoke to end it)."""
    user = _get_user(session, user_id)
    _check_manageable(actor, Role(user.role))
    token = new_token(STAFF_TOKEN_PREFIX)
    session.add(
        StaffToken(user_id=user.id, token_hash=token_hash(token), name=name, created_at=utcnow())
    )
    audit(session, actor, "staff.token_issued", "staff_user", user.id, {"name": name})
    return token


def authenticate(session: Session, token: str) -> Principal:
    row = session.execute(
        select(StaffToken, StaffUser)
        .join(StaffUser, StaffUser.id == StaffToken.user_id)
        .where(StaffToken.token_hash == token_hash(token))
    ).one_or_none()
    if row is None:
        raise Unauthorized("unknown token", code="invalid-token")
    tok, user = row
    if tok.revoked_at is not None or (tok.expires_at is not None and tok.expires_at < utcnow()):
        raise Unauthorized("token expired or revoked", code="invalid-token")
    if not user.active:
        raise Unauthorized("user deactivated", code="invalid-token")
    return principal_for(session, user, token_id=tok.id)


def logout(session: Session, token: str) -> None:
    row = session.scalar(select(StaffToken).where(StaffToken.token_hash == token_hash(token)))
    if row is not None and row.revoked_at is None:
        row.revoked_at = utcnow()


def _get_user(session: Session, user_id: int) -> StaffUser:
    user = session.get(StaffUser, user_id)
    if user is None:
        raise NotFound(f"staff user {user_id} not found")
    return user


def _check_manageable(actor: Principal, role: Role) -> None:
    if actor.kind == "system":
        return
    allowed = MANAGEABLE_ROLES.get(actor.role) if actor.role else None
    if not allowed or role not in allowed:
        raise Forbidden(f"role {actor.role} may not manage {role.value} users")


def _set_locations(session: Session, user: StaffUser, location_ids: Iterable[int]) -> list[int]:
    """Assign the locations (``flows.staff`` checks they exist: auth knows no locations)."""
    ids = sorted(set(location_ids))
    session.execute(delete(StaffUserLocation).where(StaffUserLocation.user_id == user.id))
    session.add_all(StaffUserLocation(user_id=user.id, location_id=i) for i in ids)
    return ids


def _validate_scope(role: Role, location_ids: Sequence[int]) -> None:
    if role in LOCATION_SCOPED_ROLES and not location_ids:
        raise ValidationProblem.field("location_ids", f"a {role.value} needs at least one location")


def create_user(
    session: Session,
    actor: Principal,
    *,
    email: str,
    name: str,
    password: str,
    role: Role,
    location_ids: Sequence[int] = (),
) -> StaffUser:
    _check_manageable(actor, role)
    _validate_scope(role, location_ids)
    email = email.strip().lower()
    if session.scalar(select(StaffUser.id).where(StaffUser.email == email)) is not None:
        raise Conflict(f"a staff user with email {email} exists", code="duplicate-email")
    user = StaffUser(
        email=email,
        name=name,
        password_hash=hash_password(password),
        role=role.value,
        active=True,
        created_at=utcnow(),
    )
    session.add(user)
    session.flush()
    ids = _set_locations(session, user, location_ids)
    audit(
        session,
        actor,
        "staff.created",
        "staff_user",
        user.id,
        {"email": email, "role": role.value, "location_ids": ids},
    )
    return user


def update_user(
    session: Session,
    actor: Principal,
    user_id: int,
    *,
    name: str | None = None,
    role: Role | None = None,
    active: bool | None = None,
    password: str | None = None,
    location_ids: Sequence[int] | None = None,
) -> StaffUser:
    user = _get_user(session, user_id)
    _check_manageable(actor, Role(user.role))
    changes: dict[str, Any] = {}
    if role is not None and role.value != user.role:
        _check_manageable(actor, role)
        changes["role"] = [user.role, role.value]
        user.role = role.value
    if name is not None and name != user.name:
        changes["name"] = [user.name, name]
        user.name = name
    if active is not None and active != user.active:
        if not active and actor.id == user.id:
            raise Conflict("you cannot deactivate yourself", code="self-deactivation")
        changes["active"] = [user.active, active]
        user.active = active
    if password is not None:
        user.password_hash = hash_password(password)
        changes["password"] = "changed"
        # A reset ends the user's sessions (the actor's own request keeps going).
        keep = actor.token_id if actor.id == user.id else None
        changes["sessions_ended"] = revoke_sessions(session, user.id, keep=keep)
    if location_ids is not None:
        changes["location_ids"] = _set_locations(session, user, location_ids)
    _validate_scope(Role(user.role), sorted(user_location_ids(session, user.id)))
    if changes:
        audit(session, actor, "staff.updated", "staff_user", user.id, changes)
    return user


def get_user(session: Session, user_id: int) -> StaffUser:
    return _get_user(session, user_id)


def list_users(session: Session, cursor: str | None, limit: int) -> Page[StaffUser]:
    query = select(StaffUser).order_by(StaffUser.id)
    after = decode_cursor(cursor)
    if after is not None:
        if not isinstance(after, int) or isinstance(after, bool):
            raise ValidationProblem.field("query.cursor", "not a cursor returned by this API")
        query = query.where(StaffUser.id > after)
    return page_of(list(session.scalars(query.limit(limit + 1))), limit, key=lambda u: u.id)


def bootstrap_owner(session: Session, email: str, name: str, password: str) -> StaffUser:
    """Create the first owner (CLI and demo only: no actor exists yet)."""
    existing = session.scalar(select(StaffUser).where(StaffUser.email == email.lower()))
    if existing is not None:
        return existing
    return create_user(
        session,
        Principal.system("bootstrap"),
        email=email,
        name=name,
        password=password,
        role=Role.OWNER,
    )


def permissions_of(role: Role) -> list[str]:
    return sorted(p.value for p in ROLE_PERMISSIONS[role])


__all__ = ["Permission", "Role", "audit", "authenticate", "create_user", "login"]
