"""Writing payments and their ledger: the pieces every payment use case shares.

Payments are changed with conditional UPDATEs (:func:`update_payments` and the room
conditions :func:`capture_fits` and :func:`refund_fits`), each change of money gets a
ledger row (:func:`add_transaction`) and an event carrying :func:`payment_facts`.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import ColumnElement, Update, case, update
from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.db import Database, utcnow
from mercato.money import from_minor
from mercato.payments.models import (
    Payment,
    PaymentStatus,
    PaymentTransaction,
    TxnKind,
    TxnStatus,
)

# A payment in these states has an authorisation that can still be captured.
CAPTURABLE = (
    PaymentStatus.AUTHORIZED.value,
    PaymentStatus.PARTIALLY_CAPTURED.value,
    PaymentStatus.PARTIALLY_REFUNDED.value,
    PaymentStatus.REFUNDED.value,
)
# A payment in these states can no longer be refunded: it holds no money.
VOIDED_OR_VOIDING = (PaymentStatus.VOIDED.value, PaymentStatus.VOIDING.value)


@contextmanager
def write_transaction(database: Database, request_id: str | None) -> Iterator[Session]:
    """A write transaction whose audit entries and events carry the request's id."""
    with database.transaction() as session:
        session.info["request_id"] = request_id
        yield session


@contextmanager
def read_transaction(database: Database) -> Iterator[Session]:
    """A read transaction whose objects stay usable afterwards (a rollback would expire them)."""
    with database.read() as session:
        yield session
        session.expunge_all()


def new_provider_key(kind: str) -> str:
    """A fresh idempotency key for one provider operation, stored on its ledger row."""
    return f"mercato-{kind}-{secrets.token_hex(12)}"


def authorization_key(payment_id: int) -> str:
    """The idempotency key of a payment's authorisation: a retry never charges twice."""
    return f"mercato-payment-{payment_id}-authorize"


def money_text(minor: int, currency: str) -> str:
    return str(from_minor(minor, currency))


def actor_fields(actor: Principal | None) -> dict[str, str | None]:
    if actor is None:
        return {"actor_type": None, "actor_id": None}
    return {"actor_type": actor.kind, "actor_id": None if actor.id is None else str(actor.id)}


def payment_facts(payment: Payment) -> dict[str, Any]:
    """The fields every payment event carries (``PaymentFacts`` in ``event_types``)."""
    return {
        "payment_id": payment.id,
        "reference": payment.reference,
        "order_id": payment.order_id,
        "method": payment.method,
        "currency": payment.currency,
        "amount": from_minor(payment.amount_minor, payment.currency),
    }


def update_payments() -> Update:
    """UPDATE payments; in-session objects are re-read with ``get_payment`` afterwards."""
    return update(Payment).execution_options(synchronize_session=False)


def status_after(captured_delta: Any = 0, refunded_delta: Any = 0) -> Any:
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


def capture_fits(minor: int) -> ColumnElement[bool]:
    """SQL: ``minor`` more can be captured without exceeding the authorised amount."""
    return (
        Payment.captured_minor + Payment.capture_pending_minor + minor <= Payment.authorized_minor
    )


def refund_fits(minor: int) -> ColumnElement[bool]:
    """SQL: ``minor`` more can be refunded or charged back without exceeding the captured
    amount (refunds under way count as taken)."""
    return (
        Payment.refunded_minor + Payment.refund_pending_minor + Payment.charged_back_minor + minor
        <= Payment.captured_minor
    )


def add_transaction(
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
    """Add one row to the payment's ledger; a pending row gets no completion time."""
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
        **actor_fields(actor),
    )
    session.add(txn)
    return txn
