"""Carts follow a customer merge; what carts export and erase about a person.

A merge moves B's carts to A as they are (A may then have two open carts; the most
recently used one is A's cart, nothing in the other is lost). Erasure removes the carts'
contact details and addresses and empties open carts, whose lines say what the person
was about to buy; carts that became orders keep their lines for the order's history.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from mercato.carts.models import Cart, CartLine
from mercato.customers.timeline import TimelineEntry, register_timeline_source
from mercato.events import Dispatcher
from mercato.merges import follow_merges
from mercato.privacy.registry import Subject, record, register


def register_subscribers(dispatcher: Dispatcher) -> None:
    follow_merges(dispatcher, "carts", [Cart])
    register_timeline_source("carts", _timeline)


_CART_STATES = {
    "open": "Cart open",
    "checking_out": "Checking out",
    "completed": "Cart checked out",
    "merged": "Cart merged into another of the customer's carts",
    "erased": "Cart emptied on request",
}


def _timeline(
    session: Session, customer_id: int, since: datetime | None, limit: int
) -> list[TimelineEntry]:
    """The customer's carts, from the carts themselves: opened where, last used where."""
    query = select(Cart).where(Cart.customer_id == customer_id)
    if since is not None:
        query = query.where(Cart.created_at >= since)
    rows = session.scalars(query.order_by(Cart.created_at.desc()).limit(limit))
    return [
        TimelineEntry(
            at=cart.created_at,
            kind="cart",
            channel_id=cart.created_channel_id,
            summary=_CART_STATES.get(cart.status, f"Cart {cart.status}")
            + (f" in {cart.currency}" if cart.status == "open" else ""),
            ref_type="cart",
            ref_id=str(cart.id),
            data={
                "status": cart.status,
                "last_channel_id": cart.last_channel_id,
                "order_id": cart.order_id,
                "updated_at": cart.updated_at.isoformat(),
            },
        )
        for cart in rows
    ]


def _carts_of(session: Session, subject: Subject) -> list[Cart]:
    return list(
        session.scalars(
            select(Cart).where(Cart.customer_id.in_(subject.customer_ids)).order_by(Cart.id)
        )
    )


def _collect(session: Session, subject: Subject) -> None:
    for cart in _carts_of(session, subject):
        subject.identifiers.add_email(cart.email)
        subject.identifiers.add_address(cart.shipping_address)
        subject.identifiers.add_address(cart.billing_address)


def _export(session: Session, subject: Subject) -> list[dict[str, Any]]:
    carts = _carts_of(session, subject)
    if not carts:
        return []
    lines: dict[int, list[CartLine]] = {}
    for line in session.scalars(
        select(CartLine).where(CartLine.cart_id.in_([c.id for c in carts])).order_by(CartLine.id)
    ):
        lines.setdefault(line.cart_id, []).append(line)
    return [
        {**record(cart, exclude={"token"}), "lines": [record(x) for x in lines.get(cart.id, [])]}
        for cart in carts
    ]


def _erase(session: Session, subject: Subject) -> int:
    carts = _carts_of(session, subject)
    for cart in carts:
        cart.email = None
        cart.shipping_address = None
        cart.billing_address = None
        if cart.status == "open":
            session.execute(delete(CartLine).where(CartLine.cart_id == cart.id))
            cart.status = "erased"
            cart.codes = []
    return len(carts)


register("carts", export=_export, erase=_erase, collect=_collect)
