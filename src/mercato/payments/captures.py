"""Capturing authorised payments, in part or in full (split shipments).

Transaction A reserves the amount with a conditional UPDATE
(``captured + capture_pending + :amount <= authorized``) and writes a ``pending`` ledger
row; the provider is called with no transaction open; transaction B completes the row
(:mod:`mercato.payments.pending_operations`).
"""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.auth.service import audit
from mercato.db import Database, utcnow
from mercato.errors import UnprocessableState, ValidationProblem
from mercato.payments.balances import checked_amount
from mercato.payments.models import (
    BALANCE_METHODS,
    Payment,
    PaymentTransaction,
    TxnKind,
    TxnStatus,
)
from mercato.payments.pending_operations import call_provider, charge_request, finish
from mercato.payments.problems import PaymentDeclined
from mercato.payments.reading import get_payment
from mercato.payments.records import (
    CAPTURABLE,
    add_transaction,
    capture_fits,
    money_text,
    new_provider_key,
    read_transaction,
    update_payments,
    write_transaction,
)
from mercato.payments.request_keys import remember, replayed, request_key_for


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
    rk = request_key_for(
        f"payments.capture.{payment_id}",
        who,
        request_key,
        {"amount": None if amount is None else str(amount)},
    )
    with write_transaction(database, request_id) as session:
        payment = get_payment(session, payment_id)
        replay = replayed(session, rk)
        if replay is None:
            txn = _begin_capture(session, payment, amount, who)
            remember(session, rk, {"transaction_id": txn.id})
        else:
            txn = session.get_one(PaymentTransaction, int(replay["transaction_id"]))
            if txn.status != TxnStatus.PENDING.value:
                return _answer(session, payment_id, txn.id)
        # A retry of a capture still pending asks the provider again, with the same key.
        request, method = charge_request(payment, txn), payment.method
    result = call_provider(database, method, "capture", request)
    with write_transaction(database, request_id) as session:
        finish(session, txn.id, result)
    # Answered after B committed: a refusal is raised only once it is recorded.
    with read_transaction(database) as session:
        return _answer(session, payment_id, txn.id)


def _begin_capture(
    session: Session, payment: Payment, amount: Decimal | None, actor: Principal
) -> PaymentTransaction:
    """Transaction A of a capture: reserve the amount, write the pending ledger row."""
    minor = _capture_amount(payment, amount)
    _reserve_capture(session, payment, minor)
    txn = add_transaction(
        session,
        payment,
        TxnKind.CAPTURE,
        TxnStatus.PENDING,
        minor,
        provider_key=new_provider_key("capture"),
        actor=actor,
    )
    session.flush()
    audit(
        session,
        actor,
        "payment.capture_requested",
        "payment",
        payment.id,
        {"amount": money_text(minor, payment.currency)},
    )
    return txn


def _capture_amount(payment: Payment, amount: Decimal | None) -> int:
    """The amount to capture in minor units; all that is left when none is given."""
    if payment.method in BALANCE_METHODS or payment.status not in CAPTURABLE:
        raise UnprocessableState(f"payment {payment.id} is {payment.status}: nothing to capture")
    left = payment.authorized_minor - payment.captured_minor - payment.capture_pending_minor
    minor = left if amount is None else checked_amount(amount, payment.currency, "body.amount")
    if minor <= 0:
        raise UnprocessableState(f"payment {payment.id} has nothing left to capture")
    return minor


def _reserve_capture(session: Session, payment: Payment, minor: int) -> None:
    """Reserve ``minor`` of the authorisation, or a 422 saying how much is left."""
    reserved = session.execute(
        update_payments()
        .where(Payment.id == payment.id, Payment.status.in_(CAPTURABLE), capture_fits(minor))
        .values(capture_pending_minor=Payment.capture_pending_minor + minor, updated_at=utcnow())
        .returning(Payment.id)
    ).one_or_none()
    if reserved is not None:
        return
    fresh = get_payment(session, payment.id)
    still = fresh.authorized_minor - fresh.captured_minor - fresh.capture_pending_minor
    raise ValidationProblem.field(
        "body.amount",
        "exceeds the amount left to capture "
        f"({money_text(max(still, 0), payment.currency)} {payment.currency})",
    )


def _answer(session: Session, payment_id: int, txn_id: int) -> Payment:
    """The payment after one of its operations; a refused operation is raised as a 402."""
    txn = session.get_one(PaymentTransaction, txn_id, populate_existing=True)
    if txn.status == TxnStatus.FAILED.value:
        raise PaymentDeclined(
            txn.failure_message or f"the provider refused the {txn.kind} ({txn.failure_code})",
            extra={"provider_code": txn.failure_code, "transaction_id": txn.id},
        )
    return get_payment(session, payment_id)
