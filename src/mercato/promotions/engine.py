"""Promotion engine: which promotions apply to a cart, and what each one takes off which line.

Pure computation: the promotions service loads promotions and codes, maps the codes the
shopper applied to their promotions, counts redemptions, and calls :func:`apply_promotions`.
Nothing here reads a clock, a database or a setting, so the same input always gives the same
result.

Amounts
-------
Every amount is a ``Decimal`` in the cart currency and quantized to its minor unit (JPY and
VND 0 decimals, EUR 2, KWD 3). Unit prices and the shipping amount must already be quantized;
a ``ValueError`` says so otherwise. Each line starts with a *remaining* amount equal to
``unit_price * quantity``; every applied discount is taken off the remaining amount of the
lines it touches, and shipping has its own remaining amount. A discount never exceeds what
remains of its line (or of shipping), so no line and no shipping ever goes below zero.

Lines marked ``discountable=False`` (gift cards) count in the subtotal and nowhere else: they
never match an item selector, never count towards a minimum subtotal or quantity, and never
receive a share of an order discount.

Rounding: an item percentage is computed on each line and rounded half-up once per line. An
order discount is computed on the sum of the remaining amounts of the discountable lines
(percentages rounded half-up once), then spread over those lines in proportion to their
remaining amounts with :func:`mercato.money.allocate`, so every discount lives on a line and
the order total is reproducible from its lines. Buy-X-get-Y and bundle discounts are computed
exactly and rounded half-up once per line (buy X get Y) or once per promotion before being
allocated (bundles).

Order of evaluation
-------------------
Promotions are taken one at a time, highest ``priority`` first, equal priorities by ascending
``id``; the order they are passed in never matters (lines are likewise processed by
``line_id``). For each promotion, in that order:

1. A promotion with ``requires_code`` is skipped, silently, unless one of the applied codes
   maps to it. When several applied codes map to one promotion the alphabetically first is
   used and the others are reported as ``duplicate-code``. A code may also name a promotion
   that does not require one; it is then reported as the code used when that one applies.
2. Its conditions are checked in this order; the first that fails is the reason reported
   for its code: ``not-started`` (``now < starts_at``), ``expired`` (``now >= ends_at``),
   ``channel-not-eligible``, ``currency-not-eligible`` (the cart currency is not among
   ``currencies``, or the promotion has a minimum subtotal but none in this currency),
   ``customer-not-eligible`` (``customer_ids`` or ``customer_groups`` not met; guests meet
   neither), ``first-order-only``, ``no-matching-items`` / ``quantity-not-met`` (fewer than
   ``min_quantity`` discountable units match ``required_items``), ``minimum-not-met`` (the
   remaining amount of the discountable lines, i.e. after the promotions applied before this
   one, is below the minimum).
3. Combinability: if an earlier promotion with mode ``exclusive`` or ``stop`` has applied,
   or this promotion is ``exclusive`` and any promotion has already applied, it is skipped
   as ``not-combinable``.
4. Its action is computed on the remaining amounts. An action that takes nothing off (no
   matching lines: ``no-matching-items``; too few of them for buy X get Y:
   ``quantity-not-met``; no amount for the cart currency: ``currency-not-eligible``;
   nothing left to discount or a bundle price above the normal price: ``no-discount``) does
   not count as applied, so it neither blocks an exclusive promotion nor stops anything.
5. Otherwise it is applied: its line (and shipping) discounts are taken off the remaining
   amounts, and if its mode is ``exclusive`` or ``stop`` no later promotion applies.

Stacking modes, as a consequence:

* ``stackable``: applies on top of the promotions before it, computed on what they left of
  each line and of shipping; later promotions may still apply.
* ``exclusive``: applies only when no promotion has applied before it (a higher-priority or
  equal-priority-lower-id promotion that applied blocks it); once it applies, nothing after
  it applies.
* ``stop``: applies on top of the promotions before it, like ``stackable``, and then nothing
  after it applies.

Every applied code that did not end up attached to an applied promotion gets exactly one
machine-readable reason (see :class:`Reason`), including ``unknown-code`` for a code the caller
could not map to any of the promotions passed in.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Context, Decimal, DivisionByZero, InvalidOperation, Overflow, localcontext
from enum import StrEnum
from fractions import Fraction
from typing import ClassVar

from mercato.money import (
    ZERO,
    allocate,
    check_precision,
    from_minor,
    minor_units,
    quantize,
    validate_currency,
)

HUNDRED = Decimal(100)
# Divisions (allocation weights, percentages) must not depend on the caller's decimal context;
# 60 digits keeps every intermediate exact enough that rounding happens only where intended.
_EXACT = Context(prec=60, traps=[InvalidOperation, DivisionByZero, Overflow])


class StackingMode(StrEnum):
    STACKABLE = "stackable"
    EXCLUSIVE = "exclusive"
    STOP = "stop"


class DiscountKind(StrEnum):
    ITEMS = "items"
    ORDER = "order"
    SHIPPING = "shipping"


class Reason(StrEnum):
    """Why an applied code gave no discount (stable values: carts translate them)."""

    UNKNOWN_CODE = "unknown-code"
    DUPLICATE_CODE = "duplicate-code"
    NOT_STARTED = "not-started"
    EXPIRED = "expired"
    CHANNEL_NOT_ELIGIBLE = "channel-not-eligible"
    CURRENCY_NOT_ELIGIBLE = "currency-not-eligible"
    CUSTOMER_NOT_ELIGIBLE = "customer-not-eligible"
    FIRST_ORDER_ONLY = "first-order-only"
    NO_MATCHING_ITEMS = "no-matching-items"
    QUANTITY_NOT_MET = "quantity-not-met"
    MINIMUM_NOT_MET = "minimum-not-met"
    NOT_COMBINABLE = "not-combinable"
    NO_DISCOUNT = "no-discount"
    # Reported by the promotions service, never by this engine: the code or its promotion
    # cannot be used at all (state, limits, ownership), so it is not passed in.
    INACTIVE = "inactive"
    USAGE_LIMIT_REACHED = "usage-limit-reached"
    CUSTOMER_LIMIT_REACHED = "customer-limit-reached"
    BUDGET_EXHAUSTED = "budget-exhausted"
    NOT_YOUR_CODE = "not-your-code"
    SIGN_IN_REQUIRED = "sign-in-required"


# --- inputs -------------------------------------------------------------------------------


def _require_aware(value: datetime | None, what: str) -> None:
    if value is not None and value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware")


def _check_percent(percent: Decimal) -> None:
    if not (ZERO < percent <= HUNDRED):
        raise ValueError("percent must be above 0 and at most 100")


def _check_amounts(amounts: Mapping[str, Decimal], what: str) -> None:
    for currency, amount in amounts.items():
        if amount < ZERO:
            raise ValueError(f"{what} in {currency} must not be negative")
        check_precision(amount, currency)


@dataclass(frozen=True, kw_only=True)
class CartLine:
    """One cart line; ``category_ids`` holds the product's categories and all their ancestors."""

    line_id: str
    variant_id: int
    product_id: int
    category_ids: frozenset[int] = frozenset()
    quantity: int
    unit_price: Decimal
    discountable: bool = True

    def __post_init__(self) -> None:
        if self.quantity < 1:
            raise ValueError("quantity must be at least 1")
        if self.unit_price < ZERO:
            raise ValueError("unit_price must not be negative")

    @property
    def subtotal(self) -> Decimal:
        return self.unit_price * self.quantity


