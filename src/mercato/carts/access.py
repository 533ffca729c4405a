"""Finding a cart and the small rules every change of it follows: it must be open, each
change bumps its version, and a shopper acts as a customer or as the channel.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.carts.models import Cart, CartLine
from mercato.channels.context import ChannelContext
from mercato.db import utcnow
from mercato.errors import Forbidden, NotFound, UnprocessableState


class CartClosed(UnprocessableState):
    code = "cart-closed"


def get_cart(session: Session, token: str, customer_id: int | None) -> Cart:
    """The cart behind ``token``; a cart that belongs to a customer needs that customer."""
    cart = session.scalar(select(Cart).where(Cart.token == token))
    if cart is None or cart.status == "merged":
        raise NotFound("cart not found", code="cart-not-found")
    if cart.customer_id is not None and cart.customer_id != customer_id:
        raise Forbidden(
            "this cart belongs to another customer; log in as that customer",
            code="cart-of-another-customer",
        )
    return cart


def lines_of(session: Session, cart_id: int) -> list[CartLine]:
    return list(
        session.scalars(select(CartLine).where(CartLine.cart_id == cart_id).order_by(CartLine.id))
    )


def require_open(cart: Cart) -> None:
    if cart.status != "open":
        raise CartClosed(f"the cart is {cart.status}")


def touch(session: Session, cart: Cart, channel: ChannelContext) -> None:
    cart.last_channel_id = channel.id
    cart.updated_at = utcnow()
    cart.version += 1


def shopper(channel: ChannelContext, customer_id: int | None) -> Principal:
    """Who acts when a shopper changes a cart (written on stock movements)."""
    return Principal(
        kind="customer" if customer_id else "channel",
        id=customer_id,
        label=channel.code,
        channel_id=channel.id,
        customer_id=customer_id,
    )
