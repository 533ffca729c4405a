"""Opening a case for a customer or a guest email, about orders, with a first message."""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import insert
from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.customers import service as customers
from mercato.db import utcnow
from mercato.errors import Forbidden, ValidationProblem
from mercato.events import publish
from mercato.orders.models import Order
from mercato.support.actors import audit_case, is_staff
from mercato.support.case_events import case_event
from mercato.support.event_types import CaseOpened
from mercato.support.inputs import (
    CaseDraft,
    check_assignee,
    check_channel,
    check_customer,
    check_message,
    check_text,
    normalise_tags,
    resolve_order,
)
from mercato.support.models import SupportCase, SupportCaseOrder
from mercato.support.sla import apply_sla, sla_for
from mercato.support.thread import append_message
from mercato.support.vocabulary import MAX_ORDERS_PER_CASE, CaseStatus

# Crockford base32 without I, L, O, U: case numbers are read out over the phone.
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_case_number() -> str:
    body = "".join(secrets.choice(_ALPHABET) for _ in range(8))
    return f"C{body[:4]}-{body[4:]}"


def _case_party(
    session: Session, actor: Principal, draft: CaseDraft
) -> tuple[int | None, str | None]:
    """(customer_id, guest email): identified customers are always linked by id."""
    if draft.customer_id is not None and draft.email is not None:
        raise ValidationProblem.field("body.email", "give customer_id or email, not both")
    if draft.customer_id is not None:
        check_customer(session, draft.customer_id, "body.customer_id")
        return draft.customer_id, None
    if draft.email is None:
        raise ValidationProblem.field("body.customer_id", "a customer or a guest email is required")
    email = draft.email.strip().lower()
    if is_staff(actor):
        # An agent who took a call or an email from a registered customer links her account.
        known = customers.list_customers(session, email=email, cursor=None, limit=1).items
        if known:
            return known[0].id, None
    return None, email


def open_case(
    session: Session, actor: Principal, draft: CaseDraft, *, now: datetime | None = None
) -> SupportCase:
    """Open a case for a customer (or a guest email), optionally about orders and with a
    first message. Shoppers open their own cases (actor of kind customer or channel)."""
    now = now or utcnow()
    if actor.kind == "customer" and draft.customer_id != actor.customer_id:
        raise Forbidden("customers open cases for themselves only")
    subject = check_text(draft.subject, "body.subject", 200)
    customer_id, email = _case_party(session, actor, draft)
    if draft.channel_id is not None:
        check_channel(session, draft.channel_id, "body.channel_id")
    if draft.assignee_id is not None:
        check_assignee(session, draft.assignee_id, "body.assignee_id")
    tags = normalise_tags(draft.tags)
    found = _orders_of(session, actor, draft, customer_id, email)
    if draft.message is not None:
        check_message(draft.message, "body.message")
    case = SupportCase(
        number=new_case_number(),
        customer_id=customer_id,
        email=email,
        subject=subject,
        status=CaseStatus.NEW.value,
        priority=draft.priority.value,
        source=draft.source.value,
        channel_id=draft.channel_id,
        assignee_id=draft.assignee_id,
        tags=tags,
        paused_seconds=0,
        created_at=now,
        updated_at=now,
    )
    apply_sla(case, sla_for(session, draft.priority))
    session.add(case)
    session.flush()
    _link_orders(session, case, found, now)
    publish(
        session,
        CaseOpened(**case_event(case), order_ids=tuple(sorted(found)), tags=tuple(tags)),
    )
    audit_case(session, actor, "support.case_opened", case, {"order_ids": sorted(found)})
    if draft.message is not None:
        append_message(session, actor, case, draft.message, now)
    return case


def _orders_of(
    session: Session,
    actor: Principal,
    draft: CaseDraft,
    customer_id: int | None,
    email: str | None,
) -> dict[int, Order]:
    """The draft's orders by id, each checked to be the case's customer's."""
    if len(draft.orders) > MAX_ORDERS_PER_CASE:
        raise ValidationProblem.field("body.orders", f"at most {MAX_ORDERS_PER_CASE} orders")
    found: dict[int, Order] = {}
    for ref in draft.orders:
        order = resolve_order(session, actor, ref, customer_id, email)
        found[order.id] = order
    return found


def _link_orders(
    session: Session, case: SupportCase, found: dict[int, Order], now: datetime
) -> None:
    if not found:
        return
    session.execute(
        insert(SupportCaseOrder),
        [
            {"case_id": case.id, "order_id": o.id, "order_number": o.number, "created_at": now}
            for o in found.values()
        ],
    )
