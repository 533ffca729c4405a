"""Payment use cases, split at every provider call into explicit transactions.

No database transaction or lock is ever held while a provider is called:

* **Checkout** calls, in order: :func:`create_payments` inside its first transaction (one
  ``pending`` payment per tender; gift cards and store credit are redeemed right there with
  a conditional UPDATE), :func:`authorize_pending` with no transaction open (provider
  calls only, nothing written), :func:`record_outcomes` inside its second transaction, and
  :func:`void_payments` to compensate when the checkout fails after paying.
* **Capture, void and refund** (:func:`capture`, :func:`void`, :func:`refund`,
  :func:`refund_reference`) follow one pattern. Transaction A writes a ``pending`` ledger
  transaction and reserves the amount with a conditional UPDATE
  (``captured + capture_pending + :amount <= authorized``,
  ``refunded + refund_pending + charged_back + :amount <= captured``) and commits; the
  provider is called with no transaction open, with an idempotency key stored on the
  ledger row; transaction B marks the ledger row succeeded (moving the reserved amount into
  ``captured``/``refunded``) or failed (giving the reservation back).

**Reconciliation.** A crash, or a provider that cannot be reached, between A and B leaves a
visible ``pending`` ledger row with its amount still reserved: nothing can over-capture or
over-refund meanwhile. :func:`reconcile` finds pending rows older than a few minutes and
calls the provider again with the *same* idempotency key (the provider answers with the
first result, or performs the operation once if it never got it), then runs B. The
provider's webhook for the same operation carries that key too, so whichever arrives
first completes the row and the other finds nothing left to do; a retry of the request
with the same ``Idempotency-Key`` also asks the provider again. Operations run
:func:`reconcile` from a scheduler through ``POST /v1/payments/reconcile`` (it must run
with no transaction open, so it is not an in-process periodic job, which gets a session).

**Refunding a split tender** (:func:`split_refund`): money tenders (cards, cash, cash on
delivery) are refunded before balance tenders (gift card, store credit), and within each
group the most recently charged tender first; no tender gets more than it still has
captured and not refunded, and a refund larger than the total refundable is refused. A
shopper who paid part with a gift card and part by card and returns one item gets money
back on the card first: consumer rules in many markets require that money paid is refunded
as money unless the customer agrees otherwise, and it is also what shoppers expect.
Store credit is never chosen automatically; a refund "to store credit" is an explicit
:func:`credit_store` by the returns process.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import Update, case, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.auth.service import audit
from mercato.channels import service as channels
from mercato.db import Database, utcnow
from mercato.errors import (
    Conflict,
    FieldError,
    NotFound,
    Problem,
    UnprocessableState,
    ValidationProblem,
)
from mercato.events import publish
from mercato.idempotency import claim, lookup, request_fingerprint, scope_for
from mercato.money import check_precision, from_minor, to_minor
from mercato.pagination import Page, decode_id_cursor, page_of
from mercato.payments import balances
from mercato.payments.balances import (  # re-exported: the public API of the domain
    GiftCardNotUsable,
    InsufficientBalance,
    IssuedGiftCard,
    adjust_store_credit,
    checked_amount,
    checked_currency,
    credit_store,
    find_usable_gift_card,
    get_gift_card,
    issue_gift_card,
    set_gift_card_status,
    store_credit_accounts,
    store_credit_balance,
)
from mercato.payments.models import (
    BALANCE_METHODS,
    Method,
    Payment,
    PaymentStatus,
    PaymentTransaction,
    ProviderWebhookReceipt,
    Refund,
    TxnKind,
    TxnStatus,
    refundable_minor,
)
from mercato.payments.providers import (
    ActionRequest,
    AuthorizeRequest,
    ChargeRequest,
    Outcome,
    PaidElsewhere,
    ProviderResult,
    ProviderUnavailable,
    WebhookEvent,
    WebhookKind,
    get_provider,
    provider_names,
    refund_last_methods,
)

__all__ = [
    "GiftCardNotUsable",
    "InsufficientBalance",
    "IssuedGiftCard",
    "adjust_store_credit",
    "credit_store",
    "find_usable_gift_card",
    "get_gift_card",
    "issue_gift_card",
    "set_gift_card_status",
    "store_credit_accounts",
    "store_credit_balance",
]

log = logging.getLogger(__name__)

POS_METHODS = frozenset({Method.POS_CASH.value, Method.POS_CARD.value})
# Providers that only record money taken elsewhere (imported orders): accepting one as a
# tender would confirm an order nobody paid for.
RECORD_ONLY_METHODS = frozenset({PaidElsewhere.name})
# Which channel types accept a method; a method not listed is accepted everywhere.
CHANNEL_TYPES = {
    Method.POS_CASH.value: frozenset({"pos"}),
    Method.POS_CARD.value: frozenset({"pos"}),
    Method.CASH_ON_DELIVERY.value: frozenset({"web", "app", "marketplace", "call_centre"}),
}
APPROVAL_CODE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
CAPTURABLE = (
    PaymentStatus.AUTHORIZED.value,
    PaymentStatus.PARTIALLY_CAPTURED.value,
    PaymentStatus.PARTIALLY_REFUNDED.value,
    PaymentStatus.REFUNDED.value,
)
# A payment in these states holds no money: voiding it only releases an authorisation.
UNCAPTURED = (
    PaymentStatus.PENDING.value,
    PaymentStatus.REQUIRES_ACTION.value,
    PaymentStatus.AUTHORIZED.value,
    PaymentStatus.FAILED.value,
)
RECONCILE_AFTER = timedelta(minutes=5)


class PaymentDeclined(Problem):
    status = 402
    code = "payment-declined"
    title = "The payment provider refused the operation"


def decline_details(tenders: Sequence[Payment]) -> dict[str, Any]:
    """Why payments were refused, for a 402: ``provider_code`` (the provider's reason code
    of the first refused tender, e.g. ``card_declined``, ``insufficient_points``) and
    ``declines``, one entry per refused tender."""
    refused = [
        p
        for p in tenders
        if p.status in (PaymentStatus.DECLINED.value, PaymentStatus.FAILED.value)
    ]
    return {
        "provider_code": refused[0].failure_code if refused else None,
        "declines": [
            {
                "payment_id": p.id,
                "method": p.method,
                "status": p.status,
                "provider_code": p.failure_code,
                "message": p.failure_message,
            }
            for p in refused
        ],
    }


class ProviderUnavailableProblem(Problem):
    status = 503
    code = "provider-unavailable"
    title = "The payment provider could not be reached"


@dataclass(frozen=True)
class TenderRequest:
    """One way a checkout is paid: ``amount`` by ``method`` with its instrument."""

    method: str
    amount: Decimal
    token: str | None = None  # test_gateway: a card token from the tokenisation endpoint
    gift_card_code: str | None = None
    approval_code: str | None = None  # pos_card: from the store terminal
    location_id: int | None = None  # the store, for POS tenders


@dataclass(frozen=True)
class ProviderOutcome:
    """A provider's answer to an authorisation, not yet recorded."""

    payment_id: int
    result: ProviderResult

    @property
    def status(self) -> str:
        return self.result.outcome.value


# --- small helpers ------------------------------------------------------------------------------


@contextmanager
def _transaction(database: Database, request_id: str | None) -> Iterator[Session]:
    with database.transaction() as session:
        session.info["request_id"] = request_id
        yield session


@contextmanager
def _reading(database: Database) -> Iterator[Session]:
    """A read transaction whose objects stay usable afterwards (a rollback would expire them)."""
    with database.read() as session:
        yield session
        session.expunge_all()


def _new_key(kind: str) -> str:
    return f"mercato-{kind}-{secrets.token_hex(12)}"


def authorization_key(payment_id: int) -> str:
    """The idempotency key of a payment's authorisation: a retry never charges twice."""
    return f"mercato-payment-{payment_id}-authorize"


def _money(minor: int, currency: str) -> str:
    return str(from_minor(minor, currency))


