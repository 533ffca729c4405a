"""Tracking: carriers' events move parcels and shipments, and the order once every part of
it arrived or was collected."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.db import utcnow
from mercato.errors import NotFound
from mercato.events import publish
from mercato.fulfillment.event_types import TRACKED_STATUS_EVENTS
from mercato.fulfillment.models import Shipment
from mercato.fulfillment.tasks import tasks_for_order
from mercato.orders import service as orders
from mercato.orders.models import Order
from mercato.orders.state import OrderStatus
from mercato.shipping import service as shipping

_TRACKING_STATUS = {
    "in_transit": "in_transit",
    "out_for_delivery": "in_transit",
    "delivered": "delivered",
    "exception": "exception",
    "returned": "returned_to_sender",
    "returned_to_sender": "returned_to_sender",
}


def _shipment_for_tracking(session: Session, tracking_number: str) -> Shipment | None:
    shipment = session.scalar(select(Shipment).where(Shipment.tracking_number == tracking_number))
    if shipment is not None:
        return shipment
    # A further parcel of a multi-parcel shipment: its label names the order.
    try:
        label = shipping.label_by_tracking_number(session, tracking_number)
        order = orders.get_by_number(session, label.reference or "")
    except NotFound:
        return None
    for candidate in shipments_for_order(session, order.id):
        if any(p.get("tracking_number") == tracking_number for p in candidate.packages):
            return candidate
    return None


def _shipment_status(parcels: Sequence[str]) -> str:
    """A shipment is delivered when every parcel is; a parcel in trouble shows first."""
    if all(s == "delivered" for s in parcels):
        return "delivered"
    for trouble in ("exception", "returned_to_sender"):
        if trouble in parcels:
            return trouble
    if any(s != "shipped" for s in parcels):
        return "in_transit"
    return "shipped"


def on_tracking_update(session: Session, tracking_number: str, status: str) -> None:
    """A carrier's tracking event moves the parcel, its shipment, and the order once every
    part of it arrived (or was collected)."""
    mapped = _TRACKING_STATUS.get(status)
    if mapped is None:
        return
    shipment = _shipment_for_tracking(session, tracking_number)
    if shipment is None:
        return
    # Parcels of one shipment are tracked separately, maybe by two processes at once: each
    # update rewrites the parcel list, so they take the shipment's row in turn.
    session.refresh(shipment, with_for_update=True)
    parcels = [dict(p) for p in shipment.packages]
    tracked = [p for p in parcels if p.get("tracking_number")]
    if tracked:
        parcel = next((p for p in tracked if p["tracking_number"] == tracking_number), None)
        if parcel is None or parcel.get("status") in (mapped, "delivered"):
            return  # late events never move a delivered parcel back
        parcel["status"] = mapped
        shipment.packages = parcels
        new_status = _shipment_status([str(p.get("status") or "shipped") for p in tracked])
    else:
        if shipment.status in (mapped, "delivered"):
            return
        new_status = mapped
    shipment.updated_at = utcnow()
    if new_status == shipment.status:
        session.flush()
        return
    shipment.status = new_status
    if new_status == "delivered":
        shipment.delivered_at = utcnow()
    session.flush()
    event_type = TRACKED_STATUS_EVENTS[new_status]
    publish(
        session,
        event_type(
            shipment_id=shipment.id, order_id=shipment.order_id, tracking_number=tracking_number
        ),
    )
    if new_status == "delivered":
        complete_if_done(
            session,
            Principal.system("tracking"),
            shipment.order_id,
            reason=f"delivered ({tracking_number})",
        )


def complete_if_done(session: Session, actor: Principal, order_id: int, *, reason: str) -> Order:
    """A fulfilled order whose parcels are all delivered and whose pickups are all collected
    is done, whichever part finished last: delivered when anything travelled by carrier,
    picked up when everything was collected. The order's row is taken first, so the last
    two parts finishing at once cannot each see the other as unfinished."""
    order = orders.lock_order(session, order_id)
    if order.status != OrderStatus.FULFILLED.value:
        return order
    tasks = [t for t in tasks_for_order(session, order_id) if t.status != "cancelled"]
    if any(t.kind == "pickup" and t.status != "picked_up" for t in tasks):
        return order
    sent = shipments_for_order(session, order_id)
    if any(s.status != "delivered" for s in sent):
        return order
    if sent:
        target = OrderStatus.DELIVERED
    elif any(t.kind == "pickup" for t in tasks):
        target = OrderStatus.PICKED_UP
    else:
        return order
    return orders.transition(session, actor, order_id, target, reason=reason)


def shipments_for_order(session: Session, order_id: int) -> list[Shipment]:
    return list(
        session.scalars(select(Shipment).where(Shipment.order_id == order_id).order_by(Shipment.id))
    )


def delivered_order_ids(session: Session, *, limit: int) -> list[int]:
    """Orders with a delivered parcel (cash on delivery is settled from them)."""
    found = session.scalars(
        select(Shipment.order_id).where(Shipment.status == "delivered").limit(limit)
    )
    return sorted(set(found))