@dataclass(frozen=True, kw_only=True)
class ItemSelector:
    """Lines whose product, variant or any category is listed (any of the three)."""

    product_ids: frozenset[int] = frozenset()
    variant_ids: frozenset[int] = frozenset()
    category_ids: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        # An empty selector would silently match nothing; "every item" is spelt None.
        if not (self.product_ids or self.variant_ids or self.category_ids):
            raise ValueError("an item selector needs a product, variant or category")

    def matches(self, line: CartLine) -> bool:
        return (
            line.variant_id in self.variant_ids
            or line.product_id in self.product_ids
            or not self.category_ids.isdisjoint(line.category_ids)
        )


@dataclass(frozen=True, kw_only=True)
class Conditions:
    """All must hold; an empty set or ``None`` means no restriction.

    The item condition is checked when ``required_items`` is set or ``min_quantity`` is above
    1 (``required_items=None`` then counts every discountable unit).
    """

    channel_ids: frozenset[int] = frozenset()
    currencies: frozenset[str] = frozenset()
    customer_ids: frozenset[int] = frozenset()
    customer_groups: frozenset[str] = frozenset()
    first_order_only: bool = False
    min_subtotal: Mapping[str, Decimal] = field(default_factory=dict)
    required_items: ItemSelector | None = None
    min_quantity: int = 1
    starts_at: datetime | None = None
    ends_at: datetime | None = None

    def __post_init__(self) -> None:
        if self.min_quantity < 1:
            raise ValueError("min_quantity must be at least 1")
        _check_amounts(self.min_subtotal, "min_subtotal")
        _require_aware(self.starts_at, "starts_at")
        _require_aware(self.ends_at, "ends_at")
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")