def _actor_fields(actor: Principal | None) -> dict[str, str | None]:
    if actor is None:
        return {"actor_type": None, "actor_id": None}
    return {"actor_type": actor.kind, "actor_id": None if actor.id is None else str(actor.id)}


def _publish(session: Session, type_: str, payment: Payment, **data: Any) -> None:
    publish(
        session,
        type_,
        {
            "payment_id": payment.id,
            "reference": payment.reference,
            "order_id": payment.order_id,
            "method": payment.method,
            "currency": payment.currency,
            "amount": _money(payment.amount_minor, payment.currency),
            **data,
        },
        aggregate_type="payment",
        aggregate_id=payment.id,
    )


def _update_payments() -> Update:
    """UPDATE payments; in-session objects are re-read with ``get_payment`` afterwards."""
    return update(Payment).execution_options(synchronize_session=False)


def _status_after(captured_delta: Any = 0, refunded_delta: Any = 0) -> Any:
    """The money status computed in SQL from the amounts the same UPDATE writes."""
    captured = Payment.captured_minor + captured_delta
    refunded = Payment.refunded_minor + refunded_delta
    return case(
        (captured == 0, PaymentStatus.AUTHORIZED.value),
        (refunded >= captured, PaymentStatus.REFUNDED.value),
        (refunded > 0, PaymentStatus.PARTIALLY_REFUNDED.value),
        (captured >= Payment.authorized_minor, PaymentStatus.CAPTURED.value),
        else_=PaymentStatus.PARTIALLY_CAPTURED.value,
    )


# --- reading ------------------------------------------------------------------------------------


def get_payment(session: Session, payment_id: int) -> Payment:
    payment = session.get(Payment, payment_id, populate_existing=True)
    if payment is None:
        raise NotFound(f"payment {payment_id} not found")
    return payment


def payments_for_reference(session: Session, reference: str) -> list[Payment]:
    return list(
        session.scalars(
            select(Payment)
            .where(Payment.reference == reference)
            .order_by(Payment.position, Payment.id)
            .execution_options(populate_existing=True)
        )
    )


# Money still taken or held for a payment: what a failed checkout must give back. A
# ``voiding`` payment is already with its provider (``reconcile`` finishes it); a partly
# refunded one was settled by hand and is left to staff.
UNSETTLED = frozenset(
    {
        PaymentStatus.PENDING.value,
        PaymentStatus.REQUIRES_ACTION.value,
        PaymentStatus.AUTHORIZED.value,
        PaymentStatus.PARTIALLY_CAPTURED.value,
        PaymentStatus.CAPTURED.value,
    }
)


def unsettled_for_references(session: Session, references: Sequence[str]) -> list[Payment]:
    """Payments of these references that still take or hold money, in one statement."""
    if not references:
        return []
    return list(
        session.scalars(
            select(Payment)
            .where(Payment.reference.in_(sorted(set(references))))
            .where(Payment.status.in_(sorted(UNSETTLED)))
            .order_by(Payment.id)
        )
    )


def list_payments(
    session: Session,
    *,
    reference: str | None,
    status: str | None,
    method: str | None,
    cursor: str | None,
    limit: int,
    order_id: int | None = None,
) -> Page[Payment]:
    query = select(Payment).order_by(Payment.id.desc())
    if reference is not None:
        query = query.where(Payment.reference == reference)
    if order_id is not None:
        query = query.where(Payment.order_id == order_id)
    if status is not None:
        query = query.where(Payment.status == status)
    if method is not None:
        query = query.where(Payment.method == method)
    after = decode_id_cursor(cursor)
    if after is not None:
        query = query.where(Payment.id < after)
    return page_of(list(session.scalars(query.limit(limit + 1))), limit, key=lambda p: p.id)


@dataclass(frozen=True)
class ReferenceTotals:
    """Where the money of one reference (an order) stands, over all its tenders."""

    currency: str
    amount: Decimal
    authorized: Decimal
    captured: Decimal
    refunded: Decimal
    refundable: Decimal
    pending: bool  # a tender still waits for its provider or the shopper


def totals_for_reference(session: Session, reference: str) -> ReferenceTotals | None:
    payments = [
        p
        for p in payments_for_reference(session, reference)
        if p.status
        not in (
            PaymentStatus.DECLINED.value,
            PaymentStatus.FAILED.value,
            PaymentStatus.VOIDED.value,
        )
    ]
    if not payments:
        return None
    currency = payments[0].currency

    def total(minors: Sequence[int]) -> Decimal:
        return from_minor(sum(minors), currency)

    waiting = (PaymentStatus.PENDING.value, PaymentStatus.REQUIRES_ACTION.value)
    return ReferenceTotals(
        currency=currency,
        amount=total([p.amount_minor for p in payments]),
        authorized=total([p.authorized_minor for p in payments]),
        captured=total([p.captured_minor for p in payments]),
        refunded=total([p.refunded_minor for p in payments]),
        refundable=total([refundable_minor(p) for p in payments]),
        pending=any(p.status in waiting for p in payments),
    )


def payment_transactions(session: Session, payment_ids: Sequence[int]) -> list[PaymentTransaction]:
    return list(
        session.scalars(
            select(PaymentTransaction)
            .where(PaymentTransaction.payment_id.in_(list(payment_ids)))
            .order_by(PaymentTransaction.id)
            .execution_options(populate_existing=True)
        )
    )


def payment_refunds(session: Session, payment_ids: Sequence[int]) -> list[Refund]:
    return list(
        session.scalars(
            select(Refund)
            .where(Refund.payment_id.in_(list(payment_ids)))
            .order_by(Refund.id)
            .execution_options(populate_existing=True)
        )
    )


def get_refunds(session: Session, refund_ids: Sequence[int]) -> list[Refund]:
    return list(
        session.scalars(
            select(Refund)
            .where(Refund.id.in_(list(refund_ids)))
            .order_by(Refund.id)
            .execution_options(populate_existing=True)
        )
    )


def get_payments(session: Session, payment_ids: Sequence[int]) -> list[Payment]:
    """The payments with these ids, in tender order."""
    return _fetch_payments(session, payment_ids)


def _fetch_payments(session: Session, payment_ids: Sequence[int]) -> list[Payment]:
    return list(
        session.scalars(
            select(Payment)
            .where(Payment.id.in_(list(payment_ids)))
            .order_by(Payment.position, Payment.id)
            .execution_options(populate_existing=True)
        )
    )


# --- 1. checkout: record the tenders --------------------------------------------------------------


def accepted_methods() -> frozenset[str]:
    return provider_names() | BALANCE_METHODS


def _check_tender(
    tender: TenderRequest,
    i: int,
    field: str,
    *,
    currency: str,
    channel_type: str | None,
    customer_id: int | None,
) -> int:
    """The tender's amount in minor units, or a 422 naming the offending field."""
    at = f"{field}[{i}]"
    if tender.method not in accepted_methods():
        raise ValidationProblem.field(f"{at}.method", "unknown payment method")
    if tender.method in RECORD_ONLY_METHODS:
        raise ValidationProblem.field(
            f"{at}.method", f"{tender.method} records money taken outside Mercato: not a tender"
        )
    allowed = CHANNEL_TYPES.get(tender.method)
    if allowed is not None and channel_type is not None and channel_type not in allowed:
        raise ValidationProblem.field(
            f"{at}.method", f"{tender.method} is not accepted in a {channel_type} channel"
        )
    minor = checked_amount(tender.amount, currency, f"{at}.amount")
    needs = {
        Method.TEST_GATEWAY.value: ("token", tender.token),
        Method.GIFT_CARD.value: ("gift_card_code", tender.gift_card_code),
        Method.POS_CARD.value: ("approval_code", tender.approval_code),
    }.get(tender.method)
    if needs is not None and not needs[1]:
        raise ValidationProblem.field(f"{at}.{needs[0]}", f"required for {tender.method}")
    for name in ("token", "gift_card_code", "approval_code"):
        if getattr(tender, name) is not None and (needs is None or needs[0] != name):
            raise ValidationProblem.field(f"{at}.{name}", f"not used by {tender.method}")
    if tender.method == Method.STORE_CREDIT.value and customer_id is None:
        raise ValidationProblem.field(f"{at}.method", "store credit needs a signed-in customer")
    code = (tender.approval_code or "").upper()
    if code and not (4 <= len(code) <= 12 and set(code) <= APPROVAL_CODE_CHARS):
        raise ValidationProblem.field(f"{at}.approval_code", "4 to 12 letters or digits")
    return minor


