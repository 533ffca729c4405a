"""Points granted by hand are money: who may grant them, and how many.

A positive adjustment (a goodwill gesture) can be spent like cash at checkout, so beyond
``customers:write`` it needs the ``loyalty:grant`` permission and stays within the limits
of the granting staff member's role (:data:`GRANT_LIMITS`): points per grant, and points
per calendar day (UTC) counted per staff member. Every adjustment, up or down, carries a
reason that the ledger entry and the audit entry keep. Taking points away needs only
``customers:write``: it cannot create money.

The day's count is one row per staff member and day (:class:`GrantTally`), raised by one
conditional upsert (``INSERT ... ON CONFLICT DO UPDATE ... WHERE points + :new <= :limit``):
two grants racing for the last of an allowance cannot both pass, whatever the number of
API processes, and a grant whose transaction rolls back gives its points back to the day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from mercato.auth.permissions import Permission, Role
from mercato.auth.principal import Principal
from mercato.errors import FieldError, Forbidden
from mercato.loyalty.models import GrantTally


@dataclass(frozen=True)
class GrantLimit:
    per_grant: int
    per_day: int


# What each role that holds ``loyalty:grant`` may grant by hand; None: no limit. A role
# without the permission grants nothing (the permission check answers first).
GRANT_LIMITS: dict[Role, GrantLimit | None] = {
    Role.OWNER: None,
    Role.ADMIN: None,
    Role.STORE_MANAGER: GrantLimit(per_grant=10_000, per_day=50_000),
    Role.SUPPORT_AGENT: GrantLimit(per_grant=1_000, per_day=5_000),
}
FIELD = "body.points"


class GrantLimitExceeded(Forbidden):
    code = "loyalty-grant-limit"
    title = "More points than this role may grant"


def limit_for(actor: Principal) -> GrantLimit | None:
    """The actor's limit; None for no limit (owners, admins, Mercato's own processes)."""
    if actor.kind == "system":
        return None
    if actor.role is None or actor.role not in GRANT_LIMITS:
        return GrantLimit(per_grant=0, per_day=0)
    return GRANT_LIMITS[actor.role]


def check_grant(session: Session, actor: Principal, points: int, at: datetime) -> None:
    """Allow a grant of ``points`` (> 0) by ``actor`` now, or raise a 403 naming the limit.

    Counts the points against the actor's day in the caller's transaction: they are given
    back if it rolls back.
    """
    actor.require(Permission.LOYALTY_GRANT)
    limit = limit_for(actor)
    if limit is None:
        return
    role = actor.role.value if actor.role else actor.kind
    if points > limit.per_grant:
        raise GrantLimitExceeded(
            f"a {role} may grant at most {limit.per_grant} points at a time",
            errors=[FieldError(FIELD, f"at most {limit.per_grant} points per grant")],
            extra={"limit": "per_grant", "role": role, "max_points": limit.per_grant},
        )
    assert actor.id is not None  # staff principals always have an id
    if not _count(session, actor.id, at, points, limit.per_day):
        left = max(0, limit.per_day - _counted(session, actor.id, at))
        raise GrantLimitExceeded(
            f"a {role} may grant at most {limit.per_day} points a day; {left} left today",
            errors=[FieldError(FIELD, f"at most {limit.per_day} points per day, {left} left")],
            extra={
                "limit": "per_day",
                "role": role,
                "max_points": limit.per_day,
                "remaining": left,
            },
        )


def _count(session: Session, staff_id: int, at: datetime, points: int, per_day: int) -> bool:
    """Add ``points`` to the day's tally unless that passes ``per_day``; True when added."""
    if points > per_day:
        return False
    maker = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    insert = maker(GrantTally).values(staff_user_id=staff_id, day=at.date(), points=points)
    raised = GrantTally.points + insert.excluded.points
    counted = insert.on_conflict_do_update(
        index_elements=[GrantTally.staff_user_id, GrantTally.day],
        set_={"points": raised},
        where=raised <= per_day,
    ).returning(GrantTally.points)
    return session.execute(counted).first() is not None


def _counted(session: Session, staff_id: int, at: datetime) -> int:
    tally = session.scalar(
        select(GrantTally.points).where(
            GrantTally.staff_user_id == staff_id, GrantTally.day == at.date()
        )
    )
    return int(tally or 0)
