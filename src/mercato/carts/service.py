"""One cart across channels: lines, codes, delivery and totals.

A cart keeps its currency, its price list and its tax country whichever channel opens it,
so its prices and totals are the same in the web store, the app or the call centre; only
the language of names and the formatting of amounts follow the channel and locale. A
channel that cannot sell a line (assortment, currency, shipping country, stock) marks the
line with its reasons instead of dropping it.

A shopper may hold the cart's stock for a while (``hold_stock``): one reservation per
variant and location, referencing the cart, expiring by itself. Changing the lines lets
the hold go (the shopper holds again); checkout turns it into the order's own holds in the
same transaction, so the units the shopper held cannot be taken by anyone in between.

Totals are computed in this order, every amount in the currency's minor unit:
line subtotals -> shipping quote (on the pre-discount subtotal) -> promotions (item,
order and shipping discounts, allocated to lines) -> taxes on the discounted lines and
shipping -> grand total. With tax-inclusive prices the grand total is lines + shipping;
with tax-exclusive prices (or where tax is added at checkout) taxes are added on top.
"""

from __future__ import annotations

import importlib
import secrets
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.carts import import_charges, totals
from mercato.carts.models import Cart, CartLine
from mercato.carts.schemas import MAX_LINE_QUANTITY, AddressIn, DeliveryMode
from mercato.catalog import service as catalog
from mercato.channels.context import ChannelContext
from mercato.db import utcnow
from mercato.errors import (
    FieldError,
    Forbidden,
    NotFound,
    Problem,
    UnprocessableState,
    ValidationProblem,
)
from mercato.events import publish
from mercato.fulfillment import preview
from mercato.geocoding import locate
from mercato.inventory import service as inventory
from mercato.locations import service as locations
from mercato.loyalty import service as loyalty
from mercato.money import ZERO, quantize
from mercato.orders import service as orders
from mercato.pricing import service as pricing
from mercato.pricing.tax import TableTaxProvider, TaxAddress, TaxAddressIncomplete, TaxProvider
from mercato.promotions import engine
from mercato.promotions import service as promotions
from mercato.shipping import service as shipping
from mercato.shipping.carriers import Destination

if TYPE_CHECKING:
    from mercato.inventory.models import Reservation

CART_TOKEN_PREFIX = "crt"
HOLD_REFERENCE = "cart"
# A shopper's hold keeps units from everyone else for up to an hour: a cap per line keeps
# one anonymous cart from holding a whole sale (buying more needs no hold).
MAX_HELD_UNITS_PER_LINE = 10
MAX_LINES = 100
SHIPPING_LINE = "shipping"
# The cart prices without it, but its tax needs more of the address before checkout.
TAX_PENDING_ISSUE = "tax-address-incomplete"
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

_tax_provider: TaxProvider = TableTaxProvider()


def set_tax_provider(provider: TaxProvider) -> None:
    """Replace the built-in tax tables with an external tax service."""
    global _tax_provider
    _tax_provider = provider


def tax_provider() -> TaxProvider:
    return _tax_provider


def load_tax_provider(spec: str) -> TaxProvider:
    """The provider ``package.module:factory`` returns (the factory is called with no
    arguments; a class is a factory). A bad spec is a ValueError naming it, at start-up."""
    module_name, sep, name = spec.strip().partition(":")
    if not sep or not module_name or not name:
        raise ValueError(f"MERCATO_TAX_PROVIDER={spec!r}: expected 'package.module:factory'")
    try:
        factory = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"MERCATO_TAX_PROVIDER={spec!r}: {exc}") from exc
    provider = factory()
    if not isinstance(provider, TaxProvider):
        raise ValueError(f"MERCATO_TAX_PROVIDER={spec!r}: {provider!r} has no calculate()")
    return provider


def configure_tax_provider(spec: str | None) -> None:
    """Install the provider named by the setting; unset, the current one stays."""
    if spec:
        set_tax_provider(load_tax_provider(spec))


class CartClosed(UnprocessableState):
    code = "cart-closed"


# --- access -------------------------------------------------------------------------------


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


def _require_open(cart: Cart) -> None:
    if cart.status != "open":
        raise CartClosed(f"the cart is {cart.status}")


def _touch(session: Session, cart: Cart, channel: ChannelContext) -> None:
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


def is_held(cart: Cart) -> bool:
    return cart.held_until is not None and cart.held_until > utcnow()


def hold_stock(
    session: Session, cart: Cart, channel: ChannelContext, ttl: timedelta
) -> list[Reservation]:
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
    _touch(session, cart, channel)
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