@dataclass(frozen=True, kw_only=True)
class PercentOffItems:
    """``percent`` off every matching line (``items=None``: every discountable line)."""

    action_type: ClassVar[str] = "percent_off_items"
    percent: Decimal
    items: ItemSelector | None = None

    def __post_init__(self) -> None:
        _check_percent(self.percent)


@dataclass(frozen=True, kw_only=True)
class AmountOffItems:
    """A fixed amount off each matching unit, per currency (never more than the line)."""

    action_type: ClassVar[str] = "amount_off_items"
    amounts: Mapping[str, Decimal]
    items: ItemSelector | None = None

    def __post_init__(self) -> None:
        _check_amounts(self.amounts, "amounts")


@dataclass(frozen=True, kw_only=True)
class PercentOffOrder:
    action_type: ClassVar[str] = "percent_off_order"
    percent: Decimal

    def __post_init__(self) -> None:
        _check_percent(self.percent)


@dataclass(frozen=True, kw_only=True)
class AmountOffOrder:
    """A fixed amount off the order, per currency (never more than what remains of it)."""

    action_type: ClassVar[str] = "amount_off_order"
    amounts: Mapping[str, Decimal]

    def __post_init__(self) -> None:
        _check_amounts(self.amounts, "amounts")


@dataclass(frozen=True, kw_only=True)
class BuyXGetY:
    """For every ``buy + get`` matching units, the ``get`` cheapest are ``percent`` off.

    The discounted units are the cheapest matching units of the whole cart (by remaining
    amount per unit, ties by line id), repeated as often as the cart allows, at most
    ``max_repeats`` times.
    """

    action_type: ClassVar[str] = "buy_x_get_y"
    buy_quantity: int
    get_quantity: int
    percent: Decimal = HUNDRED
    items: ItemSelector | None = None
    max_repeats: int | None = None

    def __post_init__(self) -> None:
        if self.buy_quantity < 1 or self.get_quantity < 1:
            raise ValueError("buy_quantity and get_quantity must be at least 1")
        _check_percent(self.percent)
        if self.max_repeats is not None and self.max_repeats < 1:
            raise ValueError("max_repeats must be at least 1")


@dataclass(frozen=True, kw_only=True)
class ShippingDiscount:
    """``percent`` off shipping; the default 100 is free shipping."""

    action_type: ClassVar[str] = "shipping"
    percent: Decimal = HUNDRED

    def __post_init__(self) -> None:
        _check_percent(self.percent)


@dataclass(frozen=True, kw_only=True)
class BundleComponent:
    """``quantity`` units of one variant, or of any variant of one product."""

    variant_id: int | None = None
    product_id: int | None = None
    quantity: int = 1

    def __post_init__(self) -> None:
        if (self.variant_id is None) == (self.product_id is None):
            raise ValueError("a bundle component names either a variant or a product")
        if self.quantity < 1:
            raise ValueError("quantity must be at least 1")

    def matches(self, line: CartLine) -> bool:
        if self.variant_id is not None:
            return line.variant_id == self.variant_id
        return line.product_id == self.product_id


@dataclass(frozen=True, kw_only=True)
class FixedPriceBundle:
    """Each complete set of ``components`` in the cart sells for ``prices[currency]``.

    Bundles are assembled one after another while complete ones remain (at most
    ``max_repeats``). Variant components are filled before product components, because a
    product component could otherwise take the only unit a variant component can use; each
    component takes the units with the highest remaining amount per unit first (ties by line
    id). A bundle's normal price is what remains of its component units after the promotions
    applied before it; a bundle whose normal price is below its price gives no discount.
    """

    action_type: ClassVar[str] = "fixed_price_bundle"
    components: tuple[BundleComponent, ...]
    prices: Mapping[str, Decimal]
    max_repeats: int | None = None

    def __post_init__(self) -> None:
        if not self.components:
            raise ValueError("a bundle needs at least one component")
        _check_amounts(self.prices, "prices")
        if self.max_repeats is not None and self.max_repeats < 1:
            raise ValueError("max_repeats must be at least 1")


