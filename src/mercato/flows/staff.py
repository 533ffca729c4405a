"""Staff accounts scoped to locations: the locations domain vouches for the ids, the auth
domain keeps the account (auth sits below every domain and knows no locations)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from mercato.auth import service as auth
from mercato.auth.models import StaffUser
from mercato.auth.permissions import Role
from mercato.auth.principal import Principal
from mercato.locations import service as locations


def create_staff_user(
    session: Session,
    actor: Principal,
    *,
    email: str,
    name: str,
    password: str,
    role: Role,
    location_ids: Sequence[int] = (),
) -> StaffUser:
    locations.require_existing(session, sorted(set(location_ids)), field="location_ids")
    return auth.create_user(
        session,
        actor,
        email=email,
        name=name,
        password=password,
        role=role,
        location_ids=location_ids,
    )


def update_staff_user(
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
    if location_ids is not None:
        locations.require_existing(session, sorted(set(location_ids)), field="location_ids")
    return auth.update_user(
        session,
        actor,
        user_id,
        name=name,
        role=role,
        active=active,
        password=password,
        location_ids=location_ids,
    )