def held_units(session: Session, cart: Cart) -> list[Reservation]:
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


# --- use cases ----------------------------------------------------------------------------


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
        "cart.created",
        {
            "cart_id": cart.id,
            "channel_id": channel.id,
            "customer_id": customer_id,
            "currency": chosen,
        },
        aggregate_type="cart",
        aggregate_id=cart.id,
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
    _require_open(cart)
    if variant_id not in catalog.variant_infos(session, [variant_id]):
        raise ValidationProblem.field("body.variant_id", f"unknown variant {variant_id}")
    if pickup_location_id is not None:
        _check_pickup(session, channel, pickup_location_id, "body.pickup_location_id")
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
        line = same
    else:
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
    release_stock(session, cart, shopper(channel, cart.customer_id))
    _touch(session, cart, channel)
    session.flush()
    return line


def update_line(
    session: Session,
    cart: Cart,
    channel: ChannelContext,
    line_id: int,
    changes: dict[str, Any],
) -> None:
    _require_open(cart)
    line = session.get(CartLine, line_id)
    if line is None or line.cart_id != cart.id:
        raise NotFound(f"line {line_id} is not in this cart")
    if changes.get("quantity") == 0:
        session.delete(line)
    else:
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
    release_stock(session, cart, shopper(channel, cart.customer_id))
    _touch(session, cart, channel)
    session.flush()


def update_cart(
    session: Session,
    cart: Cart,
    channel: ChannelContext,
    changes: dict[str, Any],
    shipping_address: AddressIn | None,
    billing_address: AddressIn | None,
) -> None:
    _require_open(cart)
    if "email" in changes:
        cart.email = changes["email"].lower() if changes["email"] else None
    # Addresses are placed on the map as they arrive (routing, stores near the shopper).
    if "shipping_address" in changes:
        before = (cart.shipping_address or {}).get("country") or cart.tax_country
        cart.shipping_address = (
            None if shipping_address is None else locate(shipping_address.model_dump(mode="json"))
        )
        cart.shipping_option_id = None  # options depend on the destination
        if shipping_address is not None and not changes.get("currency"):
            _follow_country(cart, channel, before, shipping_address.country)
    if "billing_address" in changes:
        cart.billing_address = (
            None if billing_address is None else locate(billing_address.model_dump(mode="json"))
        )
    if "shipping_option_id" in changes:
        cart.shipping_option_id = changes["shipping_option_id"]
    if changes.get("currency"):
        if not channel.sells_in(changes["currency"]):
            raise ValidationProblem.field(
                "body.currency", f"{channel.code} sells in {', '.join(channel.currencies)}"
            )
        cart.currency = changes["currency"]
        cart.shipping_option_id = None
    _touch(session, cart, channel)
    session.flush()


def _follow_country(
    cart: Cart, channel: ChannelContext, before: str | None, after: str
) -> None:
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
    _require_open(cart)
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
    _touch(session, cart, channel)
    return result


def remove_code(session: Session, cart: Cart, channel: ChannelContext, code: str) -> None:
    _require_open(cart)
    normalised = promotions.normalise_code(code)
    if normalised not in cart.codes:
        raise NotFound(f"code {normalised} is not on this cart")
    cart.codes = [c for c in cart.codes if c != normalised]
    _touch(session, cart, channel)


def attach_customer(
    session: Session, cart: Cart, channel: ChannelContext, customer_id: int
) -> Cart:
    """After login: an anonymous cart joins the customer's open cart (or becomes it)."""
    _require_open(cart)
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
        _touch(session, cart, channel)
        return cart
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
    _touch(session, mine, channel)
    session.flush()
    publish(
        session,
        "cart.merged",
        {"from_cart_id": cart.id, "into_cart_id": mine.id, "customer_id": customer_id},
        aggregate_type="cart",
        aggregate_id=mine.id,
    )
    return mine


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


# --- totals -------------------------------------------------------------------------------


@dataclass
class LineComputation:
    line: CartLine
    sku: str
    name: str
    options: dict[str, str]
    tax_class: str
    weight_g: int
    product_id: int
    category_ids: frozenset[int]
    unit_price: Decimal | None
    subtotal: Decimal = ZERO
    discount: Decimal = ZERO
    tax: Decimal = ZERO
    tax_rate: Decimal = ZERO
    total: Decimal = ZERO
    discounts: list[tuple[int, Decimal]] = field(default_factory=list)
    available: int = 0
    issues: list[str] = field(default_factory=list)


