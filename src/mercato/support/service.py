"""Customer support: cases, one message thread per case from every channel, SLAs, ratings.

A case belongs to a customer (or, for a guest, keeps an email) and may be about orders.
Its messages come from any contact channel (app chat, email, phone call notes, a store,
social media) into one thread; internal notes in that thread never reach the customer.

Concurrency: every change to a case locks its row first (``SELECT ... FOR UPDATE`` on
PostgreSQL; SQLite serialises writing transactions with ``BEGIN IMMEDIATE``), then
decides against what it read and writes. Two agents, the customer and the SLA job acting
on one case at once are applied one after the other, each against the other's result.
Ratings and SLA breaches are single conditional UPDATEs.

Every function takes an explicit ``now`` (default: the real clock) so that SLA due times
and breaches can be tested and simulated.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Date,
    and_,
    cast,
    exists,
    func,
    insert,
    not_,
    or_,
    select,
    type_coerce,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from mercato.auth import service as auth_service
from mercato.auth.permissions import ROLE_PERMISSIONS, Permission, Role
from mercato.auth.principal import Principal
from mercato.channels import service as channels
from mercato.customers import service as customers
from mercato.customers.models import Customer
from mercato.db import locked_row, utcnow
from mercato.errors import Conflict, Forbidden, NotFound, UnprocessableState, ValidationProblem
from mercato.events import publish
from mercato.orders import service as orders
from mercato.orders.models import Order, OrderLine
from mercato.pagination import Page, decode_cursor, page_of
from mercato.support.models import SlaPolicy, SupportCase, SupportCaseOrder, SupportMessage

Clock = Callable[[], datetime]


class CaseStatus(StrEnum):
    NEW = "new"
    OPEN = "open"
    PENDING_CUSTOMER = "pending_customer"
    RESOLVED = "resolved"
    CLOSED = "closed"


class Priority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


class Direction(StrEnum):
    INBOUND = "inbound"  # from the customer
    OUTBOUND = "outbound"  # from staff to the customer
    INTERNAL = "internal"  # a note between staff, never shown to the customer


class ContactChannel(StrEnum):
    """How a message reached us (or left): not the sales channel, the medium."""

    WEB = "web"
    APP = "app"
    EMAIL = "email"
    PHONE = "phone"
    STORE = "store"
    SOCIAL = "social"
    MARKETPLACE = "marketplace"


class Period(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


S = CaseStatus

TRANSITIONS: dict[CaseStatus, frozenset[CaseStatus]] = {
    S.NEW: frozenset({S.OPEN, S.PENDING_CUSTOMER, S.RESOLVED, S.CLOSED}),
    S.OPEN: frozenset({S.PENDING_CUSTOMER, S.RESOLVED, S.CLOSED}),
    S.PENDING_CUSTOMER: frozenset({S.OPEN, S.RESOLVED, S.CLOSED}),
    # A resolved case reopens when the customer writes again; a closed one is final.
    S.RESOLVED: frozenset({S.OPEN, S.CLOSED}),
    S.CLOSED: frozenset(),
}

ACTIVE = frozenset({S.NEW, S.OPEN, S.PENDING_CUSTOMER})
# The SLA clock runs only while the case waits on us, not on the customer.
RUNNING = frozenset({S.NEW, S.OPEN})

# Minutes to first response and to resolution; rows in support_sla_policies override them.
DEFAULT_SLA: dict[Priority, tuple[int, int]] = {
    Priority.URGENT: (60, 8 * 60),
    Priority.HIGH: (4 * 60, 24 * 60),
    Priority.NORMAL: (8 * 60, 3 * 24 * 60),
    Priority.LOW: (24 * 60, 5 * 24 * 60),
}
MAX_SLA_MINUTES = 365 * 24 * 60

# The contact channel of a case a shopper opens through a sales channel of this type.
CONTACT_FOR_CHANNEL_TYPE: dict[str, ContactChannel] = {
    "web": ContactChannel.WEB,
    "app": ContactChannel.APP,
    "pos": ContactChannel.STORE,
    "call_centre": ContactChannel.PHONE,
    "marketplace": ContactChannel.MARKETPLACE,
}

MAX_ORDERS_PER_CASE = 20
MAX_TAGS = 20
OVERVIEW_CASES = 5
OVERVIEW_MESSAGES = 3
OVERVIEW_ORDERS = 5

# Crockford base32 without I, L, O, U: case numbers are read out over the phone.
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_case_number() -> str:
    body = "".join(secrets.choice(_ALPHABET) for _ in range(8))
    return f"C{body[:4]}-{body[4:]}"


# --- who acts ------------------------------------------------------------------------------


def customer_actor(customer_id: int, channel_id: int | None) -> Principal:
    return Principal(
        kind="customer", id=customer_id, customer_id=customer_id, channel_id=channel_id
    )


def guest_actor(channel_id: int, channel_code: str) -> Principal:
    return Principal(kind="channel", label=channel_code, channel_id=channel_id)


def _is_staff(actor: Principal) -> bool:
    return actor.kind in ("staff", "system")


def _audit(
    session: Session, actor: Principal, action: str, case: SupportCase, changes: dict[str, Any]
) -> None:
    if _is_staff(actor):
        auth_service.audit(session, actor, action, "support_case", case.id, changes)


# --- inputs --------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderRef:
    """An order by id or by number; ``field`` names it in a validation problem."""

    order_id: int | None = None
    number: str | None = None
    field: str = "body.order_id"


@dataclass(frozen=True)
class MessageDraft:
    body: str
    direction: Direction
    channel: ContactChannel
    attachments: Sequence[str] = ()


@dataclass(frozen=True)
class CaseDraft:
    subject: str
    source: ContactChannel
    customer_id: int | None = None
    email: str | None = None
    channel_id: int | None = None
    priority: Priority = Priority.NORMAL
    orders: Sequence[OrderRef] = ()
    tags: Sequence[str] = ()
    assignee_id: int | None = None
    message: MessageDraft | None = None


@dataclass(frozen=True)
class CaseChanges:
    """A staff edit; ``unassign`` clears the assignee (``assignee_id`` None keeps it)."""

    priority: Priority | None = None
    assignee_id: int | None = None
    unassign: bool = False
    subject: str | None = None
    tags: Sequence[str] | None = None


def normalise_tags(tags: Iterable[str], field_name: str = "body.tags") -> list[str]:
    found: list[str] = []
    for i, raw in enumerate(tags):
        tag = raw.strip().lower()
        if not tag or len(tag) > 40 or not all(c.isalnum() or c in "-_" for c in tag):
            raise ValidationProblem.field(
                f"{field_name}[{i}]", "1 to 40 letters, digits, '-' or '_'"
            )
        found.append(tag)
    unique = sorted(set(found))
    if len(unique) > MAX_TAGS:
        raise ValidationProblem.field(field_name, f"at most {MAX_TAGS} tags")
    return unique


def _check_text(value: str, field_name: str, maximum: int) -> str:
    text = value.strip()
    if not text:
        raise ValidationProblem.field(field_name, "must not be empty")
    if len(text) > maximum:
        raise ValidationProblem.field(field_name, f"at most {maximum} characters")
    return text


def _check_attachments(urls: Sequence[str], field_name: str) -> list[str]:
    if len(urls) > 10:
        raise ValidationProblem.field(field_name, "at most 10 attachments")
    for i, url in enumerate(urls):
        if not url.startswith(("https://", "http://")) or len(url) > 2000 or " " in url:
            raise ValidationProblem.field(f"{field_name}[{i}]", "an http(s) URL")
    return list(urls)


def _check_customer(session: Session, customer_id: int, field_name: str) -> Customer:
    try:
        return customers.get_customer(session, customer_id)
    except NotFound as exc:
        raise ValidationProblem.field(field_name, f"unknown customer {customer_id}") from exc


def _check_channel(session: Session, channel_id: int, field_name: str) -> None:
    try:
        channels.get_channel(session, channel_id)
    except NotFound as exc:
        raise ValidationProblem.field(field_name, f"unknown channel {channel_id}") from exc


def _check_assignee(session: Session, assignee_id: int, field_name: str) -> None:
    try:
        user = auth_service.get_user(session, assignee_id)
    except NotFound as exc:
        raise ValidationProblem.field(field_name, f"unknown staff user {assignee_id}") from exc
    if not user.active or Permission.SUPPORT_WRITE not in ROLE_PERMISSIONS[Role(user.role)]:
        raise ValidationProblem.field(
            field_name, f"staff user {assignee_id} may not work on support cases"
        )


def _owner_of(order: Order, customer_id: int | None, email: str | None) -> bool:
    if customer_id is not None:
        return order.customer_id == customer_id
    return (
        order.customer_id is None
        and email is not None
        and (order.email or "").strip().lower() == email
    )


def _resolve_order(
    session: Session, actor: Principal, ref: OrderRef, customer_id: int | None, email: str | None
) -> Order:
    """The order, if it is the case's customer's; shoppers never learn of others' orders."""
    try:
        if ref.order_id is not None:
            order = orders.get_order(session, ref.order_id)
        elif ref.number:
            order = orders.get_by_number(session, ref.number.strip().upper())
        else:
            raise ValidationProblem.field(ref.field, "an order id or number is required")
    except NotFound as exc:
        raise ValidationProblem.field(ref.field, "unknown order") from exc
    if not _owner_of(order, customer_id, email):
        reason = "the order belongs to another customer" if _is_staff(actor) else "unknown order"
        raise ValidationProblem.field(ref.field, reason)
    return order


