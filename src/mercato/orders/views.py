"""How an order is shown: the same shape for staff, shoppers and stored checkout answers."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from mercato.orders import service
from mercato.orders.models import Order
from mercato.orders.schemas import OrderLineOut, OrderOut, TransitionOut


def order_out(session: Session, order: Order, *, with_timeline: bool = False) -> OrderOut:
    out = OrderOut.model_validate(order)
    out.lines = [OrderLineOut.model_validate(x).in_currency(order.currency)
                 for x in service.order_lines(session, order.id)]
    if with_timeline:
        out.timeline = [TransitionOut.model_validate(t)
                        for t in service.timeline(session, order.id)]
    return out


def order_json(session: Session, order: Order) -> dict[str, Any]:
    """JSON-ready (amounts as strings, never floats)."""
    return order_out(session, order).model_dump(mode="json")