@dataclass
class ShippingChoice:
    option_id: str
    carrier: str
    service: str
    name: str
    amount: Decimal
    min_days: int | None
    max_days: int | None
    # The country the parcel leaves from (where routing would source it now).
    origin_country: str | None = None


@dataclass
class CodeStatus:
    code: str
    applied: bool
    reason: str | None


@dataclass
class CartComputation:
    cart: Cart
    channel: ChannelContext
    locale: str
    currency: str
    lines: list[LineComputation]
    subtotal: Decimal
    discount_total: Decimal
    shipping_total: Decimal
    shipping_discount: Decimal
    tax_total: Decimal
    grand_total: Decimal
    tax_included: bool
    taxes: list[dict[str, Any]]
    shipping_options: list[ShippingChoice]
    shipping_option: ShippingChoice | None
    promotions: list[engine.AppliedPromotion]
    promotion_result: engine.PromotionResult | None
    codes: list[CodeStatus]
    issues: list[str]
    # Why the tax is not known yet (the address lacks its US state): shown as pending.
    tax_pending: TaxAddressIncomplete | None = None
    # Import duty and tax of a cross-border parcel (None: domestic, or nothing ships).
    import_charges: import_charges.ImportCharges | None = None

    @property
    def can_checkout(self) -> bool:
        return not self.issues and all(not x.issues for x in self.lines) and bool(self.lines)


def _weight(lines: Sequence[LineComputation]) -> int:
    return sum(x.weight_g * x.line.quantity for x in lines)


def _quote(
    session: Session,
    cart: Cart,
    channel: ChannelContext,
    ship_lines: list[LineComputation],
    value: Decimal,
) -> list[ShippingChoice]:
    address = cart.shipping_address
    if not ship_lines or not address:
        return []
    origin = _ship_origin(session, cart, channel, ship_lines, address)
    if origin is None:
        return []
    options = shipping.quote(
        session,
        origin_country=origin,
        destination=Destination(
            address["country"], address.get("region"), address.get("postal_code")
        ),
        total_weight_g=max(1, _weight(ship_lines)),
        order_value=value,
        currency=cart.currency,
        at=utcnow(),
    )
    return [
        ShippingChoice(
            o.option_id,
            o.carrier_code,
            o.service_code,
            f"{o.carrier_name} {o.service_name}",
            o.amount,
            o.min_days,
            o.max_days,
            origin,
        )
        for o in options
    ]


def _ship_origin(
    session: Session,
    cart: Cart,
    channel: ChannelContext,
    ship_lines: list[LineComputation],
    address: dict[str, Any],
) -> str | None:
    """The country the parcel will leave from: the channel's only one, else where routing
    would source it now (a quote for the route the order will take)."""
    if len(channel.ship_origins) <= 1:
        return channel.ship_origin(address["country"])
    held = (
        [(r.variant_id, r.location_id, r.quantity) for r in held_units(session, cart)]
        if is_held(cart)
        else []
    )
    lines = [(x.line.variant_id, x.line.quantity) for x in ship_lines]
    likely = preview.likely_origin_country(session, channel, lines, address, held)
    return likely or channel.ship_origin(address["country"])


def _tax_address(cart: Cart) -> TaxAddress | None:
    address = cart.shipping_address or cart.billing_address
    if address:
        return TaxAddress(address["country"], address.get("region"), address.get("postal_code"))
    return TaxAddress(cart.tax_country) if cart.tax_country else None


