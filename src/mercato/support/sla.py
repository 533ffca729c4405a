"""Service level agreements: due times per priority, the policies staff set, breaches.

The SLA clock runs only while a case waits on us (``new``, ``open``); time spent waiting
on the customer pushes the due times back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from mercato.auth import service as auth_service
from mercato.auth.principal import Principal
from mercato.db import utcnow
from mercato.errors import ValidationProblem
from mercato.support.case_events import breach_event
from mercato.support.models import SlaPolicy, SupportCase
from mercato.support.vocabulary import DEFAULT_SLA, MAX_SLA_MINUTES, RUNNING, Priority


@dataclass(frozen=True)
class Sla:
    priority: Priority
    first_response_minutes: int
    resolution_minutes: int
    default: bool


def sla_for(session: Session, priority: Priority) -> Sla:
    row = session.get(SlaPolicy, priority.value, populate_existing=True)
    if row is None:
        first, resolution = DEFAULT_SLA[priority]
        return Sla(priority, first, resolution, True)
    return Sla(priority, row.first_response_minutes, row.resolution_minutes, False)


def sla_policies(session: Session) -> list[Sla]:
    query = select(SlaPolicy).execution_options(populate_existing=True)
    rows = {r.priority: r for r in session.scalars(query)}
    result = []
    for priority in Priority:
        row = rows.get(priority.value)
        if row is None:
            result.append(Sla(priority, *DEFAULT_SLA[priority], True))
        else:
            result.append(Sla(priority, row.first_response_minutes, row.resolution_minutes, False))
    return result


def set_sla_policy(
    session: Session,
    actor: Principal,
    priority: Priority,
    first_response_minutes: int,
    resolution_minutes: int,
    *,
    now: datetime | None = None,
) -> Sla:
    """Applies to cases opened or re-prioritised from now on, not to running ones."""
    _check_minutes(first_response_minutes, resolution_minutes)
    before = sla_for(session, priority)
    _upsert_policy(
        session,
        {
            "priority": priority.value,
            "first_response_minutes": first_response_minutes,
            "resolution_minutes": resolution_minutes,
            "updated_at": now or utcnow(),
        },
    )
    auth_service.audit(
        session,
        actor,
        "support.sla_policy_changed",
        "support_sla_policy",
        priority.value,
        {
            "first_response_minutes": [before.first_response_minutes, first_response_minutes],
            "resolution_minutes": [before.resolution_minutes, resolution_minutes],
        },
    )
    return Sla(priority, first_response_minutes, resolution_minutes, False)


def _check_minutes(first_response_minutes: int, resolution_minutes: int) -> None:
    for name, value in (
        ("first_response_minutes", first_response_minutes),
        ("resolution_minutes", resolution_minutes),
    ):
        if not 1 <= value <= MAX_SLA_MINUTES:
            raise ValidationProblem.field(f"body.{name}", f"1 to {MAX_SLA_MINUTES} minutes")
    if resolution_minutes < first_response_minutes:
        raise ValidationProblem.field(
            "body.resolution_minutes", "must not be shorter than first_response_minutes"
        )


def _upsert_policy(session: Session, values: dict[str, Any]) -> None:
    maker = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    # One upsert: two administrators setting the same priority at once cannot collide.
    upsert = maker(SlaPolicy).values(values)
    session.execute(
        upsert.on_conflict_do_update(index_elements=["priority"], set_=values),
        execution_options={"synchronize_session": False},
    )


def apply_sla(case: SupportCase, sla: Sla) -> None:
    """Due times from the opening time, the policy and the time spent waiting on the customer."""
    start = case.created_at + timedelta(seconds=case.paused_seconds)
    case.first_response_due_at = start + timedelta(minutes=sla.first_response_minutes)
    case.resolution_due_at = start + timedelta(minutes=sla.resolution_minutes)


def is_overdue(case: SupportCase, now: datetime) -> bool:
    if case.status not in RUNNING:
        return False
    late_response = case.first_responded_at is None and case.first_response_due_at < now
    return late_response or case.resolution_due_at < now


def overdue_condition(now: datetime) -> ColumnElement[bool]:
    return and_(
        SupportCase.status.in_([s.value for s in RUNNING]),
        or_(
            and_(SupportCase.first_responded_at.is_(None), SupportCase.first_response_due_at < now),
            SupportCase.resolution_due_at < now,
        ),
    )


# --- breaches -------------------------------------------------------------------------------------


def mark_sla_breaches(session: Session, now: datetime | None = None) -> int:
    """Flag running cases past a due time and publish ``support.sla_breached`` once each.

    Conditional UPDATEs: several processes running the job at once flag a case once.
    """
    now = now or utcnow()
    return sum(
        _flag_breaches(session, kind, column, late, now) for kind, column, late in _late(now)
    )


def _late(now: datetime) -> list[tuple[str, Any, list[ColumnElement[bool]]]]:
    """Each kind of breach: its name, the column flagging it, when a case is late."""
    return [
        (
            "first_response",
            SupportCase.first_response_breached_at,
            [
                SupportCase.first_responded_at.is_(None),
                SupportCase.first_response_due_at < now,
            ],
        ),
        ("resolution", SupportCase.resolution_breached_at, [SupportCase.resolution_due_at < now]),
    ]


def _flag_breaches(
    session: Session, kind: str, column: Any, late: list[ColumnElement[bool]], now: datetime
) -> int:
    """Flag the running cases late in this way and not flagged yet; how many were."""
    running = SupportCase.status.in_([s.value for s in RUNNING])
    ids = session.scalars(
        update(SupportCase)
        .where(running, column.is_(None), *late)
        .values({column: now})
        .returning(SupportCase.id)
        .execution_options(synchronize_session=False)
    ).all()
    for case in session.scalars(
        select(SupportCase)
        .where(SupportCase.id.in_(ids))
        .order_by(SupportCase.id)
        .execution_options(populate_existing=True)
    ):
        due = case.first_response_due_at if kind == "first_response" else case.resolution_due_at
        breach_event(session, case, kind, due)
    return len(ids)