def create_payments(
    session: Session,
    *,
    reference: str,
    customer_id: int | None,
    channel_id: int | None,
    currency: str,
    total: Decimal,
    tenders: Sequence[TenderRequest],
    field: str = "body.payments",
    channel_type: str | None = None,
    order_id: int | None = None,
) -> list[Payment]:
    """Record one ``pending`` payment per tender (in the caller's transaction).

    The tenders must add up to ``total`` exactly. Gift cards and store credit are redeemed
    here, so two checkouts can never spend the same balance twice; every other tender waits
    for :func:`authorize_pending`. Raises (and writes nothing the caller would keep) on any
    invalid tender, an unusable gift card or an insufficient balance. ``channel_type``
    (web, pos...) saves looking the channel up when the caller knows it; ``order_id`` is
    the order whose number ``reference`` is.
    """
    currency = checked_currency(currency, "body.currency")
    if not 1 <= len(reference) <= 64:
        raise ValidationProblem.field("body.reference", "1 to 64 characters")
    if channel_type is None and channel_id is not None:
        channel_type = channels.get_channel(session, channel_id).type
    minors = [
        _check_tender(
            t, i, field, currency=currency, channel_type=channel_type, customer_id=customer_id
        )
        for i, t in enumerate(tenders)
    ]
    total_minor = 0 if total == 0 else checked_amount(total, currency, "body.total")
    if sum(minors) != total_minor:
        reason = "payment amount does not match the total"
        raise ValidationProblem(
            f"{reason}: the payments add up to {_money(sum(minors), currency)}, "
            f"the total is {_money(total_minor, currency)} {currency}",
            errors=[FieldError(field, reason)],
            code="payment-amount-mismatch",
        )
    now = utcnow()
    payments = [
        Payment(
            reference=reference,
            order_id=order_id,
            position=i,
            method=t.method,
            status=PaymentStatus.PENDING.value,
            currency=currency,
            amount_minor=minor,
            authorized_minor=0,
            captured_minor=0,
            capture_pending_minor=0,
            refunded_minor=0,
            refund_pending_minor=0,
            charged_back_minor=0,
            customer_id=customer_id,
            channel_id=channel_id,
            location_id=t.location_id,
            card_token=t.token,
            approval_code=(t.approval_code or "").upper() or None,
            client_secret=f"pcs_{secrets.token_urlsafe(24)}",
            created_at=now,
            updated_at=now,
        )
        for i, (t, minor) in enumerate(zip(tenders, minors, strict=True))
    ]
    session.add_all(payments)
    session.flush()
    for i, (payment, tender) in enumerate(zip(payments, tenders, strict=True)):
        if payment.method in BALANCE_METHODS:
            _redeem(session, payment, tender, f"{field}[{i}]")
    return payments


def record_external_payment(
    session: Session,
    *,
    reference: str,
    customer_id: int | None,
    channel_id: int | None,
    currency: str,
    amount: Decimal,
    external_reference: str,
    order_id: int | None = None,
) -> Payment:
    """Money taken outside Mercato (a marketplace, an ERP): recorded as captured by the
    ``paid_elsewhere`` method so the order's totals, captures and refunds add up."""
    minor = checked_amount(amount, currency, "body.amount")
    now = utcnow()
    payment = Payment(
        reference=reference,
        order_id=order_id,
        position=0,
        method="paid_elsewhere",
        status=PaymentStatus.CAPTURED.value,
        currency=currency,
        amount_minor=minor,
        authorized_minor=minor,
        captured_minor=minor,
        capture_pending_minor=0,
        refunded_minor=0,
        refund_pending_minor=0,
        charged_back_minor=0,
        customer_id=customer_id,
        channel_id=channel_id,
        provider_reference=f"external:{external_reference}"[:100],
        client_secret=f"pcs_{secrets.token_urlsafe(24)}",
        created_at=now,
        captured_at=now,
        updated_at=now,
    )
    session.add(payment)
    session.flush()
    _ledger(
        session,
        payment,
        TxnKind.CAPTURE,
        TxnStatus.SUCCEEDED,
        minor,
        provider_reference=payment.provider_reference,
    )
    _publish(session, "payment.captured", payment, status=PaymentStatus.CAPTURED.value)
    return payment


def _redeem(session: Session, payment: Payment, tender: TenderRequest, at: str) -> None:
    """Take a balance tender's amount now; the payment is then authorised and captured."""
    if payment.method == Method.GIFT_CARD.value:
        card_id, last4 = balances.redeem_gift_card(
            session,
            tender.gift_card_code or "",
            payment.currency,
            payment.amount_minor,
            payment_id=payment.id,
            reference=payment.reference,
            field=f"{at}.gift_card_code",
        )
        payment.gift_card_id = card_id
        payment.card_last4 = last4
    else:
        entry = balances.debit_store_credit(
            session,
            payment.customer_id or 0,
            payment.currency,
            payment.amount_minor,
            payment_id=payment.id,
            reference=payment.reference,
            field=f"{at}.amount",
        )
        payment.store_credit_account_id = entry.account_id
    payment.status = PaymentStatus.CAPTURED.value
    payment.authorized_minor = payment.captured_minor = payment.amount_minor
    payment.captured_at = utcnow()
    payment.provider_reference = f"{payment.method}_{payment.id}"
    for kind in (TxnKind.AUTHORIZE, TxnKind.CAPTURE):
        _ledger(session, payment, kind, TxnStatus.SUCCEEDED, payment.amount_minor)
    _publish(
        session,
        "payment.captured",
        payment,
        captured=_money(payment.amount_minor, payment.currency),
    )


def _ledger(
    session: Session,
    payment: Payment,
    kind: TxnKind,
    status: TxnStatus,
    minor: int,
    *,
    provider_key: str | None = None,
    provider_reference: str | None = None,
    refund_id: int | None = None,
    actor: Principal | None = None,
    failure: tuple[str | None, str | None] = (None, None),
    detail: dict[str, Any] | None = None,
) -> PaymentTransaction:
    now = utcnow()
    txn = PaymentTransaction(
        payment_id=payment.id,
        kind=kind.value,
        status=status.value,
        currency=payment.currency,
        amount_minor=minor,
        refund_id=refund_id,
        provider_key=provider_key,
        provider_reference=provider_reference,
        failure_code=(failure[0] or "")[:50] or None,
        failure_message=(failure[1] or "")[:300] or None,
        detail=detail or {},
        created_at=now,
        completed_at=None if status is TxnStatus.PENDING else now,
        **_actor_fields(actor),
    )
    session.add(txn)
    return txn


# --- 2. checkout: ask the providers (no transaction open) -----------------------------------------


def authorize_pending(
    database: Database, payment_ids: Sequence[int], *, known: Sequence[Payment] | None = None
) -> list[ProviderOutcome]:
    """Call the provider of every pending payment among ``payment_ids``; write nothing.

    Must be called with no transaction open. Each call carries :func:`authorization_key`,
    so calling this again for the same payments (a retried checkout) gets the same answers
    and never a second charge. ``known`` are the rows just committed by the caller (as
    ``create_payments`` returned them), which saves reading them again.
    """
    if known is not None and {p.id for p in known} == set(payment_ids):
        pending = [
            p
            for p in known
            if p.status == PaymentStatus.PENDING.value and p.method not in BALANCE_METHODS
        ]
        return [
            ProviderOutcome(p.id, _call_authorize(database, p.method, _authorize_request(p)))
            for p in sorted(pending, key=lambda p: (p.position, p.id))
        ]
    with _reading(database) as session:
        rows = session.scalars(
            select(Payment)
            .where(
                Payment.id.in_(list(payment_ids)),
                Payment.status == PaymentStatus.PENDING.value,
                Payment.method.not_in(sorted(BALANCE_METHODS)),
            )
            .order_by(Payment.position, Payment.id)
        ).all()
        requests = [(p.method, _authorize_request(p)) for p in rows]
    return [
        ProviderOutcome(request.payment_id, _call_authorize(database, method, request))
        for method, request in requests
    ]


