"""Consent (shopper and staff), offer rules and their runs, and the message outbox."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Query
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from mercato.auth.permissions import Permission
from mercato.auth.principal import Principal
from mercato.channels.deps import ChannelCtx
from mercato.customers import service as customers
from mercato.customers.deps import CustomerId
from mercato.deps import DbSession, IdempotencyKey, Pagination, require
from mercato.errors import NotFound, Unauthorized
from mercato.idempotency import Idempotent, scope_for, shopper_scope
from mercato.marketing import notifier, order_messages, service
from mercato.marketing.models import Message, OfferRule, RuleRun
from mercato.marketing.schemas import (
    CandidateOut,
    ConsentChangeIn,
    ConsentChangesIn,
    ConsentRecordOut,
    ConsentsOut,
    ConsentStateOut,
    MessageOut,
    PreviewOut,
    ResendIn,
    RuleIn,
    RuleOut,
    RulePatch,
    RunOut,
    RunResultOut,
    StaffConsentChangesIn,
)
from mercato.routing import router
from mercato.schemas import PageOut

api = router("/v1", tags=["marketing"])

CustomerReader = Annotated[Principal, Depends(require(Permission.CUSTOMERS_READ))]
CustomerWriter = Annotated[Principal, Depends(require(Permission.CUSTOMERS_WRITE))]
PromotionReader = Annotated[Principal, Depends(require(Permission.PROMOTIONS_READ))]
OrderReader = Annotated[Principal, Depends(require(Permission.ORDERS_READ))]
OrderWriter = Annotated[Principal, Depends(require(Permission.ORDERS_WRITE))]
PromotionWriter = Annotated[Principal, Depends(require(Permission.PROMOTIONS_WRITE))]


def _shopper(customer_id: CustomerId) -> int:
    if customer_id is None:
        raise Unauthorized("a customer bearer token is required", code="missing-customer-token")
    return customer_id


ShopperId = Annotated[int, Depends(_shopper)]


def _changes(items: list[ConsentChangeIn]) -> list[service.ConsentChange]:
    return [
        service.ConsentChange(x.purpose, x.granted, x.wording_version, x.channel_id) for x in items
    ]


def consents_out(session: Session, customer_id: int) -> ConsentsOut:
    states = service.current_consents(session, customer_id)
    return ConsentsOut(
        customer_id=customer_id,
        consents=[
            ConsentStateOut(
                purpose=s.purpose,
                channel_id=s.channel_id,
                granted=s.granted,
                source=s.source,
                wording_version=s.wording_version,
                recorded_at=s.recorded_at,
            )
            for s in states
        ],
    )


def _history(
    session: Session,
    customer_id: int,
    purpose: service.Purpose | None,
    page: tuple[str | None, int],
) -> PageOut[ConsentRecordOut]:
    cursor, limit = page
    result = service.consent_history(
        session, customer_id, purpose=purpose, cursor=cursor, limit=limit
    )
    return PageOut(
        items=[ConsentRecordOut.model_validate(r) for r in result.items],
        next_cursor=result.next_cursor,
    )


# --- shopper consent ------------------------------------------------------------------------


@api.get("/store/consents", response_model=ConsentsOut, tags=["consent"])
def my_consents(session: DbSession, channel: ChannelCtx, customer_id: ShopperId) -> ConsentsOut:
    """The signed-in customer's current consent for every purpose."""
    return consents_out(session, customer_id)


@api.post("/store/consents", response_model=ConsentsOut, tags=["consent"])
def change_my_consents(
    body: ConsentChangesIn,
    session: DbSession,
    channel: ChannelCtx,
    customer_id: ShopperId,
    key: IdempotencyKey,
) -> JSONResponse:
    """Grant or withdraw consent; each change names the wording version the customer saw.
    With an ``Idempotency-Key`` a retry records the changes once."""
    actor = Principal(
        kind="customer", customer_id=customer_id, channel_id=channel.id, label=channel.code
    )

    def run() -> ConsentsOut:
        service.record_consents(
            session,
            actor,
            customer_id,
            _changes(body.changes),
            source=service.ConsentSource.CHANNEL,
            source_channel_id=channel.id,
        )
        return consents_out(session, customer_id)

    scope = shopper_scope("consents", channel.id, customer_id)
    return Idempotent(session, scope, key, body.model_dump(mode="json")).run(run, 200)


