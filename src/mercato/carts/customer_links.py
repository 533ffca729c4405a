"""Carts follow a customer merge; what carts export and erase about a person (the
profile's carts, and the carts a guest left with one of the person's emails).

A merge moves B's carts to A as they are (A may then have two open carts; the most
recently used one is A's cart, nothing in the other is lost). Erasure removes the carts'
contact details and addresses and empties open carts, whose lines say what the person
was about to buy; carts that became orders keep their lines for the order's history.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from mercato.carts.models import Cart, CartLine
from mercato.customers.timeline import TimelineEntry
from mercato.orders.event_types import OrderCustomerLinked
from mercato.personal_data import DomainPrivacy, Subject, record


def on_order_linked(session: Session, event: OrderCustomerLinked) -> None:
    """A guest order joined a profile: so does the guest cart it was checked out from."""
    if event.cart_id is None:
        return
    session.execute(
        update(Cart)
        .where(Cart.id == event.cart_id, Cart.customer_id.is_(None))
        .values(customer_id=event.customer_id)
    )


_CART_STATES = {
    "open": "Cart open",
    "checking_out": "Checking out",
    "completed": "Cart checked out",
    "merged": "Cart merged into another of the customer's carts",
    "erased": "Cart emptied on request",
}


def timeline_entries(
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
    ids = set(_guest_cart_ids(session, subject.contacts.emails))
    query = select(Cart).where(Cart.customer_id.in_(subject.customer_ids))
    if ids:
        query = select(Cart).where(
            Cart.customer_id.in_(subject.customer_ids) | Cart.id.in_(sorted(ids))
        )
    return list(session.scalars(query.order_by(Cart.id)))


def _guest_cart_ids(session: Session, emails: frozenset[str]) -> list[int]:
    """Carts a guest left with one of these emails. Cart emails have no keyed hash, so
    guest carts are decrypted batch by batch: a privacy request is rare and must be
    complete."""
    if not emails:
        return []
    found: list[int] = []
    last = 0
    while True:
        rows = session.execute(
            select(Cart.id, Cart.email)
            .where(Cart.customer_id.is_(None), Cart.email.is_not(None), Cart.id > last)
            .order_by(Cart.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            return found
        found += [int(r.id) for r in rows if (r.email or "").strip().lower() in emails]
        last = int(rows[-1].id)


_BATCH = 500


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


PRIVACY = DomainPrivacy("carts", export=_export, erase=_erase, collect=_collect)