def _line_issues(
    session: Session,
    cart: Cart,
    channel: ChannelContext,
    lines: list[LineComputation],
    infos: dict[int, catalog.VariantInfo],
    check_stock: bool = True,
) -> list[str]:
    issues: list[str] = []
    if not channel.sells_in(cart.currency):
        issues.append("currency-not-sold")
    address = cart.shipping_address
    if address and not channel.ships_to(address["country"]):
        issues.append("cannot-ship-to-country")
    ship_ids = {x.line.variant_id for x in lines if x.line.delivery_mode == "ship"}
    pickups: dict[int, set[int]] = defaultdict(set)
    for x in lines:
        if x.line.pickup_location_id is not None:
            pickups[x.line.pickup_location_id].add(x.line.variant_id)
    by_location = (
        inventory.availability_by_location(
            session,
            ship_ids | {v for ids in pickups.values() for v in ids},
            channel.location_ids | set(pickups),
        )
        if check_stock
        else {}
    )
    if check_stock and is_held(cart):
        # The cart's own hold is stock it may use: count it as free for this cart.
        for r in held_units(session, cart):
            here = by_location.setdefault(r.variant_id, {})
            here[r.location_id] = here.get(r.location_id, 0) + r.quantity
    ship_free = {
        v: sum(n for loc, n in by_location.get(v, {}).items() if loc in channel.location_ids)
        for v in ship_ids
    }
    pickup_free = {
        loc: {v: by_location.get(v, {}).get(loc, 0) for v in ids} for loc, ids in pickups.items()
    }
    wanted: dict[tuple[int, int | None], int] = defaultdict(int)
    for x in lines:
        wanted[(x.line.variant_id, x.line.pickup_location_id)] += x.line.quantity
    for x in lines:
        info = infos.get(x.line.variant_id)
        key = (x.line.variant_id, x.line.pickup_location_id)
        if x.line.pickup_location_id is None:
            x.available = ship_free.get(x.line.variant_id, 0)
        else:
            x.available = pickup_free[x.line.pickup_location_id].get(x.line.variant_id, 0)
        if info is None or not info.sellable:
            x.issues.append("unavailable")
        elif (
            channel.assortment_category_ids is not None
            and info.category_id not in channel.assortment_category_ids
        ):
            x.issues.append("not-in-assortment")
        if x.unit_price is None:
            x.issues.append("no-price")
        if "currency-not-sold" in issues:
            x.issues.append("currency-not-sold")
        if x.line.delivery_mode == "ship" and "cannot-ship-to-country" in issues:
            x.issues.append("cannot-ship-to-country")
        if (
            x.line.pickup_location_id is not None
            and x.line.pickup_location_id not in channel.location_ids
        ):
            x.issues.append("pickup-location-not-in-channel")
        if check_stock and x.available < wanted[key]:
            x.issues.append("insufficient-stock")
    return issues


def compute(
    session: Session,
    cart: Cart,
    channel: ChannelContext,
    locale: str,
    *,
    check_stock: bool = True,
) -> CartComputation:
    """Every figure of the cart, deterministic for the same cart, prices and rules.

    ``check_stock=False`` skips the availability read: checkout holds the stock itself
    (under lock) a moment later, so reading it twice would only cost a statement.
    """
    cart_lines = lines_of(session, cart.id)
    infos = catalog.variant_infos(session, [x.variant_id for x in cart_lines])
    shown = catalog.variant_displays(session, infos, locale)
    groups = loyalty.pricing_groups(session, cart.customer_id)
    prices = pricing.resolve_prices(
        session,
        infos,
        price_list=cart.price_list,
        currency=cart.currency,
        country=(cart.shipping_address or {}).get("country"),
        customer_groups=groups,
    )
    lines: list[LineComputation] = []
    for x in cart_lines:
        info = infos.get(x.variant_id)
        price = prices.get(x.variant_id)
        unit = None if price is None else price.amount
        lines.append(
            LineComputation(
                line=x,
                sku=info.sku if info else "?",
                name=shown[x.variant_id].name if info else "?",
                options=shown[x.variant_id].options if info else {},
                tax_class=info.tax_class if info else "standard",
                weight_g=(info.weight_g or 0) if info else 0,
                product_id=info.product_id if info else 0,
                category_ids=info.category_ids if info else frozenset(),
                unit_price=unit,
                subtotal=ZERO if unit is None else quantize(unit * x.quantity, cart.currency),
            )
        )
    issues = _line_issues(session, cart, channel, lines, infos, check_stock)
    priced = [x for x in lines if x.unit_price is not None]
    subtotal = sum((x.subtotal for x in priced), ZERO)
    ship_lines = [x for x in priced if x.line.delivery_mode == "ship"]
    options = _quote(session, cart, channel, ship_lines, subtotal)
    chosen = next((o for o in options if o.option_id == cart.shipping_option_id), None)
    if cart.customer_id is None and not cart.email:
        issues.append("email-required")
    if ship_lines and cart.shipping_address is None:
        issues.append("shipping-address-required")
    elif ship_lines and not options:
        issues.append("no-shipping-option")
    elif ship_lines and chosen is None:
        issues.append("shipping-option-required")
    shipping_amount = chosen.amount if chosen else ZERO
    result = _promotions(session, cart, channel, priced, shipping_amount, groups)
    shipping_discount = result.shipping_discount if result else ZERO
    for item in priced:
        if result is not None:
            applied = result.line(str(item.line.id))
            item.discount = applied.discount
            item.discounts = [(d.promotion_id, d.amount) for d in applied.discounts]
    inclusive = next((p.tax_inclusive for p in prices.values()), True)
    taxed = totals.assemble(
        cart.currency,
        inclusive,
        _tax_address(cart),
        [totals.LineAmounts(str(i.line.id), i.tax_class, i.subtotal, i.discount) for i in priced],
        shipping_amount - shipping_discount,
        _tax_provider,
    )
    for item in priced:
        line_tax = taxed.lines[str(item.line.id)]
        item.tax, item.tax_rate, item.total = line_tax.tax, line_tax.rate, line_tax.total
    if taxed.tax_pending is not None:
        issues.append(TAX_PENDING_ISSUE)
    estimate_for = chosen or next(iter(options), None)  # before a choice: the cheapest
    charges = _import_charges(
        session, cart, channel, ship_lines, infos, estimate_for, shipping_amount - shipping_discount
    )
    return CartComputation(
        cart=cart,
        channel=channel,
        locale=locale,
        currency=cart.currency,
        lines=lines,
        subtotal=subtotal,
        discount_total=sum((x.discount for x in priced), ZERO),
        shipping_total=shipping_amount - shipping_discount,
        shipping_discount=shipping_discount,
        tax_total=taxed.tax_total,
        grand_total=taxed.grand_total + (charges.paid_with_order if charges else ZERO),
        tax_included=taxed.tax_included,
        taxes=taxed.breakdown,
        shipping_options=options,
        shipping_option=chosen,
        promotions=list(result.applied) if result else [],
        promotion_result=result,
        codes=_code_statuses(cart, result),
        issues=issues,
        tax_pending=taxed.tax_pending,
        import_charges=charges,
    )


