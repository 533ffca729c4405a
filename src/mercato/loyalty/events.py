"""How loyalty reacts to the rest of the platform: order events, returns, and time.

* ``order.placed``: the order's points are computed and shown as pending.
* ``order.fulfilled``, ``order.delivered``, ``order.picked_up``: the points are granted,
  once per order whichever of them arrives first.
* ``order.cancelled``: pending points disappear.
* ``return.refunded`` (``order_id`` and ``lines`` of ``variant_id``, ``quantity``,
  ``amount``): the share of the order's points that the refunded money stands for is taken
  back, once per event.
* Hourly: points whose time has come expire, and tiers follow the rolling window.

Every handler is idempotent (delivery is at least once). Malformed events are logged and
skipped: retrying them would not make them readable.
"""

from __future__ import annotations

import logging
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy.orm import Session

from mercato.events import Event
from mercato.loyalty import service
from mercato.orders.event_types import (
    OrderCancelled,
    OrderDelivered,
    OrderFacts,
    OrderFulfilled,
    OrderPickedUp,
)

log = logging.getLogger(__name__)

PERIODIC_SECONDS = 3600.0
GRANTING: tuple[type[OrderFacts], ...] = (OrderFulfilled, OrderDelivered, OrderPickedUp)


def _order_id(event: Event) -> int | None:
    try:
        return int(event.data["order_id"])
    except (KeyError, TypeError, ValueError):
        log.warning("loyalty: %s event %s without a usable order_id", event.type, event.id)
        return None


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


def _returned_lines(event: Event) -> list[service.ReturnedLine] | None:
    try:
        return [
            service.ReturnedLine(
                int(line["variant_id"]),
                int(line.get("quantity") or 0),
                None if line.get("amount") is None else Decimal(str(line["amount"])),
            )
            for line in event.data.get("lines") or []
        ]
    except (KeyError, TypeError, ValueError, InvalidOperation):
        log.warning("loyalty: return event %s has unreadable lines", event.id)
        return None


def on_return_refunded(session: Session, event: Event) -> None:
    order_id = _order_id(event)
    lines = _returned_lines(event)
    if order_id is not None and lines:
        service.order_returned(session, event.id, order_id, lines)


def run_periodic(session: Session) -> Any:
    expired = service.expire_points(session)
    service.reevaluate_tiers(session)
    return expired

