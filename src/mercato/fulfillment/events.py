"""How fulfilment reacts to the rest of the platform (wired by its manifest)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from mercato.fulfillment import service
from mercato.orders.event_types import OrderConfirmed
from mercato.shipping.event_types import TrackingUpdated


def on_order_confirmed(session: Session, event: OrderConfirmed) -> None:
    service.on_order_confirmed(session, event.order_id)


def on_tracking_updated(session: Session, event: TrackingUpdated) -> None:
    status = event.status or event.event.status
    if event.tracking_number and status:
        service.on_tracking_update(session, event.tracking_number, status)
