"""A cart through checkout: claimed (open -> checking_out) once, then completed with its
order or opened again for another attempt.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from mercato.carts.access import CartClosed, get_cart
from mercato.carts.models import Cart
from mercato.db import utcnow
from mercato.errors import Forbidden
from mercato.orders import service as orders


def claim_by_token(
    session: Session, token: str, customer_id: int | None, *, email: str | None = None
) -> Cart:
    """open -> checking_out in one statement, returning the cart; 409 if it is not open.
    An ``email`` given at checkout becomes the cart's (a guest's order is sent there)."""
    cart = session.scalars(
        update(Cart)
        .where(Cart.token == token, Cart.status == "open")
        .values(status="checking_out", updated_at=utcnow(), version=Cart.version + 1)
        .returning(Cart)
        .execution_options(populate_existing=True, synchronize_session=False)
    ).one_or_none()
    if cart is None:
        get_cart(session, token, customer_id)  # 404 / 403 before "not open"
        raise CartClosed(
            "this cart is already being checked out or is closed", code="cart-checkout-in-progress"
        )
    if cart.customer_id is not None and cart.customer_id != customer_id:
        raise Forbidden(
            "this cart belongs to another customer; log in as that customer",
            code="cart-of-another-customer",
        )
    if email:
        cart.email = email.lower()
    return cart


def pending_order_of(session: Session, token: str) -> Any:
    """The order a checkout of this cart created and has not finished (if any)."""
    cart_id = session.scalar(select(Cart.id).where(Cart.token == token))
    if cart_id is None:
        return None
    return orders.pending_for_cart(session, cart_id)


def token_of(session: Session, cart_id: int) -> str | None:
    return session.scalar(select(Cart.token).where(Cart.id == cart_id))


def claim_for_checkout(session: Session, cart: Cart) -> None:
    """open -> checking_out, once: a second concurrent checkout of one cart gets a 409."""
    done = session.execute(
        update(Cart)
        .where(Cart.id == cart.id, Cart.status == "open")
        .values(status="checking_out", updated_at=utcnow(), version=Cart.version + 1)
    )
    if not getattr(done, "rowcount", 0):
        raise CartClosed(
            "this cart is already being checked out or is closed", code="cart-checkout-in-progress"
        )
    session.refresh(cart)


def finish_checkout(session: Session, cart_id: int, order_id: int, *, completed: bool) -> None:
    """After payment: completed with its order, or back to open for another attempt."""
    session.execute(
        update(Cart)
        .where(Cart.id == cart_id, Cart.status == "checking_out")
        .values(
            status="completed" if completed else "open",
            order_id=order_id if completed else None,
            updated_at=utcnow(),
            version=Cart.version + 1,
        )
    )