Action = (
    PercentOffItems
    | AmountOffItems
    | PercentOffOrder
    | AmountOffOrder
    | BuyXGetY
    | ShippingDiscount
    | FixedPriceBundle
)

ACTION_TYPES: Mapping[str, type[Action]] = {
    cls.action_type: cls
    for cls in (
        PercentOffItems,
        AmountOffItems,
        PercentOffOrder,
        AmountOffOrder,
        BuyXGetY,
        ShippingDiscount,
        FixedPriceBundle,
    )
}


def action_kind(action: Action) -> DiscountKind:
    if isinstance(action, PercentOffOrder | AmountOffOrder):
        return DiscountKind.ORDER
    if isinstance(action, ShippingDiscount):
        return DiscountKind.SHIPPING
    return DiscountKind.ITEMS


@dataclass(frozen=True, kw_only=True)
class Promotion:
    id: int
    name: str
    action: Action
    priority: int = 0
    stacking: StackingMode = StackingMode.STACKABLE
    requires_code: bool = False
    conditions: Conditions = field(default_factory=Conditions)


@dataclass(frozen=True, kw_only=True)
class CartContext:
    """Everything about the cart except its lines.

    ``codes`` maps each code the shopper applied (normalised) to the id of its promotion, or
    to ``None`` when the caller found no usable promotion for it.
    """

    currency: str
    channel_id: int
    now: datetime
    customer_id: int | None = None
    customer_groups: frozenset[str] = frozenset()
    first_order: bool = False
    codes: Mapping[str, int | None] = field(default_factory=dict)
    shipping: Decimal = ZERO

    def __post_init__(self) -> None:
        _require_aware(self.now, "now")
        if self.shipping < ZERO:
            raise ValueError("shipping must not be negative")


# --- outputs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LineDiscount:
    promotion_id: int
    amount: Decimal


@dataclass(frozen=True)
class LineResult:
    line_id: str
    subtotal: Decimal
    discounts: tuple[LineDiscount, ...]
    discount: Decimal
    total: Decimal


@dataclass(frozen=True)
class AppliedPromotion:
    promotion_id: int
    name: str
    code: str | None
    kind: DiscountKind
    amount: Decimal


@dataclass(frozen=True)
class CodeRejection:
    code: str
    promotion_id: int | None
    reason: Reason


@dataclass(frozen=True)
class PromotionResult:
    """Lines in input order, promotions in the order they applied, rejections by code.

    ``total == subtotal - line_discount + shipping - shipping_discount`` and
    ``line_discount + shipping_discount == sum(p.amount for p in applied)``.
    """

    currency: str
    lines: tuple[LineResult, ...]
    applied: tuple[AppliedPromotion, ...]
    rejected_codes: tuple[CodeRejection, ...]
    subtotal: Decimal
    line_discount: Decimal
    shipping: Decimal
    shipping_discount: Decimal
    total: Decimal

    @property
    def discount(self) -> Decimal:
        return self.line_discount + self.shipping_discount

    def line(self, line_id: str) -> LineResult:
        for line in self.lines:
            if line.line_id == line_id:
                return line
        raise KeyError(line_id)


# --- computation --------------------------------------------------------------------------


@dataclass
class _Outcome:
    lines: dict[str, Decimal] = field(default_factory=dict)
    shipping: Decimal = ZERO


def _to_decimal(value: Fraction) -> Decimal:
    return Decimal(value.numerator) / Decimal(value.denominator)


def _round_half_up(value: Fraction, currency: str) -> Decimal:
    # Exact on fractions: converting to Decimal first could round twice.
    units = math.floor(value * 10 ** minor_units(currency) + Fraction(1, 2))
    return from_minor(units, currency)


def _percent_of(amount: Decimal, percent: Decimal, currency: str) -> Decimal:
    return quantize(amount * percent / HUNDRED, currency)


class _Cart:
    """The lines (sorted by id, so allocation ties never depend on input order) and what
    remains of each line and of shipping as promotions apply."""

    def __init__(self, lines: Sequence[CartLine], context: CartContext, currency: str) -> None:
        self.currency = currency
        self.context = context
        self.lines = sorted(lines, key=lambda line: line.line_id)
        self.eligible = [line for line in self.lines if line.discountable]
        self.remaining = {line.line_id: line.subtotal for line in self.lines}
        self.shipping_left = context.shipping

    def matching(self, items: ItemSelector | None) -> list[CartLine]:
        if items is None:
            return list(self.eligible)
        return [line for line in self.eligible if items.matches(line)]

    def eligible_remaining(self) -> Decimal:
        return sum((self.remaining[line.line_id] for line in self.eligible), ZERO)

    def unit_value(self, line: CartLine) -> Fraction:
        return Fraction(self.remaining[line.line_id]) / line.quantity


