"""How loyalty reacts to the rest of the platform: order events, returns, and time.

* ``order.placed``: the order's points are computed and shown as pending.
* ``order.fulfilled``, ``order.delivered``, ``order.picked_up``: the points are granted,
  once per order whichever of them arrives first.
* ``order.cancelled``: pending points disappear.
* ``return.refunded`` (``order_id`` and ``lines`` of ``variant_id``, ``quantity``,
  ``amount``): the share of the order's points that the refunded money stands for is taken
  back, once per event.
* Hourly: points whose time has come expire, and tiers follow the rolling window.

Every handler is idempotent (delivery is at least once). Events arrive as their typed
classes from the catalog, so a handler reads fields, not a payload it must validate.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.orm import Session

from mercato.loyalty import service
from mercato.orders.event_types import (
    OrderCancelled,
    OrderDelivered,
    OrderFacts,
    OrderFulfilled,
    OrderPickedUp,
)
from mercato.returns.event_types import ReturnRefunded

log = logging.getLogger(__name__)

PERIODIC_SECONDS = 3600.0
GRANTING: tuple[type[OrderFacts], ...] = (OrderFulfilled, OrderDelivered, OrderPickedUp)


def on_order_placed(session: Session, event: OrderFacts) -> None:
    # Guests earn nothing.
    if event.customer_id is not None:
        service.order_placed(session, event.order_id)


def on_order_cancelled(session: Session, event: OrderCancelled) -> None:
    if event.customer_id is not None:
        service.order_cancelled(session, event.order_id)


def on_order_completed(session: Session, event: OrderFacts) -> None:
    """Fulfilled, delivered or picked up: the points are granted (once per order)."""
    if event.customer_id is not None:
        service.grant_order(session, event.order_id)


def on_return_refunded(session: Session, event: ReturnRefunded) -> None:
    """The share of the order's points that the refunded money stands for goes back."""
    lines = [
        service.ReturnedLine(line.variant_id, line.quantity, line.amount) for line in event.lines
    ]
    if lines:
        service.order_returned(session, event.envelope.id, event.order_id, lines)


def run_periodic(session: Session) -> Any:
    expired = service.expire_points(session)
    service.reevaluate_tiers(session)
    return expired

