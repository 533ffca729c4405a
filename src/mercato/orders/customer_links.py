"""Orders follow a customer merge; what orders export and erase about a person.

Erasure keeps every order, line and amount (accounting and tax records must balance) and
the customer id, which then points at an emptied profile; it drops the email, the
customer's note and the addresses except the country and region that decided the taxes,
and marks them with the erasure reference.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mercato.events import Dispatcher
from mercato.merges import follow_merges
from mercato.orders.models import Order, OrderLine, OrderNote, OrderTransition
from mercato.privacy.registry import Subject, record, register

# What an erased address keeps: where the tax was due.
KEPT_ADDRESS_FIELDS = ("country", "region")


def register_subscribers(dispatcher: Dispatcher) -> None:
    follow_merges(dispatcher, "orders", [Order])


def _orders_of(session: Session, subject: Subject) -> list[Order]:
    return list(
        session.scalars(
            select(Order).where(Order.customer_id.in_(subject.customer_ids)).order_by(Order.id)
        )
    )


def _collect(session: Session, subject: Subject) -> None:
    for order in _orders_of(session, subject):
        subject.identifiers.add_email(order.email)
        subject.identifiers.add_address(order.shipping_address)
        subject.identifiers.add_address(order.billing_address)


def _export(session: Session, subject: Subject) -> list[dict[str, Any]]:
    orders = _orders_of(session, subject)
    ids = [o.id for o in orders]
    if not ids:
        return []
    lines = _by_order(session.scalars(select(OrderLine).where(OrderLine.order_id.in_(ids))))
    moves = _by_order(
        session.scalars(select(OrderTransition).where(OrderTransition.order_id.in_(ids)))
    )
    notes = _by_order(session.scalars(select(OrderNote).where(OrderNote.order_id.in_(ids))))
    return [
        {
            **record(order),
            "lines": [record(x) for x in sorted(lines.get(order.id, []), key=_id)],
            "transitions": [record(x) for x in sorted(moves.get(order.id, []), key=_id)],
            "notes": [record(x) for x in sorted(notes.get(order.id, []), key=_id)],
        }
        for order in orders
    ]


def _id(row: Any) -> int:
    return int(row.id)


def _by_order(rows: Any) -> dict[int, list[Any]]:
    grouped: dict[int, list[Any]] = {}
    for row in rows:
        grouped.setdefault(row.order_id, []).append(row)
    return grouped


def _pseudonymous(address: dict[str, Any] | None, reference: str) -> dict[str, Any] | None:
    if address is None:
        return None
    kept = {k: address[k] for k in KEPT_ADDRESS_FIELDS if address.get(k) is not None}
    return {**kept, "name": reference}


def _erase(session: Session, subject: Subject) -> int:
    orders = _orders_of(session, subject)
    for order in orders:
        order.email = None
        order.note = None
        order.shipping_address = _pseudonymous(order.shipping_address, subject.reference)
        order.billing_address = _pseudonymous(order.billing_address, subject.reference)
    return len(orders)


register("orders", export=_export, erase=_erase, collect=_collect)
