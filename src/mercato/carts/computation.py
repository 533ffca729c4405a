"""A cart's figures: every line priced, discounted and taxed, the shipping options, the
import charges, and why the cart cannot be checked out yet.

Totals are computed in this order, every amount in the currency's minor unit:
line subtotals -> shipping quote (on the pre-discount subtotal) -> promotions (item,
order and shipping discounts, allocated to lines) -> taxes on the discounted lines and
shipping -> grand total. With tax-inclusive prices the grand total is lines + shipping;
with tax-exclusive prices (or where tax is added at checkout) taxes are added on top.

A channel that cannot sell a line (assortment, currency, shipping country, stock) marks
the line with its reasons instead of dropping it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from mercato.carts import import_charges, totals
from mercato.carts.access import lines_of
from mercato.carts.holds import held_units, is_held
from mercato.carts.models import Cart, CartLine
from mercato.carts.tax_setting import tax_provider
from mercato.catalog import service as catalog
from mercato.channels.context import ChannelContext
from mercato.db import utcnow
from mercato.errors import FieldError, Problem, ValidationProblem
from mercato.fulfillment import preview
from mercato.inventory import service as inventory
from mercato.loyalty import service as loyalty
from mercato.money import ZERO, quantize
from mercato.orders import service as orders
from mercato.pricing import service as pricing
from mercato.pricing.tax import TaxAddress, TaxAddressIncomplete
from mercato.promotions import engine
from mercato.promotions import service as promotions
from mercato.shipping import service as shipping
from mercato.shipping.carriers import Destination

SHIPPING_LINE = "shipping"
# The cart prices without it, but its tax needs more of the address before checkout.
TAX_PENDING_ISSUE = "tax-address-incomplete"


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
    """The cart's own issues; each line gets its availability and its issues."""
    issues: list[str] = []
    if not channel.sells_in(cart.currency):
        issues.append("currency-not-sold")
    address = cart.shipping_address
    if address and not channel.ships_to(address["country"]):
        issues.append("cannot-ship-to-country")
    ship_free, pickup_free = _free_stock(session, cart, channel, lines, check_stock)
    wanted: dict[tuple[int, int | None], int] = defaultdict(int)
    for x in lines:
        wanted[(x.line.variant_id, x.line.pickup_location_id)] += x.line.quantity
    for x in lines:
        key = (x.line.variant_id, x.line.pickup_location_id)
        if x.line.pickup_location_id is None:
            x.available = ship_free.get(x.line.variant_id, 0)
        else:
            x.available = pickup_free[x.line.pickup_location_id].get(x.line.variant_id, 0)
        _mark_line(x, infos.get(x.line.variant_id), channel, issues)
        if check_stock and x.available < wanted[key]:
            x.issues.append("insufficient-stock")
    return issues


def _free_stock(
    session: Session,
    cart: Cart,
    channel: ChannelContext,
    lines: list[LineComputation],
    check_stock: bool,
) -> tuple[dict[int, int], dict[int, dict[int, int]]]:
    """Units free to ship per variant (over the channel's locations), and free to pick up
    per store and variant; the cart's own hold counts as free for it."""
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
    return ship_free, pickup_free


def _mark_line(
    x: LineComputation,
    info: catalog.VariantInfo | None,
    channel: ChannelContext,
    cart_issues: list[str],
) -> None:
    """Why the channel cannot sell the line, stock aside."""
    if info is None or not info.sellable:
        x.issues.append("unavailable")
    elif (
        channel.assortment_category_ids is not None
        and info.category_id not in channel.assortment_category_ids
    ):
        x.issues.append("not-in-assortment")
    if x.unit_price is None:
        x.issues.append("no-price")
    if "currency-not-sold" in cart_issues:
        x.issues.append("currency-not-sold")
    if x.line.delivery_mode == "ship" and "cannot-ship-to-country" in cart_issues:
        x.issues.append("cannot-ship-to-country")
    if (
        x.line.pickup_location_id is not None
        and x.line.pickup_location_id not in channel.location_ids
    ):
        x.issues.append("pickup-location-not-in-channel")


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
    lines = [
        _line_computation(x, infos.get(x.variant_id), shown, prices.get(x.variant_id), cart)
        for x in cart_lines
    ]
    issues = _line_issues(session, cart, channel, lines, infos, check_stock)
    priced = [x for x in lines if x.unit_price is not None]
    subtotal = sum((x.subtotal for x in priced), ZERO)
    ship_lines = [x for x in priced if x.line.delivery_mode == "ship"]
    options = _quote(session, cart, channel, ship_lines, subtotal)
    chosen = next((o for o in options if o.option_id == cart.shipping_option_id), None)
    issues += _checkout_issues(cart, ship_lines, options, chosen)
    shipping_amount = chosen.amount if chosen else ZERO
    result = _promotions(session, cart, channel, priced, shipping_amount, groups)
    shipping_discount = result.shipping_discount if result else ZERO
    _apply_discounts(priced, result)
    inclusive = next((p.tax_inclusive for p in prices.values()), True)
    taxed = _taxes(cart, inclusive, priced, shipping_amount - shipping_discount)
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


def _line_computation(
    x: CartLine,
    info: catalog.VariantInfo | None,
    shown: Mapping[int, catalog.VariantDisplay],
    price: pricing.ResolvedPrice | None,
    cart: Cart,
) -> LineComputation:
    """A line as its variant and price make it, before discounts and taxes."""
    unit = None if price is None else price.amount
    return LineComputation(
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


def _checkout_issues(
    cart: Cart,
    ship_lines: list[LineComputation],
    options: list[ShippingChoice],
    chosen: ShippingChoice | None,
) -> list[str]:
    """What checkout still needs: an email for a guest, and a way to ship."""
    issues: list[str] = []
    if cart.customer_id is None and not cart.email:
        issues.append("email-required")
    if ship_lines and cart.shipping_address is None:
        issues.append("shipping-address-required")
    elif ship_lines and not options:
        issues.append("no-shipping-option")
    elif ship_lines and chosen is None:
        issues.append("shipping-option-required")
    return issues


def _apply_discounts(priced: list[LineComputation], result: engine.PromotionResult | None) -> None:
    if result is None:
        return
    for item in priced:
        applied = result.line(str(item.line.id))
        item.discount = applied.discount
        item.discounts = [(d.promotion_id, d.amount) for d in applied.discounts]


def _taxes(
    cart: Cart, inclusive: bool, priced: list[LineComputation], shipping: Decimal
) -> totals.Totals:
    """The cart's taxes by the configured provider; each line gets its tax and total."""
    taxed = totals.assemble(
        cart.currency,
        inclusive,
        _tax_address(cart),
        [totals.LineAmounts(str(i.line.id), i.tax_class, i.subtotal, i.discount) for i in priced],
        shipping,
        tax_provider(),
    )
    for item in priced:
        line_tax = taxed.lines[str(item.line.id)]
        item.tax, item.tax_rate, item.total = line_tax.tax, line_tax.rate, line_tax.total
    return taxed


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
