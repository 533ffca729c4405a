"""Whose a cart is: a customer's open cart, and a guest's cart joining it after login."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from mercato.carts.access import lines_of, require_open, shopper, touch
from mercato.carts.event_types import CartMerged
from mercato.carts.holds import release_stock
from mercato.carts.models import Cart
from mercato.carts.schemas import MAX_LINE_QUANTITY
from mercato.channels.context import ChannelContext
from mercato.events import publish


def owner_of(session: Session, token: str) -> int | None:
    """The customer a cart belongs to (None for a guest's or an unknown cart)."""
    return session.scalar(select(Cart.customer_id).where(Cart.token == token))


def open_cart_of(session: Session, customer_id: int) -> Cart | None:
    return session.scalar(
        select(Cart)
        .where(Cart.customer_id == customer_id, Cart.status == "open")
        .order_by(Cart.updated_at.desc())
        .limit(1)
    )


def attach_customer(
    session: Session, cart: Cart, channel: ChannelContext, customer_id: int
) -> Cart:
    """After login: an anonymous cart joins the customer's open cart (or becomes it)."""
    require_open(cart)
    if cart.customer_id == customer_id:
        return cart
    mine = session.scalar(
        select(Cart)
        .where(Cart.customer_id == customer_id, Cart.status == "open", Cart.id != cart.id)
        .order_by(Cart.updated_at.desc())
        .limit(1)
    )
    if mine is None:
        cart.customer_id = customer_id
        touch(session, cart, channel)
        return cart
    _merge_into(session, cart, mine, channel, customer_id)
    return mine


def _merge_into(
    session: Session, cart: Cart, mine: Cart, channel: ChannelContext, customer_id: int
) -> None:
    """Lines, codes, email and address of ``cart`` join ``mine``; ``cart`` is merged."""
    actor = shopper(channel, customer_id)
    release_stock(session, cart, actor)
    release_stock(session, mine, actor)
    theirs = {
        (x.variant_id, x.delivery_mode, x.pickup_location_id): x for x in lines_of(session, mine.id)
    }
    for line in lines_of(session, cart.id):
        key = (line.variant_id, line.delivery_mode, line.pickup_location_id)
        if key in theirs:
            theirs[key].quantity = min(MAX_LINE_QUANTITY, theirs[key].quantity + line.quantity)
            session.delete(line)
        else:
            line.cart_id = mine.id
    mine.codes = list(dict.fromkeys([*mine.codes, *cart.codes]))
    mine.email = mine.email or cart.email
    mine.shipping_address = mine.shipping_address or cart.shipping_address
    cart.status = "merged"
    touch(session, mine, channel)
    session.flush()
    publish(
        session, CartMerged(from_cart_id=cart.id, into_cart_id=mine.id, customer_id=customer_id)
    )
