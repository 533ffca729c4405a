"""What fulfilment exports and erases about a person.

Fulfilment rows belong to orders, not to customers, so a merge needs nothing here. The
person's data in fulfilment is where their parcels went: the printed labels, whose
content (recipient name, address, phone) erasure drops; tracking and customs stay.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mercato.fulfillment.models import FulfillmentOrder, Shipment
from mercato.orders import service as orders
from mercato.personal_data import DomainPrivacy, Subject, record
from mercato.shipping import service as shipping


def _export(session: Session, subject: Subject) -> dict[str, Any]:
    refs = orders.order_refs_of_customers(session, subject.customer_ids)
    ids = [order_id for order_id, _ in refs]
    if not ids:
        return {"tasks": [], "shipments": []}
    tasks = session.scalars(
        select(FulfillmentOrder)
        .where(FulfillmentOrder.order_id.in_(ids))
        .order_by(FulfillmentOrder.id)
    )
    shipments = session.scalars(
        select(Shipment).where(Shipment.order_id.in_(ids)).order_by(Shipment.id)
    )
    return {
        "tasks": [record(t, exclude={"pickup_code_hash"}) for t in tasks],
        "shipments": [record(s) for s in shipments],
    }


def _erase(session: Session, subject: Subject) -> int:
    refs = orders.order_refs_of_customers(session, subject.customer_ids)
    return shipping.forget_label_contents(session, [number for _, number in refs])


PRIVACY = DomainPrivacy("fulfillment", export=_export, erase=_erase)
