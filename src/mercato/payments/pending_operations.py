"""Pending captures, voids and refunds: the provider call and transaction B.

Transaction A (in :mod:`~mercato.payments.captures`, :mod:`~mercato.payments.voids`,
:mod:`~mercato.payments.refunds`) writes a ``pending`` ledger row and reserves its amount.
:func:`call_provider` then asks the provider with no transaction open, with the row's
idempotency key; :func:`finish` (transaction B) marks the row succeeded or failed and
moves the reservation. The provider's webhook and :func:`reconcile` finish rows the same
way, so whichever comes first completes it and the others find nothing left to do.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from mercato.db import Database, utcnow
from mercato.events import publish
from mercato.money import from_minor
from mercato.payments.event_types import (
    PaymentCaptured,
    PaymentCaptureFailed,
    PaymentRefunded,
    PaymentRefundFailed,
    PaymentVoided,
    PaymentVoidFailed,
)
from mercato.payments.models import (
    Payment,
    PaymentStatus,
    PaymentTransaction,
    Refund,
    TxnKind,
    TxnStatus,
)
from mercato.payments.problems import ProviderUnavailableProblem
from mercato.payments.providers import (
    ChargeRequest,
    Outcome,
    ProviderResult,
    ProviderUnavailable,
    get_provider,
)
from mercato.payments.reading import get_payment
from mercato.payments.records import (
    authorization_key,
    payment_facts,
    status_after,
    update_payments,
)


def charge_request(payment: Payment, txn: PaymentTransaction) -> ChargeRequest:
    """What the provider is asked for a pending ledger row, with the row's idempotency key."""
    return ChargeRequest(
        payment_id=payment.id,
        amount=from_minor(txn.amount_minor, payment.currency),
        currency=payment.currency,
        idempotency_key=txn.provider_key or "",
        provider_reference=payment.provider_reference,
        authorization_key=authorization_key(payment.id),
    )


def call_provider(
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


def _failure_code(ok: bool, result: ProviderResult) -> str | None:
    return None if ok else (result.code or "")[:50] or None


def _failure_message(ok: bool, result: ProviderResult) -> str | None:
    return None if ok else (result.message or "")[:300] or None


def finish(session: Session, txn_id: int, result: ProviderResult) -> bool:
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
            failure_code=_failure_code(ok, result),
            failure_message=_failure_message(ok, result),
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
            status=status_after(captured_delta=minor),
            captured_at=utcnow(),
        )
    session.execute(update_payments().where(Payment.id == payment_id).values(values))
    payment = get_payment(session, payment_id)
    if ok:
        captured = from_minor(minor, payment.currency)
        publish(session, PaymentCaptured(**payment_facts(payment), captured=captured))
    else:
        publish(
            session,
            PaymentCaptureFailed(
                **payment_facts(payment),
                failure_code=result.code,
                requested=from_minor(minor, payment.currency),
            ),
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
        update_payments()
        .where(Payment.id == payment_id, Payment.status == PaymentStatus.VOIDING.value)
        .values(updated_at=utcnow(), **values)
    )
    payment = get_payment(session, payment_id)
    if ok:
        publish(session, PaymentVoided(**payment_facts(payment), failure_code=None))
    else:
        publish(session, PaymentVoidFailed(**payment_facts(payment), failure_code=result.code))


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
            status=status_after(refunded_delta=minor),
        )
    session.execute(update_payments().where(Payment.id == payment_id).values(values))
    if refund_id is not None:
        _finish_refund_row(session, refund_id, ok, result)
    payment = get_payment(session, payment_id)
    kind = PaymentRefunded if ok else PaymentRefundFailed
    publish(
        session,
        kind(
            **payment_facts(payment),
            refund_id=refund_id,
            refunded=from_minor(minor, payment.currency),
            failure_code=None if ok else result.code,
        ),
    )


def _finish_refund_row(session: Session, refund_id: int, ok: bool, result: ProviderResult) -> None:
    session.execute(
        update(Refund)
        .where(Refund.id == refund_id)
        .values(
            status=TxnStatus.SUCCEEDED.value if ok else TxnStatus.FAILED.value,
            completed_at=utcnow(),
            provider_reference=result.transaction_reference,
            failure_code=_failure_code(ok, result),
            failure_message=_failure_message(ok, result),
        )
    )