def _failed_condition(conditions: Conditions, cart: _Cart) -> Reason | None:
    ctx = cart.context
    if conditions.starts_at is not None and ctx.now < conditions.starts_at:
        return Reason.NOT_STARTED
    if conditions.ends_at is not None and ctx.now >= conditions.ends_at:
        return Reason.EXPIRED
    if conditions.channel_ids and ctx.channel_id not in conditions.channel_ids:
        return Reason.CHANNEL_NOT_ELIGIBLE
    if conditions.currencies and cart.currency not in conditions.currencies:
        return Reason.CURRENCY_NOT_ELIGIBLE
    if conditions.min_subtotal and cart.currency not in conditions.min_subtotal:
        return Reason.CURRENCY_NOT_ELIGIBLE
    if conditions.customer_ids and ctx.customer_id not in conditions.customer_ids:
        return Reason.CUSTOMER_NOT_ELIGIBLE
    if conditions.customer_groups and conditions.customer_groups.isdisjoint(ctx.customer_groups):
        return Reason.CUSTOMER_NOT_ELIGIBLE
    if conditions.first_order_only and not ctx.first_order:
        return Reason.FIRST_ORDER_ONLY
    if conditions.required_items is not None or conditions.min_quantity > 1:
        units = sum(line.quantity for line in cart.matching(conditions.required_items))
        if units == 0:
            return Reason.NO_MATCHING_ITEMS
        if units < conditions.min_quantity:
            return Reason.QUANTITY_NOT_MET
    minimum = conditions.min_subtotal.get(cart.currency)
    if minimum is not None and cart.eligible_remaining() < minimum:
        return Reason.MINIMUM_NOT_MET
    return None


def _spread(total: Decimal, lines: Sequence[CartLine], cart: _Cart) -> _Outcome:
    weights = [cart.remaining[line.line_id] for line in lines]
    shares = allocate(total, weights, cart.currency)
    return _Outcome(lines={line.line_id: s for line, s in zip(lines, shares, strict=True)})


def _percent_off_items(action: PercentOffItems, cart: _Cart) -> _Outcome | Reason:
    lines = cart.matching(action.items)
    if not lines:
        return Reason.NO_MATCHING_ITEMS
    return _Outcome(
        lines={
            line.line_id: _percent_of(cart.remaining[line.line_id], action.percent, cart.currency)
            for line in lines
        }
    )


def _amount_off_items(action: AmountOffItems, cart: _Cart) -> _Outcome | Reason:
    amount = action.amounts.get(cart.currency)
    if amount is None:
        return Reason.CURRENCY_NOT_ELIGIBLE
    lines = cart.matching(action.items)
    if not lines:
        return Reason.NO_MATCHING_ITEMS
    return _Outcome(lines={line.line_id: amount * line.quantity for line in lines})


def _percent_off_order(action: PercentOffOrder, cart: _Cart) -> _Outcome | Reason:
    if not cart.eligible:
        return Reason.NO_MATCHING_ITEMS
    total = _percent_of(cart.eligible_remaining(), action.percent, cart.currency)
    return _spread(total, cart.eligible, cart)


def _amount_off_order(action: AmountOffOrder, cart: _Cart) -> _Outcome | Reason:
    amount = action.amounts.get(cart.currency)
    if amount is None:
        return Reason.CURRENCY_NOT_ELIGIBLE
    if not cart.eligible:
        return Reason.NO_MATCHING_ITEMS
    return _spread(min(amount, cart.eligible_remaining()), cart.eligible, cart)


def _buy_x_get_y(action: BuyXGetY, cart: _Cart) -> _Outcome | Reason:
    lines = cart.matching(action.items)
    units = sum(line.quantity for line in lines)
    if units == 0:
        return Reason.NO_MATCHING_ITEMS
    repeats = units // (action.buy_quantity + action.get_quantity)
    if action.max_repeats is not None:
        repeats = min(repeats, action.max_repeats)
    if repeats == 0:
        return Reason.QUANTITY_NOT_MET
    to_discount = repeats * action.get_quantity
    outcome = _Outcome()
    rate = Fraction(action.percent) / 100
    for line in sorted(lines, key=lambda line: (cart.unit_value(line), line.line_id)):
        if to_discount == 0:
            break
        taken = min(line.quantity, to_discount)
        to_discount -= taken
        outcome.lines[line.line_id] = _round_half_up(
            cart.unit_value(line) * taken * rate, cart.currency
        )
    return outcome