def _import_charges(
    session: Session,
    cart: Cart,
    channel: ChannelContext,
    ship_lines: list[LineComputation],
    infos: dict[int, catalog.VariantInfo],
    option: ShippingChoice | None,
    shipping_amount: Decimal,
) -> import_charges.ImportCharges | None:
    if option is None or not cart.shipping_address:
        return None
    goods = [import_charges.GoodsLine(x.line.variant_id, x.total - x.tax) for x in ship_lines]
    return import_charges.estimate(
        session,
        channel,
        option.origin_country,
        cart.shipping_address["country"],
        goods,
        infos,
        shipping_amount,
        cart.currency,
    )


def _promotions(
    session: Session,
    cart: Cart,
    channel: ChannelContext,
    priced: list[LineComputation],
    shipping_amount: Decimal,
    groups: frozenset[str],
) -> engine.PromotionResult | None:
    if not priced:
        return None
    first_order = (
        cart.customer_id is not None and orders.count_orders(session, cart.customer_id) == 0
    )
    lines = [
        engine.CartLine(
            line_id=str(x.line.id),
            variant_id=x.line.variant_id,
            product_id=x.product_id,
            category_ids=x.category_ids,
            quantity=x.line.quantity,
            unit_price=x.unit_price or ZERO,
        )
        for x in priced
    ]
    context = promotions.CartEvaluationContext(
        currency=cart.currency,
        channel_id=channel.id,
        now=utcnow(),
        customer_id=cart.customer_id,
        customer_groups=groups,
        first_order=first_order,
        shipping=shipping_amount,
        codes=list(cart.codes),
    )
    return promotions.evaluate(session, lines=lines, context=context)


def _code_statuses(cart: Cart, result: engine.PromotionResult | None) -> list[CodeStatus]:
    used = {a.code for a in result.applied if a.code} if result else set()
    rejected = {r.code: r.reason.value for r in result.rejected_codes} if result else {}
    return [
        CodeStatus(code, code in used, None if code in used else rejected.get(code))
        for code in cart.codes
    ]


def view_problem(computation: CartComputation) -> Problem:
    """Why a cart cannot be checked out, per line, as one 422."""
    errors = [FieldError("cart", i) for i in computation.issues if i != TAX_PENDING_ISSUE]
    if computation.tax_pending is not None:
        part = f"shipping_address.{computation.tax_pending.part}"
        errors.append(FieldError(part, str(computation.tax_pending)))
    errors += [
        FieldError(f"lines[{n}]", f"{x.sku}: {', '.join(x.issues)}")
        for n, x in enumerate(computation.lines)
        if x.issues
    ]
    if not computation.lines:
        errors.append(FieldError("lines", "the cart is empty"))
    only_stock = (
        all(set(x.issues) <= {"insufficient-stock"} for x in computation.lines)
        and not computation.issues
        and computation.lines
    )
    if only_stock:
        # Sold out meanwhile: the same answer a lost race for the last unit gets.
        return inventory.InsufficientStock(
            "not enough stock for: " + ", ".join(x.sku for x in computation.lines if x.issues),
            errors=errors,
        )
    return ValidationProblem(
        "the cart cannot be checked out as it is", code="cart-not-ready", errors=errors
    )
