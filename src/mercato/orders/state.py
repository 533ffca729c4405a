"""The one order life cycle every channel shares.

``pending_payment`` -> ``placed`` -> (``fraud_review``) -> ``confirmed`` -> ``allocated`` ->
``partially_fulfilled`` / ``fulfilled`` -> ``delivered`` / ``picked_up`` -> ``closed``,
with ``cancelled`` and ``payment_failed`` as exits. Every change is a transition listed
here, applied with a conditional UPDATE (two concurrent changes cannot both win) and
recorded with who, when and why.
"""

from __future__ import annotations

from enum import StrEnum


class OrderStatus(StrEnum):
    PENDING_PAYMENT = "pending_payment"
    PLACED = "placed"
    FRAUD_REVIEW = "fraud_review"
    CONFIRMED = "confirmed"
    ALLOCATED = "allocated"
    PARTIALLY_FULFILLED = "partially_fulfilled"
    FULFILLED = "fulfilled"
    DELIVERED = "delivered"
    PICKED_UP = "picked_up"
    CLOSED = "closed"
    CANCELLED = "cancelled"
    PAYMENT_FAILED = "payment_failed"


S = OrderStatus

TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    S.PENDING_PAYMENT: frozenset({S.PLACED, S.PAYMENT_FAILED, S.CANCELLED}),
    S.PLACED: frozenset({S.FRAUD_REVIEW, S.CONFIRMED, S.CANCELLED}),
    S.FRAUD_REVIEW: frozenset({S.CONFIRMED, S.CANCELLED}),
    S.CONFIRMED: frozenset({S.ALLOCATED, S.CANCELLED}),
    # Back to confirmed when a location rejects a line and it must be sourced again.
    S.ALLOCATED: frozenset({S.CONFIRMED, S.PARTIALLY_FULFILLED, S.FULFILLED, S.CANCELLED}),
    S.PARTIALLY_FULFILLED: frozenset({S.FULFILLED, S.CANCELLED}),
    S.FULFILLED: frozenset({S.DELIVERED, S.PICKED_UP, S.CLOSED}),
    S.DELIVERED: frozenset({S.CLOSED}),
    S.PICKED_UP: frozenset({S.CLOSED}),
    S.PAYMENT_FAILED: frozenset({S.CANCELLED}),
    S.CLOSED: frozenset(),
    S.CANCELLED: frozenset(),
}

# Statuses in which the customer's money is committed and stock is promised.
ACTIVE = frozenset({S.PLACED, S.FRAUD_REVIEW, S.CONFIRMED, S.ALLOCATED, S.PARTIALLY_FULFILLED})


def can_transition(current: OrderStatus, target: OrderStatus) -> bool:
    return target in TRANSITIONS[current]


def sources_of(target: OrderStatus) -> frozenset[OrderStatus]:
    return frozenset(s for s, targets in TRANSITIONS.items() if target in targets)
