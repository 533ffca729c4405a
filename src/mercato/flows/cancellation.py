"""Cancelling orders, whole or some units of some lines, and releasing a hold.

Cancelling takes two steps: in one transaction the units are counted as cancelled (orders),
their stock given back (fulfilment's tasks, then the order's other holds), the codes of a
wholly cancelled order released (promotions) and the order moved on; then, with no
transaction open, the money follows (payments): authorisations of a wholly cancelled order
are voided, and what was captured beyond what the rest of the order is worth is refunded.
A failure on the money side leaves the order cancelled and the payment visible to the
payments reconciliation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.auth.service import audit
from mercato.db import Database
from mercato.errors import UnprocessableState, ValidationProblem
from mercato.events import publish
from mercato.fulfillment import service as fulfillment
from mercato.money import ZERO, quantize
from mercato.orders import service as orders
from mercato.orders.event_types import CancelledLine, OrderLinesCancelled
from mercato.orders.models import Order, OrderLine
from mercato.orders.state import OrderStatus
from mercato.payments import service as payments
from mercato.promotions import service as promotions


@dataclass
class Cancellation:
    order: Order
    refund_due: Decimal
    void_payment_ids: list[int] = field(default_factory=list)
    refunds: list[Any] = field(default_factory=list)


def release_hold(session: Session, actor: Principal, order_id: int) -> Order:
    """Release the hold; a confirmed order waiting for it is routed now."""
    order = orders.release_hold(session, actor, order_id)
    if order.status == OrderStatus.CONFIRMED.value:
        fulfillment.on_order_confirmed(session, order.id)
    return order


def cancel_order(
    database: Database,
    actor: Principal,
    order_id: int,
    reason: str,
    *,
    request_id: str | None = None,
) -> Cancellation:
    """Cancel everything not yet shipped or collected; its stock goes back, its codes are
    given back, and the money follows: authorisations voided, captured amounts refunded."""
    with database.transaction() as session:
        session.info["request_id"] = request_id
        order = orders.get_order(session, order_id)
        lines = orders.order_lines(session, order_id)
        quantities = {x.id: x.quantity - x.fulfilled_quantity - x.cancelled_quantity for x in lines}
        quantities = {k: v for k, v in quantities.items() if v > 0}
        if not quantities:
            raise UnprocessableState(
                f"order {order.number} has nothing left to cancel", code="illegal-transition"
            )
        result = _cancel_in(session, actor, order, lines, quantities, reason)
    return _settle_money(database, actor, result, reason, request_id)


def cancel_lines(
    database: Database,
    actor: Principal,
    order_id: int,
    quantities: dict[int, int],
    reason: str,
    *,
    request_id: str | None = None,
) -> Cancellation:
    """Cancel some units of some lines (a store cannot supply them, the customer changed
    their mind); the rest of the order goes on."""
    if not quantities or any(q <= 0 for q in quantities.values()):
        raise ValidationProblem.field("body.lines", "positive quantities of this order's lines")
    with database.transaction() as session:
        session.info["request_id"] = request_id
        order = orders.get_order(session, order_id)
        lines = orders.order_lines(session, order_id)
        unknown = sorted(set(quantities) - {x.id for x in lines})
        if unknown:
            raise ValidationProblem.field("body.lines", f"not lines of this order: {unknown}")
        result = _cancel_in(session, actor, order, lines, quantities, reason)
    return _settle_money(database, actor, result, reason, request_id)


def _cancel_in(
    session: Session,
    actor: Principal,
    order: Order,
    lines: list[OrderLine],
    quantities: dict[int, int],
    reason: str,
) -> Cancellation:
    orders.cancel_units(session, order, lines, quantities)
    fulfillment.release_order_units(session, actor, order, quantities)
    fresh = orders.order_lines(session, order.id)
    everything = all(
        x.fulfilled_quantity == 0 and x.cancelled_quantity == x.quantity for x in fresh
    )
    status = OrderStatus(order.status)
    if everything:
        promotions.release_redemptions(session, order.number)
        order = orders.advance(session, actor, order.id, status, [(OrderStatus.CANCELLED, reason)])
    else:
        order = orders.sync_fulfilment_status(session, actor, order.id, reason=reason)
    by_id = {x.id: x for x in lines}
    refund_due = (
        quantize(order.grand_total, order.currency)
        if everything
        else sum(
            (orders.line_value(by_id[k], q, order.currency) for k, q in quantities.items()), ZERO
        )
    )
    _record_cancellation(session, actor, order, by_id, quantities, reason, refund_due)
    void = (
        [p.id for p in payments.payments_for_reference(session, order.number)] if everything else []
    )
    return Cancellation(order, refund_due, void)


def _record_cancellation(
    session: Session,
    actor: Principal,
    order: Order,
    by_id: dict[int, OrderLine],
    quantities: dict[int, int],
    reason: str,
    refund_due: Decimal,
) -> None:
    audit(
        session,
        actor,
        "order.lines_cancelled",
        "order",
        order.id,
        {"lines": {str(k): v for k, v in quantities.items()}, "reason": reason},
    )
    # No reason in the event: staff type it about the customer, and events reach every
    # subscriber and webhook. It is on the order's timeline for readers of personal data.
    publish(
        session,
        OrderLinesCancelled(
            **orders.order_facts(order),
            refund_due=refund_due,
            lines=tuple(
                CancelledLine(k, by_id[k].variant_id, q) for k, q in sorted(quantities.items())
            ),
        ),
    )


def _settle_money(
    database: Database, actor: Principal, result: Cancellation, reason: str, request_id: str | None
) -> Cancellation:
    if result.void_payment_ids:
        payments.void_payments(
            database, result.void_payment_ids, actor=actor, request_id=request_id
        )
        return result
    with database.read() as session:
        totals = payments.totals_for_reference(session, result.order.number)
        owed = orders.owed(result.order, orders.order_lines(session, result.order.id))
    if totals is None:
        return result
    # Refund only what was captured beyond what the remaining order is worth; an
    # uncaptured authorisation simply captures less later.
    excess = totals.captured - totals.refunded - owed
    if excess > 0:
        result.refunds = payments.refund_reference(
            database,
            result.order.number,
            quantize(excess, result.order.currency),
            reason=reason,
            actor=actor,
            request_id=request_id,
        )
    return result


def expire_pickups(database: Database) -> int:
    """Click & collect orders nobody collected in time: cancelled, stock back, money back."""
    with database.read() as session:
        expired = [
            (t.order_id, fulfillment.open_units(session, t.id))
            for t in fulfillment.expired_pickups(session)
        ]
    system = Principal.system("pickup-expiry")
    for order_id, quantities in expired:
        if quantities:
            cancel_lines(database, system, order_id, quantities, "not collected in time")
    return len(expired)
