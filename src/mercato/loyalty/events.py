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
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy.orm import Session

from mercato.events import Dispatcher, Event
from mercato.loyalty import service

log = logging.getLogger(__name__)

PERIODIC_SECONDS = 3600.0
GRANTING = ("order.fulfilled", "order.delivered", "order.picked_up")


def _order_id(event: Event) -> int | None:
    try:
        return int(event.data["order_id"])
    except (KeyError, TypeError, ValueError):
        log.warning("loyalty: %s event %s without a usable order_id", event.type, event.id)
        return None


def _on_order(action: Callable[[Session, int], object]) -> Callable[[Session, Event], None]:
    def handle(session: Session, event: Event) -> None:
        order_id = _order_id(event)
        if order_id is not None and event.data.get("customer_id") is not None:
            action(session, order_id)

    return handle


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


def register(dispatcher: Dispatcher) -> None:
    """Subscribe loyalty to the events it needs (``mercato.bootstrap`` registers points as
    a payment method)."""
    dispatcher.subscribe("order.placed", _on_order(lambda s, o: service.order_placed(s, o)))
    dispatcher.subscribe("order.cancelled", _on_order(service.order_cancelled))
    for type_ in GRANTING:
        dispatcher.subscribe(type_, _on_order(lambda s, o: service.grant_order(s, o)))
    dispatcher.subscribe("return.refunded", on_return_refunded)
    dispatcher.add_periodic("loyalty-expiry-and-tiers", PERIODIC_SECONDS, run_periodic)