def _authorize_request(p: Payment) -> AuthorizeRequest:
    return AuthorizeRequest(
        payment_id=p.id,
        reference=p.reference,
        amount=p.amount,
        currency=p.currency,
        idempotency_key=authorization_key(p.id),
        token=p.card_token,
        approval_code=p.approval_code,
        customer_id=p.customer_id,
    )


def _call_authorize(database: Database, method: str, request: AuthorizeRequest) -> ProviderResult:
    try:
        return get_provider(method, database).authorize(request)
    except ProviderUnavailable as exc:
        return ProviderResult(Outcome.FAILED, code="provider_unavailable", message=str(exc))
    except Exception as exc:  # a provider's bug must not leave the checkout uncompensated
        log.exception("payment provider %s failed to authorise payment %s", method, request)
        return ProviderResult(Outcome.FAILED, code="provider_error", message=repr(exc))


# --- 3. checkout: record the answers --------------------------------------------------------------

_AUTH_STATUS = {
    Outcome.AUTHORIZED: PaymentStatus.AUTHORIZED,
    Outcome.CAPTURED: PaymentStatus.CAPTURED,
    Outcome.REQUIRES_ACTION: PaymentStatus.REQUIRES_ACTION,
    Outcome.DECLINED: PaymentStatus.DECLINED,
    Outcome.FAILED: PaymentStatus.FAILED,
}


def record_outcomes(session: Session, outcomes: Sequence[ProviderOutcome]) -> list[Payment]:
    """Apply providers' answers to pending payments (in the caller's transaction).

    A payment that is no longer pending (recorded already, by a retry or a webhook) is left
    as it is, so recording the same outcomes twice changes nothing the second time.
    """
    changed = {
        payment.id: payment
        for outcome in outcomes
        if (
            payment := _apply_authorization(
                session, outcome.payment_id, outcome.result, PaymentStatus.PENDING
            )
        )
        is not None
    }
    if len(changed) == len(outcomes):
        return [changed[o.payment_id] for o in outcomes]
    return _fetch_payments(session, [o.payment_id for o in outcomes])


def _apply_authorization(
    session: Session, payment_id: int, result: ProviderResult, from_status: PaymentStatus
) -> Payment | None:
    """The payment as recorded, or None when it had left ``from_status`` already."""
    status = _AUTH_STATUS.get(result.outcome, PaymentStatus.FAILED)
    holds = status in (PaymentStatus.AUTHORIZED, PaymentStatus.CAPTURED)
    captured = status is PaymentStatus.CAPTURED
    failed = status in (PaymentStatus.DECLINED, PaymentStatus.FAILED)
    now = utcnow()
    values: dict[str, Any] = {
        "status": status.value,
        "authorized_minor": Payment.amount_minor if holds else 0,
        "captured_minor": Payment.amount_minor if captured else 0,
        "action_url": result.action_url,
        "failure_code": ((result.code or "")[:50] or None) if failed else None,
        "failure_message": ((result.message or "")[:300] or None) if failed else None,
        "updated_at": now,
    }
    if captured:
        values["captured_at"] = now
    for name in ("provider_reference", "card_brand", "card_last4", "approval_code"):
        if getattr(result, name):
            values[name] = getattr(result, name)
    payment = session.scalars(
        _update_payments()
        .where(Payment.id == payment_id, Payment.status == from_status.value)
        .values(values)
        .returning(Payment)
        .execution_options(populate_existing=True)
    ).one_or_none()
    if payment is None:
        return None
    txn_status = {
        PaymentStatus.REQUIRES_ACTION: TxnStatus.REQUIRES_ACTION,
        PaymentStatus.DECLINED: TxnStatus.FAILED,
        PaymentStatus.FAILED: TxnStatus.FAILED,
    }.get(status, TxnStatus.SUCCEEDED)
    key, charge = authorization_key(payment_id), payment.provider_reference
    _ledger(
        session,
        payment,
        TxnKind.AUTHORIZE,
        txn_status,
        payment.amount_minor,
        provider_key=key,
        provider_reference=charge,
        failure=(result.code, result.message) if failed else (None, None),
    )
    if captured:
        _ledger(
            session,
            payment,
            TxnKind.CAPTURE,
            TxnStatus.SUCCEEDED,
            payment.amount_minor,
            provider_key=key,
            provider_reference=charge,
        )
    extra: dict[str, Any] = {"status": status.value}
    if failed:
        extra["failure_code"] = result.code
    if status is PaymentStatus.REQUIRES_ACTION:
        extra["action_url"] = result.action_url
    _publish(session, f"payment.{status.value}", payment, **extra)
    return payment


def complete_action(
    database: Database,
    payment_id: int,
    *,
    channel_id: int | None,
    client_secret: str,
    data: Mapping[str, Any] | None = None,
) -> Payment:
    """The shopper finished the provider's action (3-D Secure): ask the provider, record.

    Only the channel the payment was made in, holding the payment's ``client_secret``,
    may complete it; anyone else gets a 404 as if the payment did not exist.
    """
    with _reading(database) as session:
        payment = get_payment(session, payment_id)
        if payment.channel_id != channel_id or not hmac.compare_digest(
            payment.client_secret.encode(), client_secret.encode()
        ):
            raise NotFound(f"payment {payment_id} not found")
        if payment.status != PaymentStatus.REQUIRES_ACTION.value:
            if payment.status in (PaymentStatus.AUTHORIZED.value, PaymentStatus.DECLINED.value):
                return payment  # completed already (a retry, or the provider's webhook)
            raise UnprocessableState(
                f"payment {payment_id} is {payment.status}, not requires_action"
            )
        request = ActionRequest(
            payment_id=payment.id,
            provider_reference=payment.provider_reference or "",
            idempotency_key=f"mercato-payment-{payment.id}-action",
            data=dict(data or {}),
        )
        method = payment.method
    try:
        result = get_provider(method, database).complete_action(request)
    except ProviderUnavailable as exc:
        raise ProviderUnavailableProblem(str(exc)) from exc
    with database.transaction() as session:
        if result.outcome in (Outcome.AUTHORIZED, Outcome.DECLINED, Outcome.FAILED):
            _apply_authorization(session, payment_id, result, PaymentStatus.REQUIRES_ACTION)
        return get_payment(session, payment_id)


# --- 4. compensation and voids --------------------------------------------------------------------


def void_payments(
    database: Database,
    payment_ids: Sequence[int],
    *,
    actor: Principal | None = None,
    request_id: str | None = None,
) -> list[Payment]:
    """Undo the payments of a checkout that failed after paying (no transaction open).

    Authorisations are released, balance tenders go back to their gift card or store
    credit through the ledger, card-present payments are reversed, and a payment already
    captured at a gateway is refunded in full. Payments already voided or declined are left
    alone, so compensating twice is harmless. A provider that cannot be reached leaves its
    void ``pending`` for :func:`reconcile` rather than stopping the other voids.
    """
    who = actor or Principal.system("payments")
    for payment_id in payment_ids:
        try:
            _compensate(database, payment_id, who, request_id)
        except Problem as exc:  # one payment's trouble must not stop the others' voids
            log.warning("compensation of payment %s: %s (%s)", payment_id, exc.detail, exc.code)
    with _reading(database) as session:
        return _fetch_payments(session, payment_ids)


