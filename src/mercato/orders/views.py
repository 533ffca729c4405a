"""How an order is shown: the same shape for staff, shoppers and stored checkout answers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from mercato.orders import service
from mercato.orders.models import Order, OrderLine
from mercato.orders.schemas import OrderLineOut, OrderOut, TransitionOut


def order_out(
    session: Session,
    order: Order,
    *,
    with_timeline: bool = False,
    lines: Sequence[OrderLine] | None = None,
) -> OrderOut:
    found = lines if lines is not None else service.order_lines(session, order.id)
    out = OrderOut.model_validate(order)
    out.lines = [OrderLineOut.model_validate(x).in_currency(order.currency) for x in found]
    if with_timeline:
        out.timeline = [
            TransitionOut.model_validate(t) for t in service.timeline(session, order.id)
        ]
    return out


def order_json(
    session: Session, order: Order, lines: Sequence[OrderLine] | None = None
) -> dict[str, Any]:
    """JSON-ready (amounts as strings, never floats)."""
    return order_out(session, order, lines=lines).model_dump(mode="json")
