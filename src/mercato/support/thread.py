"""A case's message thread: messages from every contact channel, internal notes.

A staff reply is the first response; a customer's message reopens a case that was waiting
on her or resolved.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from mercato.auth import service as auth_service
from mercato.auth.principal import Principal
from mercato.customers import service as customers
from mercato.db import utcnow
from mercato.errors import NotFound, UnprocessableState, ValidationProblem
from mercato.events import publish
from mercato.support.actors import audit_case
from mercato.support.case_events import breach_event, case_event
from mercato.support.event_types import CaseMessageAdded
from mercato.support.inputs import MessageDraft, check_message
from mercato.support.lifecycle import transition_locked
from mercato.support.models import SupportCase, SupportMessage
from mercato.support.reading import lock_case
from mercato.support.vocabulary import CaseStatus, Direction, S


def add_message(
    session: Session,
    actor: Principal,
    case_id: int,
    draft: MessageDraft,
    *,
    now: datetime | None = None,
) -> SupportMessage:
    """Append to the thread. A staff reply is the first response; a customer's message
    reopens a case that was waiting on her or resolved."""
    check_message(draft, "body")
    case = lock_case(session, case_id)
    _check_may_write(actor, case, draft.direction)
    # Read the clock once the row is ours: times then follow the order changes applied in.
    return append_message(session, actor, case, draft, now or utcnow())


def _author(session: Session, actor: Principal) -> tuple[str, int | None, str | None]:
    if actor.kind == "customer" and actor.customer_id is not None:
        customer = customers.get_customer(session, actor.customer_id)
        return "customer", customer.id, customer.first_name
    if actor.kind == "staff" and actor.id is not None:
        return "staff", actor.id, auth_service.get_user(session, actor.id).name
    if actor.kind == "system":
        return "system", None, actor.label
    return "guest", None, None


def _check_may_write(actor: Principal, case: SupportCase, direction: Direction) -> None:
    if actor.kind in ("customer", "channel"):
        if actor.kind == "channel" or case.customer_id != actor.customer_id:
            raise NotFound(f"support case {case.id} not found")
        if direction is not Direction.INBOUND:
            raise ValidationProblem.field("body.direction", "customers send inbound messages")
    if case.status == CaseStatus.CLOSED.value and direction is not Direction.INTERNAL:
        raise UnprocessableState(
            f"case {case.number} is closed: open a new case", code="case-closed"
        )


def append_message(
    session: Session, actor: Principal, case: SupportCase, draft: MessageDraft, now: datetime
) -> SupportMessage:
    """Add a checked message to a case whose row the caller has locked (or just created)."""
    author_type, author_id, author_name = _author(session, actor)
    message = SupportMessage(
        case_id=case.id,
        direction=draft.direction.value,
        channel=draft.channel.value,
        author_type=author_type,
        author_id=author_id,
        author_name=author_name,
        body=draft.body.strip(),
        attachments=list(draft.attachments),
        created_at=now,
    )
    session.add(message)
    if draft.direction is not Direction.INTERNAL:
        case.last_message_at = now
    case.updated_at = now
    session.flush()
    _announce(session, actor, case, message)
    _after_message(session, actor, case, draft.direction, now)
    return message


def _announce(
    session: Session, actor: Principal, case: SupportCase, message: SupportMessage
) -> None:
    publish(
        session,
        CaseMessageAdded(
            **case_event(case),
            message_id=message.id,
            direction=message.direction,
            channel=message.channel,
            author_type=message.author_type,
            attachments=len(message.attachments),
        ),
    )
    audit_case(
        session,
        actor,
        "support.message_added",
        case,
        {"message_id": message.id, "direction": message.direction, "channel": message.channel},
    )


def _after_message(
    session: Session, actor: Principal, case: SupportCase, direction: Direction, now: datetime
) -> None:
    status = CaseStatus(case.status)
    if direction is Direction.OUTBOUND:
        _first_response(session, case, now)
        if status is CaseStatus.NEW:
            transition_locked(session, actor, case, CaseStatus.OPEN, now, "replied")
    elif direction is Direction.INBOUND and status in (S.PENDING_CUSTOMER, S.RESOLVED):
        transition_locked(session, actor, case, CaseStatus.OPEN, now, "customer replied")


def _first_response(session: Session, case: SupportCase, now: datetime) -> None:
    if case.first_responded_at is not None:
        return
    case.first_responded_at = now
    if case.first_response_due_at < now and case.first_response_breached_at is None:
        case.first_response_breached_at = now
        breach_event(session, case, "first_response", case.first_response_due_at)
    session.flush()
