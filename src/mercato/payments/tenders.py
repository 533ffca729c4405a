"""Checkout, step 1: record the tenders (in the checkout's first transaction).

One ``pending`` payment per tender; gift cards and store credit are redeemed right there
with a conditional UPDATE, every other tender waits for its provider
(:mod:`mercato.payments.authorization`). Money taken outside Mercato is recorded as
captured by :func:`record_external_payment`.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy.orm import Session

from mercato.channels import service as channels
from mercato.db import utcnow
from mercato.errors import FieldError, ValidationProblem
from mercato.events import publish
from mercato.payments.balance_tenders import redeem
from mercato.payments.balances import checked_amount, checked_currency
from mercato.payments.event_types import PaymentCaptured
from mercato.payments.models import (
    BALANCE_METHODS,
    Method,
    Payment,
    PaymentStatus,
    TxnKind,
    TxnStatus,
)
from mercato.payments.providers import PaidElsewhere, provider_names
from mercato.payments.records import add_transaction, money_text, payment_facts

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
# The instrument fields of a tender, and the one field each method needs.
_INSTRUMENT_FIELDS = ("token", "gift_card_code", "approval_code")
_NEEDED_FIELD = {
    Method.TEST_GATEWAY.value: "token",
    Method.GIFT_CARD.value: "gift_card_code",
    Method.POS_CARD.value: "approval_code",
}


@dataclass(frozen=True)
class TenderRequest:
    """One way a checkout is paid: ``amount`` by ``method`` with its instrument."""

    method: str
    amount: Decimal
    token: str | None = None  # test_gateway: a card token from the tokenisation endpoint
    gift_card_code: str | None = None
    approval_code: str | None = None  # pos_card: from the store terminal
    location_id: int | None = None  # the store, for POS tenders


def accepted_methods() -> frozenset[str]:
    return provider_names() | BALANCE_METHODS


def _check_method(tender: TenderRequest, at: str, channel_type: str | None) -> None:
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


def _check_instrument(tender: TenderRequest, at: str, customer_id: int | None) -> None:
    """The instrument the method needs is given, and no other."""
    needed = _NEEDED_FIELD.get(tender.method)
    if needed is not None and not getattr(tender, needed):
        raise ValidationProblem.field(f"{at}.{needed}", f"required for {tender.method}")
    for name in _INSTRUMENT_FIELDS:
        if getattr(tender, name) is not None and needed != name:
            raise ValidationProblem.field(f"{at}.{name}", f"not used by {tender.method}")
    if tender.method == Method.STORE_CREDIT.value and customer_id is None:
        raise ValidationProblem.field(f"{at}.method", "store credit needs a signed-in customer")
    code = (tender.approval_code or "").upper()
    if code and not (4 <= len(code) <= 12 and set(code) <= APPROVAL_CODE_CHARS):
        raise ValidationProblem.field(f"{at}.approval_code", "4 to 12 letters or digits")


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
    _check_method(tender, at, channel_type)
    minor = checked_amount(tender.amount, currency, f"{at}.amount")
    _check_instrument(tender, at, customer_id)
    return minor


def _check_total(minors: Sequence[int], total: Decimal, currency: str, field: str) -> None:
    """The tenders add up to ``total`` exactly, or a 422 ``payment-amount-mismatch``."""
    total_minor = 0 if total == 0 else checked_amount(total, currency, "body.total")
    if sum(minors) != total_minor:
        reason = "payment amount does not match the total"
        raise ValidationProblem(
            f"{reason}: the payments add up to {money_text(sum(minors), currency)}, "
            f"the total is {money_text(total_minor, currency)} {currency}",
            errors=[FieldError(field, reason)],
            code="payment-amount-mismatch",
        )


def _client_secret() -> str:
    return f"pcs_{secrets.token_urlsafe(24)}"


def _pending_payment(
    reference: str,
    order_id: int | None,
    position: int,
    tender: TenderRequest,
    minor: int,
    *,
    currency: str,
    customer_id: int | None,
    channel_id: int | None,
    now: datetime,
) -> Payment:
    return Payment(
        reference=reference,
        order_id=order_id,
        position=position,
        method=tender.method,
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
        location_id=tender.location_id,
        card_token=tender.token,
        approval_code=(tender.approval_code or "").upper() or None,
        client_secret=_client_secret(),
        created_at=now,
        updated_at=now,
    )


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
    _check_total(minors, total, currency, field)
    now = utcnow()
    payments = [
        _pending_payment(
            reference,
            order_id,
            i,
            t,
            minor,
            currency=currency,
            customer_id=customer_id,
            channel_id=channel_id,
            now=now,
        )
        for i, (t, minor) in enumerate(zip(tenders, minors, strict=True))
    ]
    session.add_all(payments)
    session.flush()
    for i, (payment, tender) in enumerate(zip(payments, tenders, strict=True)):
        if payment.method in BALANCE_METHODS:
            redeem(session, payment, tender.gift_card_code, f"{field}[{i}]")
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
        client_secret=_client_secret(),
        created_at=now,
        captured_at=now,
        updated_at=now,
    )
    session.add(payment)
    session.flush()
    add_transaction(
        session,
        payment,
        TxnKind.CAPTURE,
        TxnStatus.SUCCEEDED,
        minor,
        provider_reference=payment.provider_reference,
    )
    publish(session, PaymentCaptured(**payment_facts(payment), status=PaymentStatus.CAPTURED.value))
    return payment