def _compensate(
    database: Database, payment_id: int, actor: Principal, request_id: str | None
) -> None:
    with _reading(database) as session:
        payment = get_payment(session, payment_id)
    if payment.status in (PaymentStatus.VOIDED.value, PaymentStatus.DECLINED.value):
        return
    gateway_captured = (
        payment.method not in BALANCE_METHODS | POS_METHODS and payment.captured_minor > 0
    )
    if gateway_captured:
        left = refundable_minor(payment)
        if left > 0:
            refund(
                database,
                payment_id,
                from_minor(left, payment.currency),
                reason="checkout failed",
                actor=actor,
                request_id=request_id,
            )
        return
    void(database, payment_id, actor=actor, request_id=request_id)


def void(
    database: Database,
    payment_id: int,
    *,
    actor: Principal | None = None,
    request_id: str | None = None,
) -> Payment:
    """Cancel a payment before settlement. Naturally idempotent: voiding a voided payment
    returns it unchanged.

    An uncaptured authorisation is released at the provider; a balance tender gets its
    amount back on the card or account; a card-present (POS) payment is reversed. A payment
    captured at a gateway, or one with refunds, cannot be voided: refund it instead.
    """
    who = actor or Principal.system("payments")
    with _transaction(database, request_id) as session:
        payment = get_payment(session, payment_id)
        if payment.status == PaymentStatus.VOIDED.value:
            return payment
        if payment.method in BALANCE_METHODS:
            return _void_balance(session, payment, who)
        txn = _begin_void(session, payment, who)
        request = _charge_request(payment, txn)
        method = payment.method
    result = _call(database, method, "void", request)
    with _transaction(database, request_id) as session:
        _finish(session, txn.id, result)
        payment = get_payment(session, payment_id)
    if result.outcome is not Outcome.SUCCEEDED:
        raise PaymentDeclined(
            result.message or f"the provider refused the void ({result.code})",
            extra={"provider_code": result.code},
        )
    return payment


def _void_balance(session: Session, payment: Payment, actor: Principal) -> Payment:
    minor = payment.captured_minor
    done = session.execute(
        _update_payments()
        .where(
            Payment.id == payment.id,
            Payment.status == PaymentStatus.CAPTURED.value,
            Payment.refunded_minor == 0,
            Payment.refund_pending_minor == 0,
            Payment.charged_back_minor == 0,
        )
        .values(status=PaymentStatus.VOIDED.value, captured_minor=0, updated_at=utcnow())
        .returning(Payment.id)
    ).one_or_none()
    if done is None:
        raise UnprocessableState(
            f"payment {payment.id} is {payment.status} or has refunds: refund it instead"
        )
    _credit_back(session, payment, minor, "void", actor)
    _ledger(session, payment, TxnKind.VOID, TxnStatus.SUCCEEDED, minor, actor=actor)
    audit(session, actor, "payment.voided", "payment", payment.id, {"reference": payment.reference})
    payment = get_payment(session, payment.id)
    _publish(session, "payment.voided", payment)
    return payment


def _credit_back(
    session: Session, payment: Payment, minor: int, kind: str, actor: Principal | None
) -> None:
    if payment.gift_card_id is not None:
        balances.credit_gift_card(
            session,
            payment.gift_card_id,
            minor,
            kind,
            payment_id=payment.id,
            reference=payment.reference,
            actor=actor,
        )
    elif payment.store_credit_account_id is not None:
        balances.credit_store_account(
            session,
            payment.store_credit_account_id,
            minor,
            kind,
            payment_id=payment.id,
            reference=payment.reference,
            actor=actor,
        )


def _begin_void(session: Session, payment: Payment, actor: Principal) -> PaymentTransaction:
    """Transaction A of a void: compare-and-set the status to ``voiding``."""
    before = payment.status
    reversal = payment.method in POS_METHODS and before == PaymentStatus.CAPTURED.value
    if before not in UNCAPTURED and not reversal:
        raise UnprocessableState(
            f"payment {payment.id} is {before}: "
            + ("refund it instead" if payment.captured_minor else "nothing to void")
        )
    if payment.capture_pending_minor or payment.refund_pending_minor or payment.refunded_minor:
        raise UnprocessableState(f"payment {payment.id} has captures or refunds under way")
    done = session.execute(
        _update_payments()
        .where(
            Payment.id == payment.id,
            Payment.status == before,
            Payment.capture_pending_minor == 0,
            Payment.refund_pending_minor == 0,
            Payment.refunded_minor == 0,
        )
        .values(status=PaymentStatus.VOIDING.value, updated_at=utcnow())
        .returning(Payment.id)
    ).one_or_none()
    if done is None:
        raise UnprocessableState(f"payment {payment.id} changed meanwhile; retry")
    minor = payment.captured_minor if reversal else payment.amount_minor
    txn = _ledger(
        session,
        payment,
        TxnKind.VOID,
        TxnStatus.PENDING,
        minor,
        provider_key=_new_key("void"),
        actor=actor,
        detail={"from": before},
    )
    session.flush()
    audit(session, actor, "payment.void_requested", "payment", payment.id, {"from": before})
    return txn


def _charge_request(payment: Payment, txn: PaymentTransaction) -> ChargeRequest:
    return ChargeRequest(
        payment_id=payment.id,
        amount=from_minor(txn.amount_minor, payment.currency),
        currency=payment.currency,
        idempotency_key=txn.provider_key or "",
        provider_reference=payment.provider_reference,
        authorization_key=authorization_key(payment.id),
    )


def _call(
    database: Database, method: str, operation: str, request: ChargeRequest
) -> ProviderResult:
    """One provider call with no transaction open; an unknown outcome leaves B undone."""
    provider = get_provider(method, database)
    call = {"capture": provider.capture, "void": provider.void, "refund": provider.refund}[
        operation
    ]
    try:
        return call(request)
    except ProviderUnavailable as exc:
        raise ProviderUnavailableProblem(
            f"the {operation} is recorded as pending and will be reconciled: {exc}"
        ) from exc


# --- transaction B: complete a pending ledger row -------------------------------------------------


def _finish(session: Session, txn_id: int, result: ProviderResult) -> bool:
    """Mark a pending capture/void/refund succeeded or failed and move its reservation.

    The ledger row is claimed with a compare-and-set (pending -> final) first, so the
    answer of the provider call and the provider's webhook cannot both be applied.
    """
    ok = result.outcome is Outcome.SUCCEEDED
    final = TxnStatus.SUCCEEDED if ok else TxnStatus.FAILED
    claimed = session.execute(
        update(PaymentTransaction)
        .where(
            PaymentTransaction.id == txn_id, PaymentTransaction.status == TxnStatus.PENDING.value
        )
        .values(
            status=final.value,
            completed_at=utcnow(),
            provider_reference=result.transaction_reference
            or PaymentTransaction.provider_reference,
            failure_code=None if ok else (result.code or "")[:50] or None,
            failure_message=None if ok else (result.message or "")[:300] or None,
        )
        .returning(
            PaymentTransaction.kind,
            PaymentTransaction.amount_minor,
            PaymentTransaction.payment_id,
            PaymentTransaction.refund_id,
            PaymentTransaction.detail,
        )
    ).one_or_none()
    if claimed is None:
        return False
    kind, minor, payment_id, refund_id, detail = claimed
    if kind == TxnKind.CAPTURE.value:
        _finish_capture(session, payment_id, minor, ok, result)
    elif kind == TxnKind.VOID.value:
        _finish_void(session, payment_id, ok, result, detail)
    else:
        _finish_refund(session, payment_id, minor, ok, result, refund_id)
    return True


def _finish_capture(
    session: Session, payment_id: int, minor: int, ok: bool, result: ProviderResult
) -> None:
    values: dict[str, Any] = {
        "capture_pending_minor": Payment.capture_pending_minor - minor,
        "updated_at": utcnow(),
    }
    if ok:
        values.update(
            captured_minor=Payment.captured_minor + minor,
            status=_status_after(captured_delta=minor),
            captured_at=utcnow(),
        )
    session.execute(_update_payments().where(Payment.id == payment_id).values(values))
    payment = get_payment(session, payment_id)
    if ok:
        _publish(session, "payment.captured", payment, captured=_money(minor, payment.currency))
    else:
        _publish(
            session,
            "payment.capture_failed",
            payment,
            failure_code=result.code,
            requested=_money(minor, payment.currency),
        )


