"""What an order is worth as it stands: the value of some units of a line, what the
customer owes once units are cancelled, and what may be captured once units have left."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from mercato.money import ZERO, quantize
from mercato.orders.models import Order, OrderLine


def prepaid_import_charges(charges: dict[str, Any] | None) -> Decimal:
    """What the shopper paid with the order for import duty and tax (0 when due on
    delivery, or for a domestic order)."""
    if not charges or not charges.get("prepaid"):
        return Decimal(0)
    return Decimal(str(charges["total"]))


def line_value(line: OrderLine, quantity: int, currency: str) -> Decimal:
    """What ``quantity`` units of the line cost the customer (tax and discounts included)."""
    if quantity == line.quantity:
        return quantize(line.total, currency)
    return quantize(line.total * quantity / line.quantity, currency)


def beyond_lines(order: Order) -> Decimal:
    """Shipping, and import duty and tax the shopper paid with the order (duties paid)."""
    extra = order.shipping_total + prepaid_import_charges(order.import_charges)
    return quantize(extra, order.currency)


def owed(order: Order, lines: Sequence[OrderLine]) -> Decimal:
    """What the customer owes for the order as it stands: every unit not cancelled, plus
    shipping unless the whole order was cancelled."""
    kept = sum(
        (
            line_value(x, x.quantity - x.cancelled_quantity, order.currency)
            for x in lines
            if x.quantity - x.cancelled_quantity > 0
        ),
        ZERO,
    )
    if kept == 0:
        return ZERO
    return kept + beyond_lines(order)


def due_now(order: Order, lines: Sequence[OrderLine]) -> Decimal:
    """What may be captured now: the shipped or collected units, and shipping once any left."""
    shipped = sum(
        (
            line_value(x, x.fulfilled_quantity, order.currency)
            for x in lines
            if x.fulfilled_quantity
        ),
        ZERO,
    )
    if shipped == 0:
        return ZERO
    return min(shipped + beyond_lines(order), owed(order, lines))