@api.get("/store/consents/history", response_model=PageOut[ConsentRecordOut], tags=["consent"])
def my_consent_history(
    session: DbSession,
    channel: ChannelCtx,
    customer_id: ShopperId,
    page: Pagination,
    purpose: service.Purpose | None = None,
) -> PageOut[ConsentRecordOut]:
    return _history(session, customer_id, purpose, page)


# --- staff consent --------------------------------------------------------------------------


@api.get("/customers/{customer_id}/consents", response_model=ConsentsOut, tags=["consent"])
def customer_consents(
    customer_id: int, session: DbSession, principal: CustomerReader
) -> ConsentsOut:
    customers.get_customer(session, customer_id)
    return consents_out(session, customer_id)


@api.post("/customers/{customer_id}/consents", response_model=ConsentsOut, tags=["consent"])
def change_customer_consents(
    customer_id: int, body: StaffConsentChangesIn, session: DbSession, principal: CustomerWriter
) -> ConsentsOut:
    """Record decisions the customer made outside a channel (told staff, imported)."""
    service.record_consents(
        session,
        principal,
        customer_id,
        _changes(body.changes),
        source=service.ConsentSource(body.source),
        note=body.note,
    )
    return consents_out(session, customer_id)


@api.get(
    "/customers/{customer_id}/consents/history",
    response_model=PageOut[ConsentRecordOut],
    tags=["consent"],
)
def customer_consent_history(
    customer_id: int,
    session: DbSession,
    principal: CustomerReader,
    page: Pagination,
    purpose: service.Purpose | None = None,
) -> PageOut[ConsentRecordOut]:
    customers.get_customer(session, customer_id)
    return _history(session, customer_id, purpose, page)


# --- rules ----------------------------------------------------------------------------------


def rule_out(rule: OfferRule) -> RuleOut:
    return RuleOut.model_validate(rule)


@api.post("/marketing/rules", response_model=RuleOut, status_code=201)
def create_rule(body: RuleIn, session: DbSession, principal: PromotionWriter) -> RuleOut:
    category_id = service.resolve_category(session, body.category_id, body.category_code)
    draft = service.RuleDraft(
        name=body.name,
        category_id=category_id,
        min_purchases=body.min_purchases,
        window_days=body.window_days,
        template_promotion_id=body.template_promotion_id,
        valid_days=body.valid_days,
        active=body.active,
    )
    return rule_out(service.create_rule(session, principal, draft))


@api.get("/marketing/rules", response_model=PageOut[RuleOut])
def list_rules(
    session: DbSession, page: Pagination, principal: PromotionReader, active: bool | None = None
) -> PageOut[RuleOut]:
    cursor, limit = page
    result = service.list_rules(session, active=active, cursor=cursor, limit=limit)
    return PageOut(items=[rule_out(r) for r in result.items], next_cursor=result.next_cursor)


@api.get("/marketing/rules/{rule_id}", response_model=RuleOut)
def get_rule(rule_id: int, session: DbSession, principal: PromotionReader) -> RuleOut:
    return rule_out(service.get_rule(session, rule_id))


@api.patch("/marketing/rules/{rule_id}", response_model=RuleOut)
def update_rule(
    rule_id: int, body: RulePatch, session: DbSession, principal: PromotionWriter
) -> RuleOut:
    sent = body.model_fields_set
    changes: dict[str, Any] = {
        name: getattr(body, name)
        for name in sent
        if name in service.RULE_FIELDS and name != "category_id"
    }
    if "category_id" in sent or "category_code" in sent:
        changes["category_id"] = service.resolve_category(
            session, body.category_id, body.category_code
        )
    return rule_out(service.update_rule(session, principal, rule_id, changes))


@api.get("/marketing/rules/{rule_id}/dry-run", response_model=PreviewOut)
def dry_run(rule_id: int, session: DbSession, principal: PromotionReader) -> PreviewOut:
    """Who a run would offer a code now, and why the others would be skipped."""
    preview = service.preview_rule(session, rule_id)
    return PreviewOut(
        rule_id=preview.rule_id,
        window_from=preview.window_from,
        ready=preview.ready,
        problems=preview.problems,
        candidates=[
            CandidateOut.model_validate(c, from_attributes=True) for c in preview.candidates
        ],
    )


