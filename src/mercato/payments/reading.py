"""Reading payments, their ledger and refunds, and where the money of an order stands."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from mercato.db import get_or_404
from mercato.money import from_minor
from mercato.pagination import Page, decode_id_cursor, page_of
from mercato.payments.models import (
    Payment,
    PaymentStatus,
    PaymentTransaction,
    Refund,
    refundable_minor,
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
# Payments that never took money: left out of a reference's totals.
_NOT_COUNTED = (
    PaymentStatus.DECLINED.value,
    PaymentStatus.FAILED.value,
    PaymentStatus.VOIDED.value,
)
# A tender still waiting for its provider or the shopper.
_WAITING = (PaymentStatus.PENDING.value, PaymentStatus.REQUIRES_ACTION.value)


def get_payment(session: Session, payment_id: int) -> Payment:
    return get_or_404(session, Payment, payment_id, f"payment {payment_id}", fresh=True)


def get_payments(session: Session, payment_ids: Sequence[int]) -> list[Payment]:
    """The payments with these ids, in tender order."""
    return list(
        session.scalars(
            select(Payment)
            .where(Payment.id.in_(list(payment_ids)))
            .order_by(Payment.position, Payment.id)
            .execution_options(populate_existing=True)
        )
    )


def payments_for_reference(session: Session, reference: str) -> list[Payment]:
    return list(
        session.scalars(
            select(Payment)
            .where(Payment.reference == reference)
            .order_by(Payment.position, Payment.id)
            .execution_options(populate_existing=True)
        )
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
        p for p in payments_for_reference(session, reference) if p.status not in _NOT_COUNTED
    ]
    if not payments:
        return None
    currency = payments[0].currency

    def total(minors: Sequence[int]) -> Decimal:
        return from_minor(sum(minors), currency)

    return ReferenceTotals(
        currency=currency,
        amount=total([p.amount_minor for p in payments]),
        authorized=total([p.authorized_minor for p in payments]),
        captured=total([p.captured_minor for p in payments]),
        refunded=total([p.refunded_minor for p in payments]),
        refundable=total([refundable_minor(p) for p in payments]),
        pending=any(p.status in _WAITING for p in payments),
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


def orders_with_payment_status(status: str) -> Select[Any]:
    """The ids of orders with a payment in ``status``, as a subquery for an order search
    (filtering by payment state without reading every order's payments)."""
    return select(Payment.order_id).where(Payment.status == status, Payment.order_id.is_not(None))