def _finish_void(
    session: Session, payment_id: int, ok: bool, result: ProviderResult, detail: dict[str, Any]
) -> None:
    if ok:
        # A reversed card-present sale holds no money any more.
        values: dict[str, Any] = {"status": PaymentStatus.VOIDED.value, "captured_minor": 0}
    else:
        values = {"status": detail.get("from", PaymentStatus.AUTHORIZED.value)}
    session.execute(
        _update_payments()
        .where(Payment.id == payment_id, Payment.status == PaymentStatus.VOIDING.value)
        .values(updated_at=utcnow(), **values)
    )
    payment = get_payment(session, payment_id)
    _publish(
        session,
        "payment.voided" if ok else "payment.void_failed",
        payment,
        failure_code=None if ok else result.code,
    )


def _finish_refund(
    session: Session,
    payment_id: int,
    minor: int,
    ok: bool,
    result: ProviderResult,
    refund_id: int | None,
) -> None:
    values: dict[str, Any] = {
        "refund_pending_minor": Payment.refund_pending_minor - minor,
        "updated_at": utcnow(),
    }
    if ok:
        values.update(
            refunded_minor=Payment.refunded_minor + minor,
            status=_status_after(refunded_delta=minor),
        )
    session.execute(_update_payments().where(Payment.id == payment_id).values(values))
    if refund_id is not None:
        session.execute(
            update(Refund)
            .where(Refund.id == refund_id)
            .values(
                status=TxnStatus.SUCCEEDED.value if ok else TxnStatus.FAILED.value,
                completed_at=utcnow(),
                provider_reference=result.transaction_reference,
                failure_code=None if ok else (result.code or "")[:50] or None,
                failure_message=None if ok else (result.message or "")[:300] or None,
            )
        )
    payment = get_payment(session, payment_id)
    _publish(
        session,
        "payment.refunded" if ok else "payment.refund_failed",
        payment,
        refund_id=refund_id,
        refunded=_money(minor, payment.currency),
        failure_code=None if ok else result.code,
    )


# --- 5. capture -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _RequestKey:
    scope: str
    key: str
    fingerprint: str


def _request_key(
    operation: str, actor: Principal, key: str | None, payload: Any
) -> _RequestKey | None:
    if key is None:
        return None
    return _RequestKey(scope_for(operation, actor), key, request_fingerprint(payload))


def _replayed(session: Session, rk: _RequestKey | None) -> dict[str, Any] | None:
    if rk is None:
        return None
    record = lookup(session, rk.scope, rk.key, rk.fingerprint)
    return None if record is None else dict(record.response)


def _remember(session: Session, rk: _RequestKey | None, pointer: dict[str, Any]) -> None:
    """Store, with the effect, what a retry of the same request must be answered with."""
    if rk is None:
        return
    record = claim(session, rk.scope, rk.key, rk.fingerprint)
    record.status_code = 201
    record.response = pointer


def _amount_field(amount: Decimal, currency: str, field: str) -> int:
    return checked_amount(amount, currency, field)


def capture(
    database: Database,
    payment_id: int,
    amount: Decimal | None = None,
    *,
    actor: Principal | None = None,
    request_key: str | None = None,
    request_id: str | None = None,
) -> Payment:
    """Capture ``amount`` (default: all that is left) of an authorised payment.

    Several partial captures are allowed (split shipments) up to the authorised amount.
    A capture beyond it is a 422 naming ``body.amount``; a provider refusal a 402 after the
    failed attempt is recorded; an unreachable provider a 503 with the capture pending.
    """
    who = actor or Principal.system("payments")
    rk = _request_key(
        f"payments.capture.{payment_id}",
        who,
        request_key,
        {"amount": None if amount is None else str(amount)},
    )
    with _transaction(database, request_id) as session:
        payment = get_payment(session, payment_id)
        replay = _replayed(session, rk)
        if replay is None:
            txn = _begin_capture(session, payment, amount, who)
            _remember(session, rk, {"transaction_id": txn.id})
        else:
            txn = session.get_one(PaymentTransaction, int(replay["transaction_id"]))
            if txn.status != TxnStatus.PENDING.value:
                return _answer(session, payment_id, txn.id)
        # A retry of a capture still pending asks the provider again, with the same key.
        request, method = _charge_request(payment, txn), payment.method
    result = _call(database, method, "capture", request)
    with _transaction(database, request_id) as session:
        _finish(session, txn.id, result)
    # Answered after B committed: a refusal is raised only once it is recorded.
    with _reading(database) as session:
        return _answer(session, payment_id, txn.id)


def _begin_capture(
    session: Session, payment: Payment, amount: Decimal | None, actor: Principal
) -> PaymentTransaction:
    if payment.method in BALANCE_METHODS or payment.status not in CAPTURABLE:
        raise UnprocessableState(f"payment {payment.id} is {payment.status}: nothing to capture")
    left = payment.authorized_minor - payment.captured_minor - payment.capture_pending_minor
    minor = left if amount is None else _amount_field(amount, payment.currency, "body.amount")
    if minor <= 0:
        raise UnprocessableState(f"payment {payment.id} has nothing left to capture")
    reserved = session.execute(
        _update_payments()
        .where(
            Payment.id == payment.id,
            Payment.status.in_(CAPTURABLE),
            Payment.captured_minor + Payment.capture_pending_minor + minor
            <= Payment.authorized_minor,
        )
        .values(capture_pending_minor=Payment.capture_pending_minor + minor, updated_at=utcnow())
        .returning(Payment.id)
    ).one_or_none()
    if reserved is None:
        fresh = get_payment(session, payment.id)
        still = fresh.authorized_minor - fresh.captured_minor - fresh.capture_pending_minor
        raise ValidationProblem.field(
            "body.amount",
            "exceeds the amount left to capture "
            f"({_money(max(still, 0), payment.currency)} {payment.currency})",
        )
    txn = _ledger(
        session,
        payment,
        TxnKind.CAPTURE,
        TxnStatus.PENDING,
        minor,
        provider_key=_new_key("capture"),
        actor=actor,
    )
    session.flush()
    audit(
        session,
        actor,
        "payment.capture_requested",
        "payment",
        payment.id,
        {"amount": _money(minor, payment.currency)},
    )
    return txn


def _answer(session: Session, payment_id: int, txn_id: int) -> Payment:
    """The payment after one of its operations; a refused operation is raised as a 402."""
    txn = session.get_one(PaymentTransaction, txn_id, populate_existing=True)
    if txn.status == TxnStatus.FAILED.value:
        raise PaymentDeclined(
            txn.failure_message or f"the provider refused the {txn.kind} ({txn.failure_code})",
            extra={"provider_code": txn.failure_code, "transaction_id": txn.id},
        )
    return get_payment(session, payment_id)


# --- 5. refunds -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RefundSource:
    """What one tender can still give back, and how recently it was charged."""

    payment_id: int
    refundable_minor: int
    balance_tender: bool
    charged_at: datetime | None


def refund_order(sources: Sequence[RefundSource]) -> list[RefundSource]:
    """Money tenders before balance tenders; within each, the most recently charged first."""
    return sorted(
        sources,
        key=lambda s: (
            s.balance_tender,
            -(s.charged_at.timestamp() if s.charged_at else 0.0),
            -s.payment_id,
        ),
    )


def split_refund(amount_minor: int, sources: Sequence[RefundSource]) -> list[tuple[int, int]]:
    """``(payment_id, minor)`` parts that sum to ``amount_minor``; none exceeds its tender's
    refundable amount. ValueError when the tenders cannot cover it."""
    if amount_minor <= 0:
        raise ValueError("a refund must be greater than zero")
    left = amount_minor
    parts = []
    for source in refund_order(sources):
        if left == 0:
            break
        take = min(left, source.refundable_minor)
        if take > 0:
            parts.append((source.payment_id, take))
            left -= take
    if left:
        raise ValueError("the refund exceeds what was captured and not yet refunded")
    return parts


