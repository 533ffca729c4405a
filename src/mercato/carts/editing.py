"""A shopper's changes to a cart: open it, add and change lines (ship or pick up), set
email, addresses, shipping option and currency, apply and remove codes.

Every change of the lines lets the cart's hold go (the shopper holds again).
"""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy.orm import Session

from mercato.carts.access import lines_of, require_open, shopper, touch
from mercato.carts.computation import CartComputation, compute
from mercato.carts.event_types import CartCreated
from mercato.carts.holds import release_stock
from mercato.carts.models import Cart, CartLine
from mercato.carts.schemas import MAX_LINE_QUANTITY, AddressIn, DeliveryMode
from mercato.catalog import service as catalog
from mercato.channels.context import ChannelContext
from mercato.db import utcnow
from mercato.errors import FieldError, NotFound, UnprocessableState, ValidationProblem
from mercato.events import publish
from mercato.geocoding import locate
from mercato.locations import service as locations
from mercato.promotions import service as promotions

CART_TOKEN_PREFIX = "crt"
MAX_LINES = 100
# Codes that can never work are refused when applied; others stay (they may work later).
HARD_CODE_REASONS = frozenset(
    {
        "unknown-code",
        "expired",
        "customer-not-eligible",
        "duplicate-code",
        "not-started",
        "not-your-code",
        "inactive",
        "usage-limit-reached",
        "customer-limit-reached",
        "budget-exhausted",
        "sign-in-required",
    }
)


def create_cart(
    session: Session,
    channel: ChannelContext,
    customer_id: int | None,
    currency: str | None,
    country: str | None = None,
) -> Cart:
    """A cart in ``currency``, else in the currency the channel quotes ``country`` in (the
    shopper's country), else in its default. That country taxes the cart until an address
    says where it goes."""
    chosen = currency or channel.currency_for(country)
    if not channel.sells_in(chosen):
        raise ValidationProblem.field(
            "body.currency", f"{channel.code} sells in {', '.join(channel.currencies)}"
        )
    if not channel.price_list:
        raise UnprocessableState(f"channel {channel.code} has no price list", code="no-price-list")
    now = utcnow()
    cart = Cart(
        token=f"{CART_TOKEN_PREFIX}_{secrets.token_urlsafe(24)}",
        customer_id=customer_id,
        status="open",
        currency=chosen,
        price_list=channel.price_list,
        created_channel_id=channel.id,
        last_channel_id=channel.id,
        codes=[],
        version=1,
        tax_country=country or channel.country,
        created_at=now,
        updated_at=now,
    )
    session.add(cart)
    session.flush()
    publish(
        session,
        CartCreated(
            cart_id=cart.id, channel_id=channel.id, customer_id=customer_id, currency=chosen
        ),
    )
    return cart


def _check_pickup(session: Session, channel: ChannelContext, location_id: int, field: str) -> None:
    found = locations.get_locations(session, [location_id])
    if not found or not found[0].active:
        raise ValidationProblem.field(field, f"unknown location {location_id}")
    if not found[0].can_pickup:
        raise ValidationProblem.field(field, f"{found[0].code} does not offer pickup")
    if location_id not in channel.location_ids:
        raise ValidationProblem.field(field, f"{channel.code} does not sell from {found[0].code}")


def add_line(
    session: Session,
    cart: Cart,
    channel: ChannelContext,
    variant_id: int,
    quantity: int,
    mode: DeliveryMode,
    pickup_location_id: int | None,
) -> CartLine:
    """Add units; a line of the same variant and delivery grows instead of doubling."""
    require_open(cart)
    if variant_id not in catalog.variant_infos(session, [variant_id]):
        raise ValidationProblem.field("body.variant_id", f"unknown variant {variant_id}")
    if pickup_location_id is not None:
        _check_pickup(session, channel, pickup_location_id, "body.pickup_location_id")
    line = _grow_or_add(session, cart, variant_id, quantity, mode, pickup_location_id)
    release_stock(session, cart, shopper(channel, cart.customer_id))
    touch(session, cart, channel)
    session.flush()
    return line


def _grow_or_add(
    session: Session,
    cart: Cart,
    variant_id: int,
    quantity: int,
    mode: DeliveryMode,
    pickup_location_id: int | None,
) -> CartLine:
    """The line of the same variant and delivery, grown; else a new line."""
    existing = lines_of(session, cart.id)
    same = next(
        (
            x
            for x in existing
            if x.variant_id == variant_id
            and x.delivery_mode == mode
            and x.pickup_location_id == pickup_location_id
        ),
        None,
    )
    if same is not None:
        if same.quantity + quantity > MAX_LINE_QUANTITY:
            raise ValidationProblem.field(
                "body.quantity", f"a line holds at most {MAX_LINE_QUANTITY} units"
            )
        same.quantity += quantity
        return same
    if len(existing) >= MAX_LINES:
        raise ValidationProblem.field("body", f"a cart holds at most {MAX_LINES} lines")
    line = CartLine(
        cart_id=cart.id,
        variant_id=variant_id,
        quantity=quantity,
        delivery_mode=mode.value,
        pickup_location_id=pickup_location_id,
        added_at=utcnow(),
    )
    session.add(line)
    return line


