"""Support endpoints: shoppers' cases under ``/v1/store/support``, staff under ``/v1/support``.

The time the SLA rules see comes from ``app.state.support_clock`` when it is set (tests
and simulations move it), otherwise from the real clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from mercato.auth.permissions import Permission
from mercato.auth.principal import Principal
from mercato.channels.context import ChannelContext
from mercato.channels.deps import ChannelCtx
from mercato.customers.api import CurrentCustomer
from mercato.customers.deps import CustomerId
from mercato.db import utcnow
from mercato.deps import DbSession, IdempotencyKey, Pagination, require
from mercato.errors import ValidationProblem
from mercato.idempotency import Idempotent, scope_for, shopper_scope
from mercato.money import quantize
from mercato.orders.models import Order, OrderLine
from mercato.routing import router
from mercato.schemas import PageOut
from mercato.support import service
from mercato.support.models import SupportCase, SupportCaseOrder, SupportMessage
from mercato.support.schemas import (
    CaseOrderOut,
    CaseOut,
    CasePatch,
    CustomerSummaryOut,
    MessageOut,
    OrderBriefOut,
    OrderLineBriefOut,
    OrderRefIn,
    OverviewOut,
    RatingIn,
    SatisfactionOut,
    SatisfactionRowOut,
    SlaPolicyIn,
    SlaPolicyOut,
    StaffCaseIn,
    StaffMessageIn,
    StatusIn,
    StoreCaseIn,
    StoreCaseOut,
    StoreMessageIn,
    StoreMessageOut,
)

store_api = router("/v1/store/support", tags=["support"])
api = router("/v1/support", tags=["support"])

Reader = Annotated[Principal, Depends(require(Permission.SUPPORT_READ))]
Analyst = Annotated[Principal, Depends(require(Permission.ANALYTICS_READ))]
Writer = Annotated[Principal, Depends(require(Permission.SUPPORT_WRITE))]


def current_time(request: Request) -> datetime:
    clock: service.Clock | None = getattr(request.app.state, "support_clock", None)
    return clock() if clock is not None else utcnow()


Now = Annotated[datetime, Depends(current_time)]


# --- shaping -------------------------------------------------------------------------------


def _orders_out(rows: Sequence[SupportCaseOrder]) -> list[CaseOrderOut]:
    return [CaseOrderOut(order_id=r.order_id, number=r.order_number) for r in rows]


def _message_out(message: SupportMessage, principal: Principal) -> MessageOut:
    out = MessageOut.model_validate(message)
    if principal.has(Permission.CUSTOMERS_PII):
        return out
    personal = out.author_type in ("customer", "guest")
    return out.model_copy(
        update={"body": None, "attachments": [], **({"author_name": None} if personal else {})}
    )


def case_out(
    case: SupportCase,
    principal: Principal,
    now: datetime,
    orders: Sequence[SupportCaseOrder] = (),
    messages: Sequence[SupportMessage] = (),
) -> CaseOut:
    """The staff view; roles without customers:pii see it without anything personal."""
    out = CaseOut(
        **{name: getattr(case, name) for name in _CASE_FIELDS},
        orders=_orders_out(orders),
        sla_breached=(case.first_response_breached_at or case.resolution_breached_at) is not None,
        overdue=service.is_overdue(case, now),
        paused=case.paused_at is not None,
        messages=[_message_out(m, principal) for m in messages],
    )
    if principal.has(Permission.CUSTOMERS_PII):
        return out
    return out.model_copy(update={"email": None, "subject": None, "satisfaction_comment": None})


_CASE_FIELDS = tuple(
    name
    for name in CaseOut.model_fields
    if name not in ("orders", "sla_breached", "overdue", "paused", "messages")
)


def _full_case(session: Session, case: SupportCase, principal: Principal, now: datetime) -> CaseOut:
    return case_out(
        case,
        principal,
        now,
        service.case_orders(session, [case.id]).get(case.id, []),
        service.messages(session, case.id, include_internal=True),
    )


def store_case_out(
    case: SupportCase,
    orders: Sequence[SupportCaseOrder] = (),
    messages: Sequence[SupportMessage] = (),
) -> StoreCaseOut:
    """The customer's view: never internal notes, priorities, assignees or SLA details."""
    return StoreCaseOut(
        id=case.id,
        number=case.number,
        subject=case.subject,
        status=case.status,
        source=case.source,
        channel_id=case.channel_id,
        orders=_orders_out(orders),
        created_at=case.created_at,
        updated_at=case.updated_at,
        resolved_at=case.resolved_at,
        closed_at=case.closed_at,
        can_rate=case.status == service.CaseStatus.CLOSED.value and case.satisfaction is None,
        satisfaction=case.satisfaction,
        satisfaction_comment=case.satisfaction_comment,
        rated_at=case.rated_at,
        messages=[
            StoreMessageOut.model_validate(m)
            for m in messages
            if m.direction != service.Direction.INTERNAL.value
        ],
    )


