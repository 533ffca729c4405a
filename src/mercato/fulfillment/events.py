"""How fulfilment reacts to the rest of the platform (wired by its manifest)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from mercato.events import Event
from mercato.fulfillment import service
from mercato.orders.event_types import OrderConfirmed


def on_order_confirmed(session: Session, event: OrderConfirmed) -> None:
    service.on_order_confirmed(session, event.order_id)


def on_tracking_updated(session: Session, event: Event) -> None:
    number = event.data.get("tracking_number")
    status = event.data.get("status") or (event.data.get("event") or {}).get("status")
    if number and status:
        service.on_tracking_update(session, str(number), str(status))
