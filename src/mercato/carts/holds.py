"""A shopper's hold of the cart's stock: one reservation per variant and location,
referencing the cart, expiring by itself.

Changing the lines lets the hold go (the shopper holds again); checkout turns it into the
order's own holds in the same transaction, so the units the shopper held cannot be taken
by anyone in between.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.carts.access import CartClosed, lines_of, shopper, touch
from mercato.carts.models import Cart
from mercato.channels.context import ChannelContext
from mercato.db import utcnow
from mercato.errors import ValidationProblem
from mercato.inventory import service as inventory

HOLD_REFERENCE = "cart"
# A shopper's hold keeps units from everyone else for up to an hour: a cap per line keeps
# one anonymous cart from holding a whole sale (buying more needs no hold).
MAX_HELD_UNITS_PER_LINE = 10


def is_held(cart: Cart) -> bool:
    return cart.held_until is not None and cart.held_until > utcnow()


def hold_stock(
    session: Session, cart: Cart, channel: ChannelContext, ttl: timedelta
) -> list[inventory.Reservation]:
    """Hold every line's units for ``ttl`` (all or nothing; 409 when stock is short).

    Holding again replaces the previous hold, so the hold always matches the lines. Lines
    are summed per variant (and pickup store) by the inventory before anything is held.
    """
    _lock_open(session, cart)
    cart_lines = lines_of(session, cart.id)
    if not cart_lines:
        raise ValidationProblem.field("lines", "the cart is empty")
    for n, x in enumerate(cart_lines):
        if x.quantity > MAX_HELD_UNITS_PER_LINE:
            raise ValidationProblem.field(
                f"lines[{n}].quantity",
                f"a hold takes at most {MAX_HELD_UNITS_PER_LINE} units per line; "
                "check out to buy more",
            )
    actor = shopper(channel, cart.customer_id)
    release_stock(session, cart, actor)
    held = inventory.hold(
        session,
        inventory.Context(actor, channel.id, HOLD_REFERENCE, str(cart.id)),
        [inventory.HoldLine(x.variant_id, x.quantity, x.pickup_location_id) for x in cart_lines],
        candidate_locations=channel.location_order,
        ttl=ttl,
    )
    cart.held_until = utcnow() + ttl
    touch(session, cart, channel)
    session.flush()
    return held


def _lock_open(session: Session, cart: Cart) -> None:
    """Take the cart's row for this transaction, and refresh it, if it is still open.

    Two holds of one cart, or a hold and a checkout, then run one after the other: the
    second sees the first one's hold (and releases it) or finds the cart checking out.
    """
    locked = session.scalars(
        update(Cart)
        .where(Cart.id == cart.id, Cart.status == "open")
        .values(version=Cart.version + 1, updated_at=utcnow())
        .returning(Cart)
        .execution_options(populate_existing=True, synchronize_session=False)
    ).one_or_none()
    if locked is None:
        session.refresh(cart)
        raise CartClosed(f"the cart is {cart.status}")


def held_units(session: Session, cart: Cart) -> list[inventory.Reservation]:
    """The reservations the cart's hold still has (none once it expired or was let go)."""
    if cart.held_until is None:
        return []
    return inventory.active_reservations_for(session, HOLD_REFERENCE, str(cart.id))


def held_until(session: Session, cart: Cart) -> datetime | None:
    """When the cart's hold ends, or None when it holds nothing (any more)."""
    if not is_held(cart) or not held_units(session, cart):
        return None
    return cart.held_until


def let_hold_go(session: Session, cart: Cart, channel: ChannelContext) -> int:
    """The shopper gives the held units back now (the cart must be open)."""
    _lock_open(session, cart)
    return release_stock(session, cart, shopper(channel, cart.customer_id))


def release_stock(session: Session, cart: Cart, actor: Principal) -> int:
    """Let the cart's hold go; how many reservations were still active."""
    if cart.held_until is None:
        return 0
    active = held_units(session, cart)
    if active:
        ctx = inventory.Context(actor, cart.last_channel_id, HOLD_REFERENCE, str(cart.id))
        inventory.release(session, ctx, [r.id for r in active])
    cart.held_until = None
    return len(active)
