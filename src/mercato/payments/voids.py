"""Voids, and the compensation of a checkout that failed after paying.

A void of a provider's payment follows the A / provider / B pattern: transaction A moves
the payment to ``voiding`` with a compare-and-set and writes a ``pending`` ledger row; the
provider is called with no transaction open; B completes the row
(:mod:`mercato.payments.pending_operations`). A balance tender is voided at once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.auth.service import audit
from mercato.db import Database, utcnow
from mercato.errors import Problem, UnprocessableState
from mercato.events import publish
from mercato.money import from_minor
from mercato.payments.balance_tenders import credit_back
from mercato.payments.event_types import PaymentVoided
from mercato.payments.models import (
    BALANCE_METHODS,
    Method,
    Payment,
    PaymentStatus,
    PaymentTransaction,
    TxnKind,
    TxnStatus,
    refundable_minor,
)
from mercato.payments.pending_operations import call_provider, charge_request, finish
from mercato.payments.problems import PaymentDeclined
from mercato.payments.providers import Outcome
from mercato.payments.reading import get_payment, get_payments
from mercato.payments.records import (
    add_transaction,
    new_provider_key,
    payment_facts,
    read_transaction,
    update_payments,
    write_transaction,
)
from mercato.payments.refunds import refund

# Every payments use case logs under the domain's one name, whichever module it lives in.
log = logging.getLogger("mercato.payments.service")

POS_METHODS = frozenset({Method.POS_CASH.value, Method.POS_CARD.value})
# A payment in these states holds no money: voiding it only releases an authorisation.
UNCAPTURED = (
    PaymentStatus.PENDING.value,
    PaymentStatus.REQUIRES_ACTION.value,
    PaymentStatus.AUTHORIZED.value,
    PaymentStatus.FAILED.value,
)


# --- compensation ---------------------------------------------------------------------------------


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
    with read_transaction(database) as session:
        return get_payments(session, payment_ids)


def _compensate(
    database: Database, payment_id: int, actor: Principal, request_id: str | None
) -> None:
    with read_transaction(database) as session:
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


# --- voids ----------------------------------------------------------------------------------------


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
    with write_transaction(database, request_id) as session:
        payment = get_payment(session, payment_id)
        if payment.status == PaymentStatus.VOIDED.value:
            return payment
        if payment.method in BALANCE_METHODS:
            return _void_balance(session, payment, who)
        txn = _begin_void(session, payment, who)
        request = charge_request(payment, txn)
        method = payment.method
    result = call_provider(database, method, "void", request)
    with write_transaction(database, request_id) as session:
        finish(session, txn.id, result)
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
        update_payments()
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
    credit_back(session, payment, minor, "void", actor)
    add_transaction(session, payment, TxnKind.VOID, TxnStatus.SUCCEEDED, minor, actor=actor)
    audit(session, actor, "payment.voided", "payment", payment.id, {"reference": payment.reference})
    payment = get_payment(session, payment.id)
    publish(session, PaymentVoided(**payment_facts(payment)))
    return payment


def _check_voidable(payment: Payment) -> bool:
    """Whether the void reverses a card-present sale; a 409 when the payment cannot be voided."""
    reversal = payment.method in POS_METHODS and payment.status == PaymentStatus.CAPTURED.value
    if payment.status not in UNCAPTURED and not reversal:
        raise UnprocessableState(
            f"payment {payment.id} is {payment.status}: "
            + ("refund it instead" if payment.captured_minor else "nothing to void")
        )
    if payment.capture_pending_minor or payment.refund_pending_minor or payment.refunded_minor:
        raise UnprocessableState(f"payment {payment.id} has captures or refunds under way")
    return reversal


def _begin_void(session: Session, payment: Payment, actor: Principal) -> PaymentTransaction:
    """Transaction A of a void: compare-and-set the status to ``voiding``."""
    before = payment.status
    reversal = _check_voidable(payment)
    done = session.execute(
        update_payments()
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
    txn = add_transaction(
        session,
        payment,
        TxnKind.VOID,
        TxnStatus.PENDING,
        minor,
        provider_key=new_provider_key("void"),
        actor=actor,
        detail={"from": before},
    )
    session.flush()
    audit(session, actor, "payment.void_requested", "payment", payment.id, {"from": before})
    return txn