def _full_store_case(session: Session, case: SupportCase) -> StoreCaseOut:
    return store_case_out(
        case,
        service.case_orders(session, [case.id]).get(case.id, []),
        service.messages(session, case.id, include_internal=False),
    )


# --- shoppers ------------------------------------------------------------------------------


def _shopper(channel: ChannelContext, customer_id: int | None) -> Principal:
    if customer_id is None:
        return service.guest_actor(channel.id, channel.code)
    return service.customer_actor(customer_id, channel.id)


def _contact(channel: ChannelContext) -> service.ContactChannel:
    return service.CONTACT_FOR_CHANNEL_TYPE.get(channel.type, service.ContactChannel.WEB)


@store_api.post("/cases", response_model=StoreCaseOut, status_code=201)
def open_my_case(
    body: StoreCaseIn,
    session: DbSession,
    channel: ChannelCtx,
    customer_id: CustomerId,
    key: IdempotencyKey,
    now: Now,
) -> JSONResponse:
    """Open a case, optionally about one of your orders. Without a customer token it is a
    guest case and needs an email."""
    if customer_id is None and body.email is None:
        raise ValidationProblem.field("body.email", "guests give an email (or log in)")
    if customer_id is not None and body.email is not None:
        raise ValidationProblem.field("body.email", "customers are answered on their account")
    actor = _shopper(channel, customer_id)
    contact = _contact(channel)

    def run() -> StoreCaseOut:
        field = "body.order_id" if body.order_id is not None else "body.order_number"
        refs = [service.OrderRef(body.order_id, body.order_number, field)]
        draft = service.CaseDraft(
            subject=body.subject,
            source=contact,
            customer_id=customer_id,
            email=body.email,
            channel_id=channel.id,
            orders=refs if body.order_id is not None or body.order_number else [],
            message=service.MessageDraft(
                body.message.body,
                service.Direction.INBOUND,
                contact,
                body.message.attachments,
            ),
        )
        case = service.open_case(session, actor, draft, now=now)
        return _full_store_case(session, case)

    return Idempotent(session, scope_for("support.case", actor), key, body).run(run)


@store_api.get("/cases", response_model=PageOut[StoreCaseOut])
def list_my_cases(
    session: DbSession, page: Pagination, customer: CurrentCustomer
) -> PageOut[StoreCaseOut]:
    cursor, limit = page
    result = service.customer_cases(session, customer.id, cursor, limit)
    linked = service.case_orders(session, [c.id for c in result.items])
    return PageOut(
        items=[store_case_out(c, linked.get(c.id, [])) for c in result.items],
        next_cursor=result.next_cursor,
    )


@store_api.get("/cases/{case_id}", response_model=StoreCaseOut)
def read_my_case(case_id: int, session: DbSession, customer: CurrentCustomer) -> StoreCaseOut:
    """The case and its thread, without staff's internal notes."""
    return _full_store_case(session, service.customer_case(session, customer.id, case_id))


@store_api.post("/cases/{case_id}/messages", response_model=StoreMessageOut, status_code=201)
def write_to_my_case(
    case_id: int,
    body: StoreMessageIn,
    session: DbSession,
    channel: ChannelCtx,
    customer: CurrentCustomer,
    key: IdempotencyKey,
    now: Now,
) -> JSONResponse:
    actor = service.customer_actor(customer.id, channel.id)
    draft = service.MessageDraft(
        body.body, service.Direction.INBOUND, _contact(channel), body.attachments
    )

    def run() -> StoreMessageOut:
        message = service.add_message(session, actor, case_id, draft, now=now)
        return StoreMessageOut.model_validate(message)

    scope = scope_for(f"support.message:{case_id}", actor)
    return Idempotent(session, scope, key, body).run(run)


@store_api.post("/cases/{case_id}/rating", response_model=StoreCaseOut)
def rate_my_case(
    case_id: int,
    body: RatingIn,
    session: DbSession,
    channel: ChannelCtx,
    customer: CurrentCustomer,
    key: IdempotencyKey,
    now: Now,
) -> JSONResponse:
    """Rate a closed case from 1 to 5, once. With an ``Idempotency-Key`` a retry gets the
    first answer instead of an already-rated conflict."""

    def run() -> StoreCaseOut:
        case = service.rate(session, customer.id, case_id, body.satisfaction, body.comment, now=now)
        return _full_store_case(session, case)

    scope = shopper_scope(f"support.rating:{case_id}", channel.id, customer.id)
    return Idempotent(session, scope, key, body).run(run, 200)


# --- staff ---------------------------------------------------------------------------------


