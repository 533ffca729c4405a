"""The return life cycle.

``requested`` -> ``approved`` (at once when the policy auto-approves) -> ``received`` (the
units are at a location) -> ``inspected`` (each line restocked, written off as damaged or
set aside for the vendor) -> ``refunded`` (money or store credit went back) or ``closed``
(nothing to pay out, e.g. an even exchange); ``rejected`` and ``cancelled`` are the exits
before anything arrived. Every change is a conditional UPDATE from the expected status and
a row in the return's timeline.
"""

from __future__ import annotations

from enum import StrEnum


class ReturnStatus(StrEnum):
    REQUESTED = "requested"
    APPROVED = "approved"
    RECEIVED = "received"
    INSPECTED = "inspected"
    REFUNDED = "refunded"
    CLOSED = "closed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


S = ReturnStatus

TRANSITIONS: dict[ReturnStatus, frozenset[ReturnStatus]] = {
    S.REQUESTED: frozenset({S.APPROVED, S.REJECTED, S.CANCELLED}),
    S.APPROVED: frozenset({S.RECEIVED, S.CANCELLED}),
    S.RECEIVED: frozenset({S.INSPECTED}),
    S.INSPECTED: frozenset({S.REFUNDED, S.CLOSED}),
    S.REFUNDED: frozenset(),
    S.CLOSED: frozenset(),
    S.REJECTED: frozenset(),
    S.CANCELLED: frozenset(),
}

# Returns whose units are promised back but not yet counted on the order's lines.
OPEN = frozenset({S.REQUESTED, S.APPROVED})


class Reason(StrEnum):
    DAMAGED = "damaged"
    WRONG_ITEM = "wrong_item"
    NOT_AS_DESCRIBED = "not_as_described"
    CHANGED_MIND = "changed_mind"
    SIZE_FIT = "size_fit"
    OTHER = "other"


# The merchant's fault: no restocking fee, and shipping is refunded with the whole order.
MERCHANT_FAULT = frozenset({Reason.DAMAGED, Reason.WRONG_ITEM, Reason.NOT_AS_DESCRIBED})


class Condition(StrEnum):
    """What inspection found, and so where the unit goes."""

    RESTOCK = "restock"  # back on the shelf of the receiving location
    DAMAGED = "damaged"  # received into stock, then written off with a damage movement
    TO_VENDOR = "to_vendor"  # set aside for the supplier: never enters the stock ledger


class RefundMethod(StrEnum):
    ORIGINAL_PAYMENT = "original_payment"
    STORE_CREDIT = "store_credit"


class Settlement(StrEnum):
    NONE = "none"
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"
