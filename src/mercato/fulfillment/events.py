"""How fulfilment reacts to the rest of the platform (wired by its manifest)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.db import Database
from mercato.events import Event
from mercato.fulfillment import service


def on_order_confirmed(session: Session, event: Event) -> None:
    service.on_order_confirmed(session, int(event.data["order_id"]))


def on_tracking_updated(session: Session, event: Event) -> None:
    number = event.data.get("tracking_number")
    status = event.data.get("status") or (event.data.get("event") or {}).get("status")
    if number and status:
        service.on_tracking_update(session, str(number), str(status))


def capture_delivered_cod(database: Database) -> None:
    """Cash on delivery is settled when the parcel arrives."""
    from sqlalchemy import select

    from mercato.fulfillment.models import Shipment
    from mercato.orders import workflows

    with database.read() as session:
        order_ids = sorted(
            set(
                session.scalars(
                    select(Shipment.order_id).where(Shipment.status == "delivered").limit(200)
                )
            )
        )
    for order_id in order_ids:
        workflows.capture_due(database, order_id, on_delivery=True)


def expire_pickups(database: Database) -> int:
    """Click & collect orders nobody collected in time: cancelled, stock back, money back."""
    from mercato.orders import workflows

    with database.read() as session:
        expired = [
            (
                t.order_id,
                [
                    (x.order_line_id, x.quantity)
                    for x in service.task_lines(session, t.id)
                    if x.status == "open"
                ],
            )
            for t in service.expired_pickups(session)
        ]
    system = Principal.system("pickup-expiry")
    for order_id, lines in expired:
        quantities: dict[int, int] = {}
        for line_id, qty in lines:
            quantities[line_id] = quantities.get(line_id, 0) + qty
        if quantities:
            workflows.cancel_lines(database, system, order_id, quantities, "not collected in time")
    return len(expired)