@api.get("/cases", response_model=PageOut[CaseOut])
def search_cases(
    session: DbSession,
    page: Pagination,
    principal: Reader,
    now: Now,
    status: Annotated[list[service.CaseStatus] | None, Query()] = None,
    priority: service.Priority | None = None,
    assignee_id: int | None = None,
    unassigned: bool = False,
    customer_id: int | None = None,
    channel_id: int | None = None,
    source: service.ContactChannel | None = None,
    order_id: int | None = None,
    tag: Annotated[str | None, Query(max_length=40)] = None,
    overdue: bool | None = None,
) -> PageOut[CaseOut]:
    """Newest first. ``status`` may repeat; ``overdue`` means past a due time right now."""
    cursor, limit = page
    flt = service.CaseFilter(
        statuses=status or (),
        priority=priority,
        assignee_id=assignee_id,
        unassigned=unassigned,
        customer_id=customer_id,
        channel_id=channel_id,
        source=source,
        order_id=order_id,
        tag=tag,
        overdue=overdue,
    )
    result = service.search_cases(session, flt, cursor, limit, now=now)
    linked = service.case_orders(session, [c.id for c in result.items])
    return PageOut(
        items=[case_out(c, principal, now, linked.get(c.id, [])) for c in result.items],
        next_cursor=result.next_cursor,
    )


@api.post("/cases", response_model=CaseOut, status_code=201)
def open_case(
    body: StaffCaseIn, session: DbSession, principal: Writer, key: IdempotencyKey, now: Now
) -> JSONResponse:
    """Open a case for a customer (or a guest email), e.g. from a phone call."""

    def run() -> CaseOut:
        message = body.message
        draft = service.CaseDraft(
            subject=body.subject,
            source=body.source,
            customer_id=body.customer_id,
            email=body.email,
            channel_id=body.channel_id,
            priority=body.priority,
            orders=[
                service.OrderRef(r.order_id, r.number, f"body.orders[{i}]")
                for i, r in enumerate(body.orders)
            ],
            tags=body.tags,
            assignee_id=body.assignee_id,
            message=None
            if message is None
            else service.MessageDraft(
                message.body, message.direction, message.channel, message.attachments
            ),
        )
        case = service.open_case(session, principal, draft, now=now)
        return _full_case(session, case, principal, now)

    return Idempotent(session, scope_for("support.case", principal), key, body).run(run)


@api.get("/cases/by-number/{number}", response_model=CaseOut)
def read_case_by_number(number: str, session: DbSession, principal: Reader, now: Now) -> CaseOut:
    return _full_case(session, service.get_by_number(session, number), principal, now)


@api.get("/cases/{case_id}", response_model=CaseOut)
def read_case(case_id: int, session: DbSession, principal: Reader, now: Now) -> CaseOut:
    """The case with its whole thread, internal notes included."""
    return _full_case(session, service.get_case(session, case_id), principal, now)


@api.patch("/cases/{case_id}", response_model=CaseOut)
def update_case(
    case_id: int, body: CasePatch, session: DbSession, principal: Writer, now: Now
) -> CaseOut:
    """Assign (``assignee_id``; null unassigns), re-prioritise, rename, retag."""
    changes = service.CaseChanges(
        priority=body.priority,
        assignee_id=body.assignee_id,
        unassign="assignee_id" in body.model_fields_set and body.assignee_id is None,
        subject=body.subject,
        tags=body.tags,
    )
    case = service.update_case(session, principal, case_id, changes, now=now)
    return _full_case(session, case, principal, now)


@api.post("/cases/{case_id}/status", response_model=CaseOut)
def change_status(
    case_id: int, body: StatusIn, session: DbSession, principal: Writer, now: Now
) -> CaseOut:
    case = service.transition(session, principal, case_id, body.status, now=now, note=body.note)
    return _full_case(session, case, principal, now)


@api.post("/cases/{case_id}/messages", response_model=MessageOut, status_code=201)
def add_message(
    case_id: int,
    body: StaffMessageIn,
    session: DbSession,
    principal: Writer,
    key: IdempotencyKey,
    now: Now,
) -> JSONResponse:
    """A reply, a logged call or email from the customer, or an internal note."""
    draft = service.MessageDraft(body.body, body.direction, body.channel, body.attachments)

    def run() -> MessageOut:
        message = service.add_message(session, principal, case_id, draft, now=now)
        return _message_out(message, principal)

    scope = scope_for(f"support.message:{case_id}", principal)
    return Idempotent(session, scope, key, body).run(run)


@api.post("/cases/{case_id}/orders", response_model=CaseOut, status_code=201)
def link_order(
    case_id: int, body: OrderRefIn, session: DbSession, principal: Writer, now: Now
) -> CaseOut:
    field = "body.order_id" if body.order_id is not None else "body.number"
    ref = service.OrderRef(body.order_id, body.number, field)
    service.link_order(session, principal, case_id, ref, now=now)
    return _full_case(session, service.get_case(session, case_id), principal, now)


