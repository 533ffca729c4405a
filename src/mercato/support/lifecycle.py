"""A case's life cycle: the status transitions, the SLA clock pausing while the case
waits on the customer, resolution."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.db import utcnow
from mercato.errors import UnprocessableState
from mercato.events import publish
from mercato.support.actors import audit_case
from mercato.support.case_events import breach_event, case_event
from mercato.support.event_types import CaseStatusChanged
from mercato.support.models import SupportCase
from mercato.support.reading import lock_case
from mercato.support.vocabulary import TRANSITIONS, CaseStatus


def transition(
    session: Session,
    actor: Principal,
    case_id: int,
    target: CaseStatus,
    *,
    now: datetime | None = None,
    note: str | None = None,
) -> SupportCase:
    """Move a case along its life cycle; anything not in TRANSITIONS is a 409."""
    case = lock_case(session, case_id)
    transition_locked(session, actor, case, target, now or utcnow(), note)
    return case


def transition_locked(
    session: Session,
    actor: Principal,
    case: SupportCase,
    target: CaseStatus,
    now: datetime,
    note: str | None,
) -> None:
    """:func:`transition` of a case whose row the caller has locked."""
    current = CaseStatus(case.status)
    if target not in TRANSITIONS[current]:
        raise UnprocessableState(
            f"case {case.number} cannot go from {current.value} to {target.value}",
            code="invalid-case-transition",
            extra={"case_status": current.value, "target_status": target.value},
        )
    _move_times(session, case, current, target, now)
    case.status = target.value
    case.updated_at = now
    session.flush()
    publish(
        session,
        CaseStatusChanged(
            **case_event(case),
            from_status=current.value,
            to_status=target.value,
            actor_type=actor.kind,
        ),
    )
    audit_case(
        session,
        actor,
        "support.case_status_changed",
        case,
        {"status": [current.value, target.value], **({"note": note} if note else {})},
    )


def _move_times(
    session: Session, case: SupportCase, current: CaseStatus, target: CaseStatus, now: datetime
) -> None:
    """The SLA clock and the resolution and closing times of a case changing status."""
    if current is CaseStatus.PENDING_CUSTOMER:
        _resume_clock(case, now)
    if target is CaseStatus.PENDING_CUSTOMER:
        case.paused_at = now
    if target in (CaseStatus.RESOLVED, CaseStatus.CLOSED) and case.resolved_at is None:
        _resolve(session, case, now)
    if target is CaseStatus.OPEN:
        case.resolved_at = None
    if target is CaseStatus.CLOSED:
        case.closed_at = now


def _resume_clock(case: SupportCase, now: datetime) -> None:
    """Waiting on the customer does not count against the SLA: push the due times back."""
    if case.paused_at is None:
        return
    paused = now - case.paused_at
    case.paused_seconds += int(paused.total_seconds())
    case.first_response_due_at += paused
    case.resolution_due_at += paused
    case.paused_at = None


def _resolve(session: Session, case: SupportCase, now: datetime) -> None:
    case.resolved_at = now
    if case.resolution_due_at < now and case.resolution_breached_at is None:
        case.resolution_breached_at = now
        breach_event(session, case, "resolution", case.resolution_due_at)