def update_line(
    session: Session,
    cart: Cart,
    channel: ChannelContext,
    line_id: int,
    changes: dict[str, Any],
) -> None:
    require_open(cart)
    line = session.get(CartLine, line_id)
    if line is None or line.cart_id != cart.id:
        raise NotFound(f"line {line_id} is not in this cart")
    if changes.get("quantity") == 0:
        session.delete(line)
    else:
        _change_line(session, channel, line, changes)
    release_stock(session, cart, shopper(channel, cart.customer_id))
    touch(session, cart, channel)
    session.flush()


def _change_line(
    session: Session, channel: ChannelContext, line: CartLine, changes: dict[str, Any]
) -> None:
    if changes.get("quantity") is not None:
        line.quantity = int(changes["quantity"])
    if "delivery_mode" in changes and changes["delivery_mode"] is not None:
        mode = DeliveryMode(changes["delivery_mode"])
        pickup = changes.get("pickup_location_id")
        if (mode is DeliveryMode.PICKUP) != (pickup is not None):
            raise ValidationProblem.field(
                "body.pickup_location_id", "required for pickup, and only for pickup"
            )
        if pickup is not None:
            _check_pickup(session, channel, int(pickup), "body.pickup_location_id")
        line.delivery_mode, line.pickup_location_id = mode.value, pickup


def update_cart(
    session: Session,
    cart: Cart,
    channel: ChannelContext,
    changes: dict[str, Any],
    shipping_address: AddressIn | None,
    billing_address: AddressIn | None,
) -> None:
    require_open(cart)
    if "email" in changes:
        cart.email = changes["email"].lower() if changes["email"] else None
    # Addresses are placed on the map as they arrive (routing, stores near the shopper).
    if "shipping_address" in changes:
        _ship_to(cart, channel, shipping_address, follow_country=not changes.get("currency"))
    if "billing_address" in changes:
        cart.billing_address = (
            None if billing_address is None else locate(billing_address.model_dump(mode="json"))
        )
    if "shipping_option_id" in changes:
        cart.shipping_option_id = changes["shipping_option_id"]
    if changes.get("currency"):
        _set_currency(cart, channel, changes["currency"])
    touch(session, cart, channel)
    session.flush()


def _ship_to(
    cart: Cart, channel: ChannelContext, address: AddressIn | None, *, follow_country: bool
) -> None:
    before = (cart.shipping_address or {}).get("country") or cart.tax_country
    cart.shipping_address = None if address is None else locate(address.model_dump(mode="json"))
    cart.shipping_option_id = None  # options depend on the destination
    if address is not None and follow_country:
        _follow_country(cart, channel, before, address.country)


def _set_currency(cart: Cart, channel: ChannelContext, currency: str) -> None:
    if not channel.sells_in(currency):
        raise ValidationProblem.field(
            "body.currency", f"{channel.code} sells in {', '.join(channel.currencies)}"
        )
    cart.currency = currency
    cart.shipping_option_id = None


def _follow_country(cart: Cart, channel: ChannelContext, before: str | None, after: str) -> None:
    """A cart in the currency its channel quotes its country in follows a new shipping
    country to that country's currency; a currency the shopper picked stays, and so does
    the currency of a cart opened in another channel (it keeps its price list)."""
    if cart.created_channel_id != channel.id or cart.currency != channel.currency_for(before):
        return
    cart.currency = channel.currency_for(after)


def apply_code(
    session: Session, cart: Cart, channel: ChannelContext, code: str, locale: str
) -> CartComputation:
    """Keep the code if it could work for this cart; refuse codes that never can."""
    require_open(cart)
    normalised = promotions.normalise_code(code)
    if normalised in cart.codes:
        return compute(session, cart, channel, locale)
    cart.codes = [*cart.codes, normalised]
    result = compute(session, cart, channel, locale)
    reason = next((c.reason for c in result.codes if c.code == normalised and not c.applied), None)
    if reason in HARD_CODE_REASONS:
        cart.codes = [c for c in cart.codes if c != normalised]
        raise ValidationProblem(
            f"code {normalised}: {reason}",
            code="code-not-applicable",
            errors=[FieldError("body.code", str(reason))],
        )
    touch(session, cart, channel)
    return result


def remove_code(session: Session, cart: Cart, channel: ChannelContext, code: str) -> None:
    require_open(cart)
    normalised = promotions.normalise_code(code)
    if normalised not in cart.codes:
        raise NotFound(f"code {normalised} is not on this cart")
    cart.codes = [c for c in cart.codes if c != normalised]
    touch(session, cart, channel)