def allocate_refund(
    amount: Decimal, currency: str, sources: Sequence[RefundSource]
) -> list[tuple[int, Decimal]]:
    """:func:`split_refund` in the currency's unit: ``(payment_id, amount)`` parts."""
    minor = to_minor(check_precision(amount, currency), currency)
    return [(pid, from_minor(part, currency)) for pid, part in split_refund(minor, sources)]


def refund(
    database: Database,
    payment_id: int,
    amount: Decimal,
    *,
    reason: str | None = None,
    actor: Principal | None = None,
    request_key: str | None = None,
    request_id: str | None = None,
) -> Refund:
    """Refund ``amount`` of one payment; more than it has captured and not refunded is a 422.

    A balance tender is refunded to its gift card or store credit at once; other methods
    through their provider (A / provider / B, see the module notes). A refusal by the
    provider is a 402 after the failed refund is recorded.
    """
    who = actor or Principal.system("payments")
    rk = _request_key(
        f"payments.refund.{payment_id}", who, request_key, {"amount": str(amount), "reason": reason}
    )
    with _transaction(database, request_id) as session:
        payment = get_payment(session, payment_id)
        replay = _replayed(session, rk)
        if replay is not None:
            refunds = get_refunds(session, replay["refund_ids"])
        else:
            minor = _amount_field(amount, payment.currency, "body.amount")
            refunds = _begin_refunds(session, [(payment, minor)], reason, who, split=False)
            _remember(session, rk, {"refund_ids": [r.id for r in refunds]})
    refunds = _drive_refunds(database, refunds, request_id)
    done = refunds[0]
    if done.status == TxnStatus.FAILED.value:
        raise PaymentDeclined(
            done.failure_message or f"the provider refused the refund ({done.failure_code})",
            extra={"provider_code": done.failure_code, "refund_id": done.id},
        )
    return done


def refund_reference(
    database: Database,
    reference: str,
    amount: Decimal,
    *,
    reason: str | None = None,
    actor: Principal | None = None,
    request_key: str | None = None,
    request_id: str | None = None,
) -> list[Refund]:
    """Refund ``amount`` of everything paid for ``reference``, split over its tenders by
    :func:`split_refund`. Returns one refund per tender touched, each ``succeeded``,
    ``failed`` (refused by its provider) or ``pending`` (provider unreachable; reconciled
    later)."""
    who = actor or Principal.system("payments")
    rk = _request_key(
        f"payments.refund.{reference}", who, request_key, {"amount": str(amount), "reason": reason}
    )
    with _transaction(database, request_id) as session:
        replay = _replayed(session, rk)
        if replay is not None:
            refunds = get_refunds(session, replay["refund_ids"])
        else:
            parts = _split_for(session, reference, amount)
            refunds = _begin_refunds(session, parts, reason, who, split=True)
            _remember(session, rk, {"refund_ids": [r.id for r in refunds]})
    return _drive_refunds(database, refunds, request_id)


def _split_for(session: Session, reference: str, amount: Decimal) -> list[tuple[Payment, int]]:
    payments = payments_for_reference(session, reference)
    if not payments:
        raise NotFound(f"no payments for {reference}")
    currencies = {p.currency for p in payments}
    if len(currencies) != 1:
        raise UnprocessableState(f"{reference} was paid in several currencies; refund each payment")
    currency = currencies.pop()
    minor = _amount_field(amount, currency, "body.amount")
    last = BALANCE_METHODS | refund_last_methods()
    sources = [
        RefundSource(p.id, refundable_minor(p), p.method in last, p.captured_at) for p in payments
    ]
    try:
        parts = split_refund(minor, sources)
    except ValueError as exc:
        available = _money(sum(s.refundable_minor for s in sources), currency)
        raise ValidationProblem.field(
            "body.amount", f"{exc} ({available} {currency} refundable)"
        ) from exc
    by_id = {p.id: p for p in payments}
    return [(by_id[pid], part) for pid, part in parts]


def _reserve_refund(session: Session, payment: Payment, minor: int, *, split: bool) -> None:
    reserved = session.execute(
        _update_payments()
        .where(
            Payment.id == payment.id,
            Payment.status.not_in((PaymentStatus.VOIDED.value, PaymentStatus.VOIDING.value)),
            Payment.refunded_minor
            + Payment.refund_pending_minor
            + Payment.charged_back_minor
            + minor
            <= Payment.captured_minor,
        )
        .values(refund_pending_minor=Payment.refund_pending_minor + minor, updated_at=utcnow())
        .returning(Payment.id)
    ).one_or_none()
    if reserved is not None:
        return
    if split:
        # The split was computed from amounts another refund changed since: retry.
        raise Conflict(
            f"the payments of {payment.reference} changed meanwhile; retry the refund",
            code="concurrent-refund",
        )
    fresh = get_payment(session, payment.id)
    raise ValidationProblem.field(
        "body.amount",
        f"exceeds what payment {payment.id} can refund "
        f"({_money(refundable_minor(fresh), payment.currency)} {payment.currency})",
    )


def _begin_refunds(
    session: Session,
    parts: Sequence[tuple[Payment, int]],
    reason: str | None,
    actor: Principal,
    *,
    split: bool,
) -> list[Refund]:
    """Transaction A: reserve every part (all or none), record refunds and pending rows.

    Balance tenders are completed here as well: their "provider" is this database.
    """
    refunds = []
    for payment, minor in parts:
        _reserve_refund(session, payment, minor, split=split)
        refund_row = Refund(
            payment_id=payment.id,
            reference=payment.reference,
            method=payment.method,
            currency=payment.currency,
            amount_minor=minor,
            status=TxnStatus.PENDING.value,
            reason=reason,
            created_at=utcnow(),
        )
        session.add(refund_row)
        session.flush()
        txn = _ledger(
            session,
            payment,
            TxnKind.REFUND,
            TxnStatus.PENDING,
            minor,
            provider_key=_new_key("refund"),
            refund_id=refund_row.id,
            actor=actor,
        )
        session.flush()
        if payment.method in BALANCE_METHODS:
            _credit_back(session, payment, minor, "refund", actor)
            done = ProviderResult(
                Outcome.SUCCEEDED, payment.provider_reference, f"{payment.method}_refund_{txn.id}"
            )
            _finish(session, txn.id, done)
        refunds.append(refund_row)
    audit(
        session,
        actor,
        "payment.refund_requested",
        "payment_reference",
        parts[0][0].reference if parts else None,
        {"refunds": {str(p.id): _money(m, p.currency) for p, m in parts}, "reason": reason},
    )
    return refunds


def _drive_refunds(
    database: Database, refunds: Sequence[Refund], request_id: str | None
) -> list[Refund]:
    """Provider calls for the pending refunds (no transaction open), then B for each."""
    ids = [r.id for r in refunds]
    with _reading(database) as session:
        pending = [
            (txn, get_payment(session, txn.payment_id))
            for txn in session.scalars(
                select(PaymentTransaction).where(
                    PaymentTransaction.refund_id.in_(ids),
                    PaymentTransaction.status == TxnStatus.PENDING.value,
                )
            )
        ]
    for txn, payment in pending:
        try:
            result = _call(database, payment.method, "refund", _charge_request(payment, txn))
        except ProviderUnavailableProblem:
            continue  # stays pending, amount reserved, until reconcile() completes it
        with _transaction(database, request_id) as session:
            _finish(session, txn.id, result)
    with _reading(database) as session:
        return get_refunds(session, ids)


# --- webhooks ---------------------------------------------------------------------------------


WebhookOutcome = Literal["applied", "duplicate", "ignored"]