@api.get("/customers/{customer_id}/overview", response_model=OverviewOut)
def customer_overview(
    customer_id: int, session: DbSession, principal: Reader, now: Now
) -> OverviewOut:
    """The agent console: the customer, her open and recent cases with their last
    messages, and her recent orders, in one answer."""
    found = service.customer_overview(session, customer_id)

    def cases(items: list[SupportCase]) -> list[CaseOut]:
        return [
            case_out(
                c,
                principal,
                now,
                found.case_orders.get(c.id, []),
                found.last_messages.get(c.id, []),
            )
            for c in items
        ]

    return OverviewOut(
        customer=customer_summary(found, principal),
        open_cases=cases(found.open_cases),
        recent_cases=cases(found.recent_cases),
        recent_orders=[
            order_brief(o, found.order_lines.get(o.id, [])) for o in found.recent_orders
        ],
    )


def customer_summary(found: service.Overview, principal: Principal) -> CustomerSummaryOut:
    c = found.customer
    out = CustomerSummaryOut(
        id=c.id,
        email=c.email,
        phone=c.phone,
        first_name=c.first_name,
        last_name=c.last_name,
        locale=c.locale,
        groups=list(c.groups or []),
        registered_channel_id=c.registered_channel_id,
        created_at=c.created_at,
        order_count=found.order_count,
    )
    if principal.has(Permission.CUSTOMERS_PII):
        return out
    return out.model_copy(
        update={"email": None, "phone": None, "first_name": None, "last_name": None}
    )


def order_brief(order: Order, lines: Sequence[OrderLine]) -> OrderBriefOut:
    return OrderBriefOut(
        id=order.id,
        number=order.number,
        channel_id=order.channel_id,
        status=order.status,
        currency=order.currency,
        grand_total=quantize(order.grand_total, order.currency),
        placed_at=order.placed_at,
        created_at=order.created_at,
        lines=[
            OrderLineBriefOut(
                sku=x.sku,
                name=x.name,
                quantity=x.quantity,
                total=quantize(x.total, order.currency),
            )
            for x in lines
        ],
    )


# Per-day rows over more than this would be a report, not a query.
MAX_SATISFACTION_DAYS = 731


@api.get("/satisfaction", response_model=SatisfactionOut)
def satisfaction(
    session: DbSession,
    principal: Analyst,
    since: datetime,
    until: datetime,
    period: service.Period = service.Period.DAY,
    channel_id: int | None = None,
    source: service.ContactChannel | None = None,
) -> SatisfactionOut:
    """The satisfaction KPI: ratings of cases rated in [since, until), by period, sales
    channel (``channel_id``) and contact channel (``source``), optionally only one of each."""
    for name, value in (("since", since), ("until", until)):
        if value.utcoffset() is None:
            raise ValidationProblem.field(
                f"query.{name}", "needs a time zone, e.g. 2030-01-01T00:00:00Z"
            )
    if until <= since:
        raise ValidationProblem.field("query.until", "must be after since")
    if (until - since).days > MAX_SATISFACTION_DAYS:
        raise ValidationProblem.field(
            "query.until", f"at most {MAX_SATISFACTION_DAYS} days after since"
        )
    rows = service.average_satisfaction(
        session, since=since, until=until, period=period, channel_id=channel_id, source=source
    )
    ratings = sum(r.ratings for r in rows)
    total = sum(r.score_total for r in rows)
    overall = service.SatisfactionRow(since.date(), channel_id, "", ratings, total)
    return SatisfactionOut(
        since=since,
        until=until,
        period=period.value,
        ratings=ratings,
        average=overall.average if ratings else None,
        rows=[
            SatisfactionRowOut(
                period_start=r.period_start,
                channel_id=r.channel_id,
                source=r.source,
                ratings=r.ratings,
                score_total=r.score_total,
                average=r.average,
            )
            for r in rows
        ],
    )


@api.get("/sla-policies", response_model=PageOut[SlaPolicyOut])
def list_sla_policies(session: DbSession, principal: Reader) -> PageOut[SlaPolicyOut]:
    return PageOut(items=[SlaPolicyOut.model_validate(x) for x in service.sla_policies(session)])


@api.put("/sla-policies/{priority}", response_model=SlaPolicyOut)
def set_sla_policy(
    priority: service.Priority, body: SlaPolicyIn, session: DbSession, principal: Writer, now: Now
) -> SlaPolicyOut:
    """Targets for cases opened (or re-prioritised) from now on."""
    sla = service.set_sla_policy(
        session,
        principal,
        priority,
        body.first_response_minutes,
        body.resolution_minutes,
        now=now,
    )
    return SlaPolicyOut.model_validate(sla)