def _assemble_bundles(action: FixedPriceBundle, cart: _Cart) -> list[dict[str, int]]:
    available = {line.line_id: line.quantity for line in cart.eligible}
    components = sorted(action.components, key=lambda c: c.variant_id is None)
    candidates = [
        sorted(
            (line for line in cart.eligible if component.matches(line)),
            key=lambda line: (-cart.unit_value(line), line.line_id),
        )
        for component in components
    ]
    bundles: list[dict[str, int]] = []
    while action.max_repeats is None or len(bundles) < action.max_repeats:
        trial = dict(available)
        taken: dict[str, int] = {}
        for component, lines in zip(components, candidates, strict=True):
            needed = component.quantity
            for line in lines:
                count = min(needed, trial[line.line_id])
                if count:
                    trial[line.line_id] -= count
                    taken[line.line_id] = taken.get(line.line_id, 0) + count
                    needed -= count
                if needed == 0:
                    break
            if needed:
                return bundles
        available = trial
        bundles.append(taken)
    return bundles


def _fixed_price_bundle(action: FixedPriceBundle, cart: _Cart) -> _Outcome | Reason:
    price = action.prices.get(cart.currency)
    if price is None:
        return Reason.CURRENCY_NOT_ELIGIBLE
    bundles = _assemble_bundles(action, cart)
    if not bundles:
        return Reason.NO_MATCHING_ITEMS
    by_line = {line.line_id: line for line in cart.eligible}
    total = Fraction(0)
    weights: dict[str, Fraction] = {}
    for taken in bundles:
        values = {lid: cart.unit_value(by_line[lid]) * n for lid, n in taken.items()}
        normal = sum(values.values(), Fraction(0))
        discount = normal - Fraction(price)
        if discount <= 0:
            continue
        total += discount
        # Each bundle's discount is spread over its own components, so a bundle that saves
        # nothing puts nothing on its lines.
        for lid, value in values.items():
            weights[lid] = weights.get(lid, Fraction(0)) + discount * value / normal
    if total == 0:
        return Reason.NO_DISCOUNT
    ids = sorted(weights)
    shares = allocate(
        _round_half_up(total, cart.currency),
        [_to_decimal(weights[lid]) for lid in ids],
        cart.currency,
    )
    return _Outcome(lines=dict(zip(ids, shares, strict=True)))


def _shipping_discount(action: ShippingDiscount, cart: _Cart) -> _Outcome | Reason:
    return _Outcome(shipping=_percent_of(cart.shipping_left, action.percent, cart.currency))


def _compute(action: Action, cart: _Cart) -> _Outcome | Reason:
    match action:
        case PercentOffItems():
            return _percent_off_items(action, cart)
        case AmountOffItems():
            return _amount_off_items(action, cart)
        case PercentOffOrder():
            return _percent_off_order(action, cart)
        case AmountOffOrder():
            return _amount_off_order(action, cart)
        case BuyXGetY():
            return _buy_x_get_y(action, cart)
        case ShippingDiscount():
            return _shipping_discount(action, cart)
        case FixedPriceBundle():
            return _fixed_price_bundle(action, cart)


def _capped(outcome: _Outcome, cart: _Cart) -> _Outcome:
    """The outcome with no line below zero and no discount below zero, zeros dropped."""
    lines = {}
    for line_id, amount in outcome.lines.items():
        capped = quantize(min(max(amount, ZERO), cart.remaining[line_id]), cart.currency)
        if capped > ZERO:
            lines[line_id] = capped
    shipping = quantize(min(max(outcome.shipping, ZERO), cart.shipping_left), cart.currency)
    return _Outcome(lines=lines, shipping=shipping)


def _evaluate(promotion: Promotion, cart: _Cart, blocked: bool) -> _Outcome | Reason:
    reason = _failed_condition(promotion.conditions, cart)
    if reason is not None:
        return reason
    if blocked:
        return Reason.NOT_COMBINABLE
    outcome = _compute(promotion.action, cart)
    if isinstance(outcome, Reason):
        return outcome
    outcome = _capped(outcome, cart)
    if not outcome.lines and outcome.shipping == ZERO:
        return Reason.NO_DISCOUNT
    return outcome


