"""Staff edits of a case: assignee, priority (due times follow it), subject, tags, orders."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.db import utcnow
from mercato.errors import Conflict, ValidationProblem
from mercato.events import publish
from mercato.support.actors import audit_case
from mercato.support.case_events import case_event
from mercato.support.event_types import CaseAssigned, CaseUpdated
from mercato.support.inputs import (
    CaseChanges,
    OrderRef,
    check_assignee,
    check_text,
    normalise_tags,
    resolve_order,
)
from mercato.support.models import SupportCase, SupportCaseOrder
from mercato.support.reading import case_orders, lock_case
from mercato.support.sla import apply_sla, sla_for
from mercato.support.vocabulary import MAX_ORDERS_PER_CASE


def update_case(
    session: Session,
    actor: Principal,
    case_id: int,
    changes: CaseChanges,
    *,
    now: datetime | None = None,
) -> SupportCase:
    """Assign, re-prioritise (due times follow the new priority), rename, retag."""
    if changes.assignee_id is not None:
        check_assignee(session, changes.assignee_id, "body.assignee_id")
    subject = None if changes.subject is None else check_text(changes.subject, "body.subject", 200)
    tags = None if changes.tags is None else normalise_tags(changes.tags)
    case = lock_case(session, case_id)
    diff = _apply_changes(session, case, changes, subject, tags)
    if not diff:
        return case
    case.updated_at = now or utcnow()
    session.flush()
    publish(session, CaseUpdated(**case_event(case), changes=tuple(sorted(diff))))
    if "assignee_id" in diff:
        previous = diff["assignee_id"][0]
        publish(session, CaseAssigned(**case_event(case), previous_assignee_id=previous))
    audit_case(session, actor, "support.case_updated", case, diff)
    return case


def _apply_changes(
    session: Session,
    case: SupportCase,
    changes: CaseChanges,
    subject: str | None,
    tags: list[str] | None,
) -> dict[str, Any]:
    """Change the locked case; what changed, as the audit entry records it."""
    diff: dict[str, Any] = {}
    if changes.unassign or changes.assignee_id is not None:
        _change(case, "assignee_id", None if changes.unassign else changes.assignee_id, diff)
    if changes.priority is not None and changes.priority.value != case.priority:
        _change(case, "priority", changes.priority.value, diff)
        apply_sla(case, sla_for(session, changes.priority))
    if subject is not None and subject != case.subject:
        case.subject = subject
        diff["subject"] = "changed"
    if tags is not None:
        _change(case, "tags", tags, diff)
    return diff


def _change(case: SupportCase, name: str, value: Any, diff: dict[str, Any]) -> None:
    before = getattr(case, name)
    if before != value:
        diff[name] = [before, value]
        setattr(case, name, value)


def link_order(
    session: Session, actor: Principal, case_id: int, ref: OrderRef, *, now: datetime | None = None
) -> SupportCaseOrder:
    case = lock_case(session, case_id)
    order = resolve_order(session, actor, ref, case.customer_id, case.email)
    linked = case_orders(session, [case.id]).get(case.id, [])
    if any(x.order_id == order.id for x in linked):
        raise Conflict(f"order {order.number} is already linked", code="order-already-linked")
    if len(linked) >= MAX_ORDERS_PER_CASE:
        raise ValidationProblem.field(ref.field, f"at most {MAX_ORDERS_PER_CASE} orders per case")
    row = SupportCaseOrder(
        case_id=case.id, order_id=order.id, order_number=order.number, created_at=now or utcnow()
    )
    session.add(row)
    case.updated_at = row.created_at
    session.flush()
    publish(session, CaseUpdated(**case_event(case), changes=("orders",), order_id=order.id))
    audit_case(session, actor, "support.order_linked", case, {"order_id": order.id})
    return row