def run_out(session: Session, run: RuleRun) -> RunOut:
    out = RunOut.model_validate(run)
    out.results = [RunResultOut.model_validate(r) for r in service.run_results(session, run.id)]
    return out


@api.post("/marketing/rules/{rule_id}/run", response_model=RunOut, status_code=201)
def run_rule(
    rule_id: int, session: DbSession, principal: PromotionWriter, key: IdempotencyKey
) -> JSONResponse:
    """Issue the offer now. With an Idempotency-Key a retry answers the first run."""

    def run() -> RunOut:
        return run_out(session, service.run_rule(session, principal, rule_id))

    scope = scope_for(f"marketing.rule_run.{rule_id}", principal)
    return Idempotent(session, scope, key, {"rule_id": rule_id}).run(run)


@api.get("/marketing/rules/{rule_id}/runs", response_model=PageOut[RunOut])
def list_runs(
    rule_id: int, session: DbSession, page: Pagination, principal: PromotionReader
) -> PageOut[RunOut]:
    """Runs without their per-customer results (see GET /v1/marketing/runs/{id})."""
    cursor, limit = page
    result = service.list_runs(session, rule_id, cursor=cursor, limit=limit)
    return PageOut(
        items=[RunOut.model_validate(r) for r in result.items], next_cursor=result.next_cursor
    )


@api.get("/marketing/runs/{run_id}", response_model=RunOut)
def get_run(run_id: int, session: DbSession, principal: PromotionReader) -> RunOut:
    return run_out(session, service.get_run(session, run_id))


# --- message outbox -------------------------------------------------------------------------


def message_out(message: Message, principal: Principal) -> MessageOut:
    out = MessageOut.model_validate(message)
    if principal.has(Permission.CUSTOMERS_PII):
        return out
    # Address and body (which carries the personal code) are personal data.
    return out.model_copy(update={"recipient": None, "body_text": None, "body_html": None})


@api.get("/marketing/messages", response_model=PageOut[MessageOut])
def list_messages(
    session: DbSession,
    page: Pagination,
    principal: CustomerReader,
    customer_id: int | None = None,
    status: notifier.MessageStatus | None = None,
    reference_type: Annotated[str | None, Query(max_length=30)] = None,
    reference_id: Annotated[str | None, Query(max_length=64)] = None,
) -> PageOut[MessageOut]:
    """Rendered messages, newest first: queued, sent or failed."""
    cursor, limit = page
    result = notifier.list_messages(
        session,
        customer_id=customer_id,
        status=status,
        reference_type=reference_type,
        reference_id=reference_id,
        cursor=cursor,
        limit=limit,
    )
    return PageOut(
        items=[message_out(m, principal) for m in result.items], next_cursor=result.next_cursor
    )


@api.get("/marketing/messages/{message_id}", response_model=MessageOut)
def get_message(message_id: int, session: DbSession, principal: CustomerReader) -> MessageOut:
    message = notifier.get_message(session, message_id)
    if message is None:
        raise NotFound(f"message {message_id} not found")
    return message_out(message, principal)


@api.get("/orders/{order_id}/messages", response_model=PageOut[MessageOut], tags=["orders"])
def list_order_messages(
    order_id: int, session: DbSession, principal: OrderReader
) -> PageOut[MessageOut]:
    """The messages sent (or waiting, or failed) to the customer about the order, newest
    first; the address and body only for roles with customers:pii."""
    found = order_messages.order_messages(session, principal, order_id)
    return PageOut(items=[message_out(m, principal) for m in found])


@api.post(
    "/orders/{order_id}/messages/{message_id}/resend",
    status_code=201,
    response_model=MessageOut,
    tags=["orders"],
)
def resend_order_message(
    order_id: int,
    message_id: int,
    session: DbSession,
    principal: OrderWriter,
    key: IdempotencyKey,
    body: ResendIn | None = None,
) -> MessageOut:
    """Queue a new copy of a sent or failed message to the same address (or, with
    ``to_current_email``, to the order's current email). A ready-for-pickup message carries
    the pickup code: resending it is written in the order's timeline. Personal offers (a
    personal code) and marketing messages are never resent (409)."""
    copy = order_messages.resend(
        session,
        principal,
        message_id,
        key,
        order_id=order_id,
        to_current_email=body is not None and body.to_current_email,
    )
    return message_out(copy, principal)