def _validate(
    lines: Sequence[CartLine], promotions: Sequence[Promotion], context: CartContext
) -> str:
    currency = validate_currency(context.currency)
    if currency != context.currency:
        raise ValueError("currency must be an upper-case ISO 4217 code")
    check_precision(context.shipping, currency)
    seen: set[str] = set()
    for line in lines:
        if line.line_id in seen:
            raise ValueError(f"duplicate line id {line.line_id!r}")
        seen.add(line.line_id)
        check_precision(line.unit_price, currency)
    ids = [promotion.id for promotion in promotions]
    if len(set(ids)) != len(ids):
        raise ValueError("promotion ids must be unique")
    return currency


def apply_promotions(
    lines: Sequence[CartLine], promotions: Iterable[Promotion], context: CartContext
) -> PromotionResult:
    """The discounts ``promotions`` give the cart (see the module docstring for the rules)."""
    promotions = list(promotions)
    currency = _validate(lines, promotions, context)
    # Exact arithmetic regardless of whatever decimal context the caller runs under.
    with localcontext(_EXACT):
        return _run(lines, promotions, context, currency)


def _run(
    lines: Sequence[CartLine],
    promotions: list[Promotion],
    context: CartContext,
    currency: str,
) -> PromotionResult:
    cart = _Cart(lines, context, currency)
    ordered = sorted(promotions, key=lambda p: (-p.priority, p.id))
    known = {p.id for p in promotions}

    rejected: dict[str, CodeRejection] = {}
    codes_for: dict[int, list[str]] = {}
    for code in sorted(context.codes):
        promotion_id = context.codes[code]
        if promotion_id is None or promotion_id not in known:
            rejected[code] = CodeRejection(code, promotion_id, Reason.UNKNOWN_CODE)
        else:
            codes_for.setdefault(promotion_id, []).append(code)

    line_discounts: dict[str, list[LineDiscount]] = {line.line_id: [] for line in cart.lines}
    applied: list[AppliedPromotion] = []
    shipping_discount = ZERO
    closed = False  # an exclusive or stop promotion has applied

    for promotion in ordered:
        codes = codes_for.get(promotion.id, [])
        if promotion.requires_code and not codes:
            continue
        blocked = closed or (promotion.stacking is StackingMode.EXCLUSIVE and bool(applied))
        outcome = _evaluate(promotion, cart, blocked)
        if isinstance(outcome, Reason):
            for code in codes:
                rejected[code] = CodeRejection(code, promotion.id, outcome)
            continue

        for line_id, amount in outcome.lines.items():
            cart.remaining[line_id] -= amount
            line_discounts[line_id].append(LineDiscount(promotion.id, amount))
        cart.shipping_left -= outcome.shipping
        shipping_discount += outcome.shipping
        applied.append(
            AppliedPromotion(
                promotion_id=promotion.id,
                name=promotion.name,
                code=codes[0] if codes else None,
                kind=action_kind(promotion.action),
                amount=sum(outcome.lines.values(), ZERO) + outcome.shipping,
            )
        )
        for code in codes[1:]:
            rejected[code] = CodeRejection(code, promotion.id, Reason.DUPLICATE_CODE)
        if promotion.stacking is not StackingMode.STACKABLE:
            closed = True

    results = []
    for line in lines:
        discounts = tuple(line_discounts[line.line_id])
        discount = quantize(sum((d.amount for d in discounts), ZERO), currency)
        subtotal = quantize(line.subtotal, currency)
        results.append(LineResult(line.line_id, subtotal, discounts, discount, subtotal - discount))
    subtotal = quantize(sum((r.subtotal for r in results), ZERO), currency)
    line_discount = quantize(sum((r.discount for r in results), ZERO), currency)
    shipping = quantize(context.shipping, currency)
    shipping_discount = quantize(shipping_discount, currency)
    return PromotionResult(
        currency=currency,
        lines=tuple(results),
        applied=tuple(applied),
        rejected_codes=tuple(rejected[code] for code in sorted(rejected)),
        subtotal=subtotal,
        line_discount=line_discount,
        shipping=shipping,
        shipping_discount=shipping_discount,
        total=subtotal - line_discount + shipping - shipping_discount,
    )