def apply_webhook(session: Session, provider: str, event: WebhookEvent) -> WebhookOutcome:
    """Apply a verified provider event once; ``applied``, ``duplicate`` or ``ignored``."""
    maker = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    # A concurrent delivery of the same event waits on this row and then inserts nothing.
    first = session.execute(
        maker(ProviderWebhookReceipt)
        .values(
            provider=provider,
            event_id=event.event_id,
            type=event.type,
            outcome="received",
            received_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["provider", "event_id"])
        .returning(ProviderWebhookReceipt.event_id)
    ).one_or_none()
    if first is None:
        return "duplicate"
    payment = session.scalar(
        select(Payment).where(
            Payment.method == provider, Payment.provider_reference == event.provider_reference
        )
    )
    applied = payment is not None and _apply_event(session, payment, event)
    outcome: WebhookOutcome = "applied" if applied else "ignored"
    session.execute(
        update(ProviderWebhookReceipt)
        .where(
            ProviderWebhookReceipt.provider == provider,
            ProviderWebhookReceipt.event_id == event.event_id,
        )
        .values(outcome=outcome, payment_id=payment.id if payment is not None else None)
    )
    return outcome


def _apply_event(session: Session, payment: Payment, event: WebhookEvent) -> bool:
    if event.kind in (WebhookKind.ACTION_COMPLETED, WebhookKind.ACTION_FAILED):
        ok = event.kind is WebhookKind.ACTION_COMPLETED
        result = ProviderResult(
            Outcome.AUTHORIZED if ok else Outcome.DECLINED,
            payment.provider_reference,
            code=None if ok else "authentication_failed",
            message=None if ok else "3-D Secure authentication failed",
        )
        recorded = _apply_authorization(session, payment.id, result, PaymentStatus.REQUIRES_ACTION)
        return recorded is not None
    txn_id = _known_transaction(session, payment.id, event)
    if txn_id is not None:
        # An operation Mercato started: the webhook may complete it before B does, or
        # after, in which case there is nothing left to do.
        result = ProviderResult(
            Outcome.SUCCEEDED, payment.provider_reference, event.transaction_reference
        )
        return _finish(session, txn_id, result)
    if event.amount is None or (event.currency or payment.currency).upper() != payment.currency:
        return False
    try:
        minor = to_minor(check_precision(event.amount, payment.currency), payment.currency)
    except ValueError:
        return False
    if minor <= 0:
        return False
    if event.kind is WebhookKind.CAPTURED:
        return _external_capture(session, payment, minor, event)
    if event.kind is WebhookKind.REFUNDED:
        return _external_refund(session, payment, minor, event)
    return _chargeback(session, payment, minor, event)


def _known_transaction(session: Session, payment_id: int, event: WebhookEvent) -> int | None:
    """The ledger row of this event's operation, matched by our key or the provider's id."""
    matches = []
    if event.transaction_key:
        matches.append(PaymentTransaction.provider_key == event.transaction_key)
    if event.transaction_reference:
        matches.append(PaymentTransaction.provider_reference == event.transaction_reference)
    if not matches:
        return None
    kind = {WebhookKind.CAPTURED: TxnKind.CAPTURE, WebhookKind.REFUNDED: TxnKind.REFUND}.get(
        event.kind, TxnKind.CHARGEBACK
    )
    return session.scalar(
        select(PaymentTransaction.id)
        .where(
            PaymentTransaction.payment_id == payment_id,
            PaymentTransaction.kind == kind.value,
            or_(*matches),
        )
        .limit(1)
    )


def _external_capture(session: Session, payment: Payment, minor: int, event: WebhookEvent) -> bool:
    """A capture made at the provider (its dashboard), not through Mercato."""
    done = session.execute(
        _update_payments()
        .where(
            Payment.id == payment.id,
            Payment.status.in_(CAPTURABLE),
            Payment.captured_minor + Payment.capture_pending_minor + minor
            <= Payment.authorized_minor,
        )
        .values(
            captured_minor=Payment.captured_minor + minor,
            status=_status_after(captured_delta=minor),
            captured_at=utcnow(),
            updated_at=utcnow(),
        )
        .returning(Payment.id)
    ).one_or_none()
    if done is None:
        return False
    _ledger(
        session,
        payment,
        TxnKind.CAPTURE,
        TxnStatus.SUCCEEDED,
        minor,
        provider_reference=event.transaction_reference,
        detail={"webhook": event.event_id},
    )
    _publish(
        session,
        "payment.captured",
        get_payment(session, payment.id),
        captured=_money(minor, payment.currency),
    )
    return True


def _external_refund(session: Session, payment: Payment, minor: int, event: WebhookEvent) -> bool:
    done = session.execute(
        _update_payments()
        .where(
            Payment.id == payment.id,
            Payment.status.not_in((PaymentStatus.VOIDED.value, PaymentStatus.VOIDING.value)),
            Payment.refunded_minor
            + Payment.refund_pending_minor
            + Payment.charged_back_minor
            + minor
            <= Payment.captured_minor,
        )
        .values(
            refunded_minor=Payment.refunded_minor + minor,
            status=_status_after(refunded_delta=minor),
            updated_at=utcnow(),
        )
        .returning(Payment.id)
    ).one_or_none()
    if done is None:
        return False
    refund_row = Refund(
        payment_id=payment.id,
        reference=payment.reference,
        method=payment.method,
        currency=payment.currency,
        amount_minor=minor,
        status=TxnStatus.SUCCEEDED.value,
        reason=event.reason or "refunded at the provider",
        provider_reference=event.transaction_reference,
        created_at=utcnow(),
        completed_at=utcnow(),
    )
    session.add(refund_row)
    session.flush()
    _ledger(
        session,
        payment,
        TxnKind.REFUND,
        TxnStatus.SUCCEEDED,
        minor,
        provider_reference=event.transaction_reference,
        refund_id=refund_row.id,
        detail={"webhook": event.event_id},
    )
    _publish(
        session,
        "payment.refunded",
        get_payment(session, payment.id),
        refund_id=refund_row.id,
        refunded=_money(minor, payment.currency),
    )
    return True


def _chargeback(session: Session, payment: Payment, minor: int, event: WebhookEvent) -> bool:
    """The cardholder's bank took the money back: it can no longer be refunded."""
    done = session.execute(
        _update_payments()
        .where(
            Payment.id == payment.id,
            Payment.refunded_minor
            + Payment.refund_pending_minor
            + Payment.charged_back_minor
            + minor
            <= Payment.captured_minor,
        )
        .values(charged_back_minor=Payment.charged_back_minor + minor, updated_at=utcnow())
        .returning(Payment.id)
    ).one_or_none()
    if done is None:
        return False
    _ledger(
        session,
        payment,
        TxnKind.CHARGEBACK,
        TxnStatus.SUCCEEDED,
        minor,
        provider_reference=event.transaction_reference,
        detail={"webhook": event.event_id, "reason": event.reason},
    )
    _publish(
        session,
        "payment.charged_back",
        get_payment(session, payment.id),
        charged_back=_money(minor, payment.currency),
        reason=event.reason,
    )
    return True


# --- reconciliation ----------------------------------------------------------------------------


def pending_transactions(
    session: Session, older_than: timedelta = RECONCILE_AFTER
) -> list[PaymentTransaction]:
    """Captures, voids and refunds still waiting for their provider's answer."""
    return list(
        session.scalars(
            select(PaymentTransaction)
            .where(
                PaymentTransaction.status == TxnStatus.PENDING.value,
                PaymentTransaction.kind.in_(
                    (TxnKind.CAPTURE.value, TxnKind.VOID.value, TxnKind.REFUND.value)
                ),
                PaymentTransaction.created_at <= utcnow() - older_than,
            )
            .order_by(PaymentTransaction.id)
        )
    )


def reconcile(
    database: Database, *, older_than: timedelta = RECONCILE_AFTER, limit: int = 100
) -> int:
    """Complete pending ledger rows by asking the provider again with the same key.

    Safe to run in several processes at once: the provider answers a repeated key with the
    first result, and B claims the row with a compare-and-set. Returns how many rows were
    completed.
    """
    with _reading(database) as session:
        work = [
            (txn, get_payment(session, txn.payment_id))
            for txn in pending_transactions(session, older_than)[:limit]
        ]
    done = 0
    for txn, payment in work:
        try:
            result = _call(database, payment.method, txn.kind, _charge_request(payment, txn))
        except ProviderUnavailableProblem:
            continue
        with database.transaction() as session:
            done += _finish(session, txn.id, result)
    return done
