"""Staff endpoints for payments, refunds, gift cards and store credit; provider webhooks.

Capture, void and refund call a payment provider, so they run without the request
transaction (see ``payments.deps``): the service opens its own short transactions around
the provider call. Their ``Idempotency-Key`` is stored in transaction A together with the
effect, and a retry is answered from what that operation became.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.responses import JSONResponse

from mercato import instance_keys
from mercato.auth.permissions import Permission
from mercato.auth.principal import Principal
from mercato.customers import service as customers
from mercato.db import Database
from mercato.deps import (
    DbSession,
    IdempotencyKey,
    Pagination,
    get_database,
    get_settings_dep,
    require,
    require_outside_transaction,
)
from mercato.errors import NotFound, Unauthorized, ValidationProblem
from mercato.idempotency import Idempotent, scope_for
from mercato.openapi import problem_responses
from mercato.payments import balances, keys, service
from mercato.payments.deps import RequestId
from mercato.payments.models import GiftCard, Payment, StoreCreditTransaction
from mercato.payments.providers import (
    InvalidSignature,
    InvalidWebhook,
    WebhooksNotSupported,
    get_provider,
)
from mercato.payments.schemas import (
    CaptureIn,
    GiftCardIn,
    GiftCardOut,
    GiftCardPage,
    GiftCardTransactionOut,
    IssuedGiftCardOut,
    PaymentOut,
    PaymentPage,
    ProviderOut,
    ReconcileIn,
    ReconcileOut,
    ReferenceRefundIn,
    RefundIn,
    RefundOut,
    StoreCreditAccountOut,
    StoreCreditAdjustmentIn,
    StoreCreditOut,
    StoreCreditTransactionOut,
    StoreCreditTransactionPage,
    TransactionOut,
    WebhookAck,
)
from mercato.routing import router
from mercato.schemas import PageOut
from mercato.settings import Settings

api = router("/v1", tags=["payments"])

Reader = Annotated[Principal, Depends(require(Permission.PAYMENTS_READ))]
GiftCardWriter = Annotated[Principal, Depends(require(Permission.GIFT_CARDS_WRITE))]
CreditWriter = Annotated[Principal, Depends(require(Permission.REFUNDS_WRITE))]
# Endpoints that call a provider: authenticated outside the request transaction.
PaymentWriterNoTx = Annotated[
    Principal, Depends(require_outside_transaction(Permission.PAYMENTS_WRITE))
]
RefunderNoTx = Annotated[Principal, Depends(require_outside_transaction(Permission.REFUNDS_WRITE))]
DatabaseDep = Annotated[Database, Depends(get_database)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


def payment_out(payment: Payment, database: Database | None = None) -> PaymentOut:
    """The payment; with its ledger and refunds when ``database`` is given."""
    out = PaymentOut.model_validate(payment)
    if database is None:
        return out
    with database.read() as session:
        out.transactions = [
            TransactionOut.model_validate(t)
            for t in service.payment_transactions(session, [payment.id])
        ]
        out.refunds = [
            RefundOut.model_validate(r) for r in service.payment_refunds(session, [payment.id])
        ]
    return out


def _sees_free_text(reader: Principal) -> bool:
    # Notes and reasons staff type about a card or a credit may quote the customer.
    return reader.has(Permission.CUSTOMERS_PII)


def gift_card_out(card: GiftCard, reader: Principal | None = None) -> GiftCardOut:
    """The card; without customers:pii (``reader`` given), without its notes."""
    out = _gift_card_out(card)
    if reader is not None and not _sees_free_text(reader):
        out.note = None
    return out


def _gift_card_out(card: GiftCard) -> GiftCardOut:
    return GiftCardOut(
        id=card.id,
        masked_code=balances.masked_code(card),
        last4=card.last4,
        currency=card.currency,
        initial=card.initial,
        balance=card.balance,
        status=card.status,
        expires_at=card.expires_at,
        customer_id=card.customer_id,
        note=card.note,
        created_at=card.created_at,
        updated_at=card.updated_at,
    )


# --- payments -----------------------------------------------------------------------------------


def provider_out(info: service.ProviderInfo) -> ProviderOut:
    return ProviderOut(
        name=info.name,
        refund_last=info.refund_last,
        webhook_path=f"/v1/payments/webhooks/{info.name}",
    )


@api.get("/payments/providers", response_model=PageOut[ProviderOut], tags=["payments"])
def list_providers(principal: Reader) -> PageOut[ProviderOut]:
    """The payment providers this installation has (built in, from a domain or a plug-in),
    and where each posts its events. Secrets are not shown. One page: there are few."""
    return PageOut(items=[provider_out(info) for info in service.provider_infos()])


@api.get("/payments", response_model=PaymentPage, tags=["payments"])
def list_payments(
    session: DbSession,
    page: Pagination,
    principal: Reader,
    reference: Annotated[str | None, Query(max_length=64)] = None,
    status: Annotated[str | None, Query(max_length=20)] = None,
    method: Annotated[str | None, Query(max_length=30)] = None,
    order_id: Annotated[
        int | None, Query(description="Payments of this order (an order number: reference)")
    ] = None,
) -> PaymentPage:
    """Payments, newest first; a declined checkout attempt's payments belong to its own
    ``payment_failed`` order."""
    cursor, limit = page
    result = service.list_payments(
        session,
        reference=reference,
        status=status,
        method=method,
        order_id=order_id,
        cursor=cursor,
        limit=limit,
    )
    return PaymentPage(
        items=[PaymentOut.model_validate(p) for p in result.items], next_cursor=result.next_cursor
    )


@api.get("/payments/{payment_id}", response_model=PaymentOut)
def get_payment(
    payment_id: int, session: DbSession, principal: Reader, database: DatabaseDep
) -> PaymentOut:
    return payment_out(service.get_payment(session, payment_id), database)


@api.post("/payments/{payment_id}/capture", response_model=PaymentOut)
def capture_payment(
    payment_id: int,
    principal: PaymentWriterNoTx,
    database: DatabaseDep,
    key: IdempotencyKey,
    request_id: RequestId,
    body: CaptureIn | None = None,
) -> PaymentOut:
    """Capture all or part of an authorised payment (cash on delivery: record the collection)."""
    payment = service.capture(
        database,
        payment_id,
        body.amount if body else None,
        actor=principal,
        request_key=key,
        request_id=request_id,
    )
    return payment_out(payment, database)


@api.post("/payments/{payment_id}/void", response_model=PaymentOut)
def void_payment(
    payment_id: int,
    principal: PaymentWriterNoTx,
    database: DatabaseDep,
    key: IdempotencyKey,
    request_id: RequestId,
) -> PaymentOut:
    """Release an authorisation or reverse a balance or card-present tender.

    A void is idempotent by nature (voiding a voided payment changes nothing); the
    ``Idempotency-Key`` header is accepted for uniformity.
    """
    payment = service.void(database, payment_id, actor=principal, request_id=request_id)
    return payment_out(payment, database)


@api.post("/payments/{payment_id}/refunds", response_model=RefundOut, status_code=201)
def refund_payment(
    payment_id: int,
    body: RefundIn,
    principal: RefunderNoTx,
    database: DatabaseDep,
    key: IdempotencyKey,
    request_id: RequestId,
) -> RefundOut:
    refund = service.refund(
        database,
        payment_id,
        body.amount,
        reason=body.reason,
        actor=principal,
        request_key=key,
        request_id=request_id,
    )
    return RefundOut.model_validate(refund)


@api.post("/payments/refunds", response_model=list[RefundOut], status_code=201)
def refund_reference(
    body: ReferenceRefundIn,
    principal: RefunderNoTx,
    database: DatabaseDep,
    key: IdempotencyKey,
    request_id: RequestId,
) -> list[RefundOut]:
    """Refund an amount of everything paid for a reference, split over its tenders: money
    tenders before gift cards and store credit, the most recently charged first."""
    refunds = service.refund_reference(
        database,
        body.reference,
        body.amount,
        reason=body.reason,
        actor=principal,
        request_key=key,
        request_id=request_id,
    )
    return [RefundOut.model_validate(r) for r in refunds]


@api.post("/payments/reconcile", response_model=ReconcileOut)
def reconcile(
    principal: PaymentWriterNoTx, database: DatabaseDep, body: ReconcileIn | None = None
) -> ReconcileOut:
    """Complete captures, voids and refunds left pending by a crash or an unreachable
    provider (the provider is asked again with the same idempotency key)."""
    older = timedelta(seconds=(body or ReconcileIn()).older_than_seconds)
    return ReconcileOut(completed=service.reconcile(database, older_than=older))


async def _raw_body(request: Request) -> bytes:
    return await request.body()


@api.post(
    "/payments/webhooks/{provider}",
    response_model=WebhookAck,
    tags=["webhooks"],
    responses=problem_responses(401),
)
def provider_webhook(
    provider: str,
    request: Request,
    session: DbSession,
    settings: SettingsDep,
    database: DatabaseDep,
    raw: Annotated[bytes, Depends(_raw_body)],
) -> WebhookAck:
    """A payment provider's event (3-D Secure completed, capture, refund, chargeback).

    Authenticated by the provider's HMAC-SHA256 signature, not a staff token; each event
    id is applied once however often it is delivered.
    """
    try:
        handler = get_provider(provider, database)
        secret = keys.webhook_secret(provider, instance_keys.secret_key(settings))
        event = handler.parse_webhook(request.headers, raw, secret)
    except (LookupError, WebhooksNotSupported) as exc:
        raise NotFound(f"no webhooks for provider {provider}") from exc
    except InvalidSignature as exc:
        raise Unauthorized(str(exc), code="invalid-signature") from exc
    except InvalidWebhook as exc:
        raise ValidationProblem.field("body", str(exc)) from exc
    return WebhookAck(status=service.apply_webhook(session, provider, event))


# --- gift cards ---------------------------------------------------------------------------------


@api.post("/gift-cards", response_model=IssuedGiftCardOut, status_code=201, tags=["gift cards"])
def issue_gift_card(
    body: GiftCardIn, session: DbSession, principal: GiftCardWriter, key: IdempotencyKey
) -> JSONResponse:
    """Issue a gift card. The full code is in this answer only (and in a retry of it with
    the same ``Idempotency-Key``); afterwards only its last four characters are shown."""
    issued = service.issue_gift_card(
        session,
        principal,
        currency=body.currency,
        amount=body.amount,
        expires_at=body.expires_at,
        customer_id=body.customer_id,
        note=body.note,
        request_key=key,
    )
    out = IssuedGiftCardOut(**gift_card_out(issued.card).model_dump(), code=issued.code)
    headers = {"Idempotent-Replayed": "true"} if issued.replayed else None
    return JSONResponse(out.model_dump(mode="json"), status_code=201, headers=headers)


@api.get("/gift-cards", response_model=GiftCardPage, tags=["gift cards"])
def list_gift_cards(
    session: DbSession,
    page: Pagination,
    principal: Reader,
    status: Annotated[str | None, Query(pattern="^(active|disabled)$")] = None,
    customer_id: int | None = None,
    last4: Annotated[str | None, Query(min_length=4, max_length=4)] = None,
) -> GiftCardPage:
    cursor, limit = page
    result = balances.list_gift_cards(
        session, status=status, customer_id=customer_id, last4=last4, cursor=cursor, limit=limit
    )
    return GiftCardPage(
        items=[gift_card_out(c, principal) for c in result.items], next_cursor=result.next_cursor
    )


@api.get("/gift-cards/{gift_card_id}", response_model=GiftCardOut, tags=["gift cards"])
def get_gift_card(gift_card_id: int, session: DbSession, principal: Reader) -> GiftCardOut:
    out = gift_card_out(service.get_gift_card(session, gift_card_id), principal)
    out.transactions = [
        GiftCardTransactionOut.model_validate(t)
        for t in balances.gift_card_transactions(session, gift_card_id)
    ]
    if not _sees_free_text(principal):
        out.transactions = [t.model_copy(update={"note": None}) for t in out.transactions]
    return out


@api.post("/gift-cards/{gift_card_id}/disable", response_model=GiftCardOut, tags=["gift cards"])
def disable_gift_card(
    gift_card_id: int, session: DbSession, principal: GiftCardWriter
) -> GiftCardOut:
    card = service.set_gift_card_status(session, principal, gift_card_id, "disabled")
    return gift_card_out(card, principal)


@api.post("/gift-cards/{gift_card_id}/enable", response_model=GiftCardOut, tags=["gift cards"])
def enable_gift_card(
    gift_card_id: int, session: DbSession, principal: GiftCardWriter
) -> GiftCardOut:
    card = service.set_gift_card_status(session, principal, gift_card_id, "active")
    return gift_card_out(card, principal)


# --- store credit -------------------------------------------------------------------------------


def _store_credit_out(session: DbSession, customer_id: int) -> StoreCreditOut:
    return StoreCreditOut(
        customer_id=customer_id,
        accounts=[
            StoreCreditAccountOut.model_validate(a)
            for a in service.store_credit_accounts(session, customer_id)
        ],
    )


@api.get("/store-credit/{customer_id}", response_model=StoreCreditOut, tags=["store credit"])
def get_store_credit(customer_id: int, session: DbSession, principal: Reader) -> StoreCreditOut:
    customers.get_customer(session, customer_id)
    return _store_credit_out(session, customer_id)


@api.get(
    "/store-credit/{customer_id}/transactions",
    response_model=StoreCreditTransactionPage,
    tags=["store credit"],
)
def store_credit_transactions(
    customer_id: int, session: DbSession, page: Pagination, principal: Reader
) -> StoreCreditTransactionPage:
    cursor, limit = page
    result = balances.store_credit_transactions(session, customer_id, cursor=cursor, limit=limit)
    items = [StoreCreditTransactionOut.model_validate(t) for t in result.items]
    if not _sees_free_text(principal):
        items = [t.model_copy(update={"reason": None}) for t in items]
    return StoreCreditTransactionPage(items=items, next_cursor=result.next_cursor)


@api.post(
    "/store-credit/{customer_id}/adjustments",
    response_model=StoreCreditTransactionOut,
    status_code=201,
    tags=["store credit"],
)
def adjust_store_credit(
    customer_id: int,
    body: StoreCreditAdjustmentIn,
    session: DbSession,
    principal: CreditWriter,
    key: IdempotencyKey,
) -> JSONResponse:
    """A manual correction (goodwill credit, mistake): audited, never below zero."""

    def run() -> StoreCreditTransactionOut:
        entry: StoreCreditTransaction = service.adjust_store_credit(
            session, principal, customer_id, body.currency, body.amount, body.reason
        )
        return StoreCreditTransactionOut.model_validate(entry)

    scope = scope_for(f"payments.store_credit.{customer_id}", principal)
    return Idempotent(session, scope, key, body).run(run)