# --- SLA -----------------------------------------------------------------------------------


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
    before = sla_for(session, priority)
    values = {
        "priority": priority.value,
        "first_response_minutes": first_response_minutes,
        "resolution_minutes": resolution_minutes,
        "updated_at": now or utcnow(),
    }
    maker = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    # One upsert: two administrators setting the same priority at once cannot collide.
    upsert = maker(SlaPolicy).values(values)
    session.execute(
        upsert.on_conflict_do_update(index_elements=["priority"], set_=values),
        execution_options={"synchronize_session": False},
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


def _apply_sla(case: SupportCase, sla: Sla) -> None:
    """Due times from the opening time, the policy and the time spent waiting on the customer."""
    start = case.created_at + timedelta(seconds=case.paused_seconds)
    case.first_response_due_at = start + timedelta(minutes=sla.first_response_minutes)
    case.resolution_due_at = start + timedelta(minutes=sla.resolution_minutes)


def is_overdue(case: SupportCase, now: datetime) -> bool:
    if case.status not in RUNNING:
        return False
    late_response = case.first_responded_at is None and case.first_response_due_at < now
    return late_response or case.resolution_due_at < now


def _overdue_condition(now: datetime) -> ColumnElement[bool]:
    return and_(
        SupportCase.status.in_([s.value for s in RUNNING]),
        or_(
            and_(SupportCase.first_responded_at.is_(None), SupportCase.first_response_due_at < now),
            SupportCase.resolution_due_at < now,
        ),
    )


# --- events --------------------------------------------------------------------------------


def case_event(case: SupportCase) -> dict[str, Any]:
    """What every support event carries: no subject, no message text, no contact data."""
    return {
        "case_id": case.id,
        "number": case.number,
        "customer_id": case.customer_id,
        "channel_id": case.channel_id,
        "source": case.source,
        "status": case.status,
        "priority": case.priority,
        "assignee_id": case.assignee_id,
    }


def _publish(session: Session, type_: str, case: SupportCase, **extra: Any) -> None:
    publish(
        session,
        type_,
        {**case_event(case), **extra},
        aggregate_type="support_case",
        aggregate_id=case.id,
    )


def _breach_event(session: Session, case: SupportCase, kind: str, due: datetime) -> None:
    _publish(session, "support.sla_breached", case, kind=kind, due_at=due.isoformat())


# --- reading -------------------------------------------------------------------------------


def get_case(session: Session, case_id: int) -> SupportCase:
    case = session.scalar(
        select(SupportCase)
        .where(SupportCase.id == case_id)
        .execution_options(populate_existing=True)
    )
    if case is None:
        raise NotFound(f"support case {case_id} not found")
    return case


def get_by_number(session: Session, number: str) -> SupportCase:
    case = session.scalar(select(SupportCase).where(SupportCase.number == number.strip().upper()))
    if case is None:
        raise NotFound(f"support case {number} not found")
    return case


def customer_case(session: Session, customer_id: int, case_id: int) -> SupportCase:
    """The customer's own case; another customer's case is as unknown as a missing one."""
    case = get_case(session, case_id)
    if case.customer_id != customer_id:
        raise NotFound(f"support case {case_id} not found")
    return case


def _lock(session: Session, case_id: int) -> SupportCase:
    return locked_row(session, SupportCase, case_id, f"support case {case_id}")


def messages(session: Session, case_id: int, *, include_internal: bool) -> list[SupportMessage]:
    query = select(SupportMessage).where(SupportMessage.case_id == case_id)
    if not include_internal:
        query = query.where(SupportMessage.direction != Direction.INTERNAL.value)
    return list(session.scalars(query.order_by(SupportMessage.id)))


def last_messages(
    session: Session, case_ids: Sequence[int], per_case: int, *, include_internal: bool
) -> dict[int, list[SupportMessage]]:
    """The newest ``per_case`` messages of each case (oldest first), in one query."""
    if not case_ids:
        return {}
    rank = (
        func.row_number()
        .over(partition_by=SupportMessage.case_id, order_by=SupportMessage.id.desc())
        .label("rank")
    )
    inner = select(SupportMessage.id, rank).where(SupportMessage.case_id.in_(case_ids))
    if not include_internal:
        inner = inner.where(SupportMessage.direction != Direction.INTERNAL.value)
    ranked = inner.subquery()
    rows = session.scalars(
        select(SupportMessage)
        .join(ranked, ranked.c.id == SupportMessage.id)
        .where(ranked.c.rank <= per_case)
        .order_by(SupportMessage.case_id, SupportMessage.id)
    )
    found: dict[int, list[SupportMessage]] = defaultdict(list)
    for message in rows:
        found[message.case_id].append(message)
    return dict(found)


def case_orders(session: Session, case_ids: Sequence[int]) -> dict[int, list[SupportCaseOrder]]:
    if not case_ids:
        return {}
    found: dict[int, list[SupportCaseOrder]] = defaultdict(list)
    rows = session.scalars(
        select(SupportCaseOrder)
        .where(SupportCaseOrder.case_id.in_(case_ids))
        .order_by(SupportCaseOrder.case_id, SupportCaseOrder.created_at, SupportCaseOrder.order_id)
    )
    for row in rows:
        found[row.case_id].append(row)
    return dict(found)


def cases_for_order(session: Session, order_id: int) -> list[SupportCase]:
    """Support cases about an order (for the order's own views)."""
    return list(
        session.scalars(
            select(SupportCase)
            .join(SupportCaseOrder, SupportCaseOrder.case_id == SupportCase.id)
            .where(SupportCaseOrder.order_id == order_id)
            .order_by(SupportCase.id.desc())
        )
    )


@dataclass(frozen=True)
class CaseFilter:
    statuses: Sequence[CaseStatus] = ()
    priority: Priority | None = None
    assignee_id: int | None = None
    unassigned: bool = False
    customer_id: int | None = None
    channel_id: int | None = None
    source: ContactChannel | None = None
    order_id: int | None = None
    tag: str | None = None
    overdue: bool | None = None


def _has_tag(session: Session, tag: str) -> ColumnElement[bool]:
    if session.get_bind().dialect.name == "postgresql":
        return type_coerce(SupportCase.tags, JSONB).contains([tag])
    each = func.json_each(SupportCase.tags).table_valued("value")
    return exists().select_from(each).where(each.c.value == tag)


def _filters(session: Session, flt: CaseFilter, now: datetime) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if flt.statuses:
        conditions.append(SupportCase.status.in_([s.value for s in flt.statuses]))
    exact: list[tuple[Any, Any]] = [
        (SupportCase.priority, flt.priority.value if flt.priority else None),
        (SupportCase.assignee_id, flt.assignee_id),
        (SupportCase.customer_id, flt.customer_id),
        (SupportCase.channel_id, flt.channel_id),
        (SupportCase.source, flt.source.value if flt.source else None),
    ]
    conditions.extend(column == value for column, value in exact if value is not None)
    if flt.unassigned:
        conditions.append(SupportCase.assignee_id.is_(None))
    if flt.order_id is not None:
        conditions.append(
            SupportCase.id.in_(
                select(SupportCaseOrder.case_id).where(SupportCaseOrder.order_id == flt.order_id)
            )
        )
    if flt.tag:
        conditions.append(_has_tag(session, flt.tag.strip().lower()))
    if flt.overdue is not None:
        overdue = _overdue_condition(now)
        conditions.append(overdue if flt.overdue else not_(overdue))
    return conditions


def _after_id(cursor: str | None) -> int | None:
    after = decode_cursor(cursor)
    if after is not None and (not isinstance(after, int) or isinstance(after, bool)):
        raise ValidationProblem.field("query.cursor", "not a cursor returned by this API")
    return after


def search_cases(
    session: Session,
    flt: CaseFilter,
    cursor: str | None,
    limit: int,
    *,
    now: datetime | None = None,
) -> Page[SupportCase]:
    """Newest first."""
    query = select(SupportCase).where(*_filters(session, flt, now or utcnow()))
    after = _after_id(cursor)
    if after is not None:
        query = query.where(SupportCase.id < after)
    rows = session.scalars(query.order_by(SupportCase.id.desc()).limit(limit + 1))
    return page_of(list(rows), limit, key=lambda c: c.id)


def customer_cases(
    session: Session, customer_id: int, cursor: str | None, limit: int
) -> Page[SupportCase]:
    return search_cases(session, CaseFilter(customer_id=customer_id), cursor, limit)


# --- opening a case ------------------------------------------------------------------------


def _case_party(
    session: Session, actor: Principal, draft: CaseDraft
) -> tuple[int | None, str | None]:
    """(customer_id, guest email): identified customers are always linked by id."""
    if draft.customer_id is not None and draft.email is not None:
        raise ValidationProblem.field("body.email", "give customer_id or email, not both")
    if draft.customer_id is not None:
        _check_customer(session, draft.customer_id, "body.customer_id")
        return draft.customer_id, None
    if draft.email is None:
        raise ValidationProblem.field("body.customer_id", "a customer or a guest email is required")
    email = draft.email.strip().lower()
    if _is_staff(actor):
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
    subject = _check_text(draft.subject, "body.subject", 200)
    customer_id, email = _case_party(session, actor, draft)
    if draft.channel_id is not None:
        _check_channel(session, draft.channel_id, "body.channel_id")
    if draft.assignee_id is not None:
        _check_assignee(session, draft.assignee_id, "body.assignee_id")
    tags = normalise_tags(draft.tags)
    if len(draft.orders) > MAX_ORDERS_PER_CASE:
        raise ValidationProblem.field("body.orders", f"at most {MAX_ORDERS_PER_CASE} orders")
    found: dict[int, Order] = {}
    for ref in draft.orders:
        order = _resolve_order(session, actor, ref, customer_id, email)
        found[order.id] = order
    if draft.message is not None:
        _check_message(draft.message, "body.message")
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
    _apply_sla(case, sla_for(session, draft.priority))
    session.add(case)
    session.flush()
    if found:
        session.execute(
            insert(SupportCaseOrder),
            [
                {"case_id": case.id, "order_id": o.id, "order_number": o.number, "created_at": now}
                for o in found.values()
            ],
        )
    _publish(session, "support.case_opened", case, order_ids=sorted(found), tags=tags)
    _audit(session, actor, "support.case_opened", case, {"order_ids": sorted(found)})
    if draft.message is not None:
        _append(session, actor, case, draft.message, now)
    return case


# --- messages ------------------------------------------------------------------------------


def _check_message(draft: MessageDraft, prefix: str) -> None:
    _check_text(draft.body, f"{prefix}.body", 20_000)
    _check_attachments(draft.attachments, f"{prefix}.attachments")


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
    _check_message(draft, "body")
    case = _lock(session, case_id)
    _check_may_write(actor, case, draft.direction)
    # Read the clock once the row is ours: times then follow the order changes applied in.
    return _append(session, actor, case, draft, now or utcnow())


def _append(
    session: Session, actor: Principal, case: SupportCase, draft: MessageDraft, now: datetime
) -> SupportMessage:
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
    _publish(
        session,
        "support.message_added",
        case,
        message_id=message.id,
        direction=message.direction,
        channel=message.channel,
        author_type=author_type,
        attachments=len(message.attachments),
    )
    _audit(
        session,
        actor,
        "support.message_added",
        case,
        {"message_id": message.id, "direction": message.direction, "channel": message.channel},
    )
    _after_message(session, actor, case, draft.direction, now)
    return message


def _after_message(
    session: Session, actor: Principal, case: SupportCase, direction: Direction, now: datetime
) -> None:
    status = CaseStatus(case.status)
    if direction is Direction.OUTBOUND:
        _first_response(session, case, now)
        if status is CaseStatus.NEW:
            _transition_locked(session, actor, case, CaseStatus.OPEN, now, "replied")
    elif direction is Direction.INBOUND and status in (S.PENDING_CUSTOMER, S.RESOLVED):
        _transition_locked(session, actor, case, CaseStatus.OPEN, now, "customer replied")


def _first_response(session: Session, case: SupportCase, now: datetime) -> None:
    if case.first_responded_at is not None:
        return
    case.first_responded_at = now
    if case.first_response_due_at < now and case.first_response_breached_at is None:
        case.first_response_breached_at = now
        _breach_event(session, case, "first_response", case.first_response_due_at)
    session.flush()


# --- status --------------------------------------------------------------------------------


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
    case = _lock(session, case_id)
    _transition_locked(session, actor, case, target, now or utcnow(), note)
    return case


def _transition_locked(
    session: Session,
    actor: Principal,
    case: SupportCase,
    target: CaseStatus,
    now: datetime,
    note: str | None,
) -> None:
    current = CaseStatus(case.status)
    if target not in TRANSITIONS[current]:
        raise UnprocessableState(
            f"case {case.number} cannot go from {current.value} to {target.value}",
            code="invalid-case-transition",
            extra={"case_status": current.value, "target_status": target.value},
        )
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
    case.status = target.value
    case.updated_at = now
    session.flush()
    _publish(
        session,
        "support.case_status_changed",
        case,
        from_status=current.value,
        to_status=target.value,
        actor_type=actor.kind,
    )
    _audit(
        session,
        actor,
        "support.case_status_changed",
        case,
        {"status": [current.value, target.value], **({"note": note} if note else {})},
    )


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
        _breach_event(session, case, "resolution", case.resolution_due_at)


# --- staff edits ---------------------------------------------------------------------------


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
        _check_assignee(session, changes.assignee_id, "body.assignee_id")
    subject = None if changes.subject is None else _check_text(changes.subject, "body.subject", 200)
    tags = None if changes.tags is None else normalise_tags(changes.tags)
    case = _lock(session, case_id)
    diff: dict[str, Any] = {}
    if changes.unassign or changes.assignee_id is not None:
        _change(case, "assignee_id", None if changes.unassign else changes.assignee_id, diff)
    if changes.priority is not None and changes.priority.value != case.priority:
        _change(case, "priority", changes.priority.value, diff)
        _apply_sla(case, sla_for(session, changes.priority))
    if subject is not None and subject != case.subject:
        case.subject = subject
        diff["subject"] = "changed"
    if tags is not None:
        _change(case, "tags", tags, diff)
    if not diff:
        return case
    case.updated_at = now or utcnow()
    session.flush()
    _publish(session, "support.case_updated", case, changes=sorted(diff))
    if "assignee_id" in diff:
        _publish(
            session, "support.case_assigned", case, previous_assignee_id=diff["assignee_id"][0]
        )
    _audit(session, actor, "support.case_updated", case, diff)
    return case


def _change(case: SupportCase, name: str, value: Any, diff: dict[str, Any]) -> None:
    before = getattr(case, name)
    if before != value:
        diff[name] = [before, value]
        setattr(case, name, value)


def link_order(
    session: Session, actor: Principal, case_id: int, ref: OrderRef, *, now: datetime | None = None
) -> SupportCaseOrder:
    case = _lock(session, case_id)
    order = _resolve_order(session, actor, ref, case.customer_id, case.email)
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
    _publish(session, "support.case_updated", case, changes=["orders"], order_id=order.id)
    _audit(session, actor, "support.order_linked", case, {"order_id": order.id})
    return row


# --- satisfaction --------------------------------------------------------------------------


def rate(
    session: Session,
    customer_id: int,
    case_id: int,
    satisfaction: int,
    comment: str | None = None,
    *,
    now: datetime | None = None,
) -> SupportCase:
    """The customer's rating of her closed case, 1 to 5, once."""
    if not 1 <= satisfaction <= 5:
        raise ValidationProblem.field("body.satisfaction", "a whole number from 1 to 5")
    text = None if comment is None else (comment.strip() or None)
    if text is not None and len(text) > 2000:
        raise ValidationProblem.field("body.comment", "at most 2000 characters")
    rated = session.execute(
        update(SupportCase)
        .where(
            SupportCase.id == case_id,
            SupportCase.customer_id == customer_id,
            SupportCase.status == CaseStatus.CLOSED.value,
            SupportCase.satisfaction.is_(None),
        )
        .values(satisfaction=satisfaction, satisfaction_comment=text, rated_at=now or utcnow())
        .returning(SupportCase.id)
        .execution_options(synchronize_session=False)
    ).first()
    case = customer_case(session, customer_id, case_id)
    if rated is None:
        if case.status != CaseStatus.CLOSED.value:
            raise UnprocessableState(
                f"case {case.number} is {case.status}: only a closed case can be rated",
                code="case-not-closed",
            )
        raise Conflict(f"case {case.number} was rated already", code="case-already-rated")
    _publish(
        session, "support.case_rated", case, satisfaction=satisfaction, commented=text is not None
    )
    return case


@dataclass(frozen=True)
class SatisfactionRow:
    period_start: date
    channel_id: int | None
    source: str
    ratings: int
    score_total: int

    @property
    def average(self) -> Decimal:
        return (Decimal(self.score_total) / self.ratings).quantize(
            Decimal("0.01"), rounding=ROUND_HALF_UP
        )


def _bucket(session: Session, period: Period) -> ColumnElement[Any]:
    column = SupportCase.rated_at
    if session.get_bind().dialect.name == "postgresql":
        utc = func.timezone("UTC", column)
        return cast(func.date_trunc(period.value, utc), Date)
    # SQLite keeps UTC timestamps as ISO text: date() and its modifiers work on it.
    if period is Period.MONTH:
        return func.date(column, "start of month")
    if period is Period.WEEK:
        return func.date(column, "-6 days", "weekday 1")  # the Monday starting its ISO week
    return func.date(column)


def average_satisfaction(
    session: Session,
    *,
    since: datetime,
    until: datetime,
    period: Period = Period.DAY,
    channel_id: int | None = None,
    source: ContactChannel | None = None,
) -> list[SatisfactionRow]:
    """Ratings given in [since, until) per period (UTC), sales channel and contact channel
    (only one sales channel or contact channel if given).

    ``ratings`` and ``score_total`` let callers merge rows exactly (a channel over a month).
    """
    bucket = _bucket(session, period).label("bucket")
    conditions = [
        SupportCase.satisfaction.is_not(None),
        SupportCase.rated_at >= since,
        SupportCase.rated_at < until,
    ]
    if channel_id is not None:
        conditions.append(SupportCase.channel_id == channel_id)
    if source is not None:
        conditions.append(SupportCase.source == source.value)
    rows = session.execute(
        select(
            bucket,
            SupportCase.channel_id,
            SupportCase.source,
            func.count(),
            func.sum(SupportCase.satisfaction),
        )
        .where(*conditions)
        .group_by(bucket, SupportCase.channel_id, SupportCase.source)
        .order_by(bucket, SupportCase.channel_id.nulls_first(), SupportCase.source)
    ).all()
    return [
        SatisfactionRow(
            period_start=b if isinstance(b, date) else date.fromisoformat(str(b)),
            channel_id=channel_id,
            source=source,
            ratings=int(n),
            score_total=int(total),
        )
        for b, channel_id, source, n, total in rows
    ]


# --- SLA breaches --------------------------------------------------------------------------


def mark_sla_breaches(session: Session, now: datetime | None = None) -> int:
    """Flag running cases past a due time and publish ``support.sla_breached`` once each.

    Conditional UPDATEs: several processes running the job at once flag a case once.
    """
    now = now or utcnow()
    running = SupportCase.status.in_([s.value for s in RUNNING])
    kinds: list[tuple[str, Any, list[ColumnElement[bool]]]] = [
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
    flagged = 0
    for kind, column, late in kinds:
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
            _breach_event(session, case, kind, due)
        flagged += len(ids)
    return flagged


# --- the agent console ---------------------------------------------------------------------


@dataclass
class Overview:
    """Everything a phone agent needs about one customer, read in a fixed number of queries."""

    customer: Customer
    order_count: int
    open_cases: list[SupportCase]
    recent_cases: list[SupportCase]
    last_messages: dict[int, list[SupportMessage]]
    case_orders: dict[int, list[SupportCaseOrder]]
    recent_orders: list[Order]
    order_lines: dict[int, list[OrderLine]] = field(default_factory=dict)


def customer_overview(session: Session, customer_id: int) -> Overview:
    customer = customers.get_customer(session, customer_id)
    open_cases = list(
        session.scalars(
            select(SupportCase)
            .where(
                SupportCase.customer_id == customer_id,
                SupportCase.status.in_([s.value for s in ACTIVE]),
            )
            .order_by(SupportCase.id.desc())
        )
    )
    recent_cases = list(
        session.scalars(
            select(SupportCase)
            .where(
                SupportCase.customer_id == customer_id,
                SupportCase.status.not_in([s.value for s in ACTIVE]),
            )
            .order_by(SupportCase.id.desc())
            .limit(OVERVIEW_CASES)
        )
    )
    ids = [c.id for c in open_cases + recent_cases]
    recent_orders = orders.search(
        session, orders.OrderFilter(customer_id=customer_id), None, OVERVIEW_ORDERS
    ).items
    return Overview(
        customer=customer,
        order_count=orders.count_orders(session, customer_id),
        open_cases=open_cases,
        recent_cases=recent_cases,
        last_messages=last_messages(session, ids, OVERVIEW_MESSAGES, include_internal=True),
        case_orders=case_orders(session, ids),
        recent_orders=recent_orders,
        # At most OVERVIEW_ORDERS small queries: the orders service reads lines per order.
        order_lines={o.id: orders.order_lines(session, o.id) for o in recent_orders},
    )
