"""Promotion engine: worked examples for every action, condition and stacking mode, and
properties over random carts that must hold for any promotions in any currency."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mercato.money import ZERO, from_minor, minor_units
from mercato.promotions.engine import (
    ACTION_TYPES,
    Action,
    AmountOffItems,
    AmountOffOrder,
    BundleComponent,
    BuyXGetY,
    CartContext,
    CartLine,
    CodeRejection,
    Conditions,
    DiscountKind,
    FixedPriceBundle,
    ItemSelector,
    PercentOffItems,
    PercentOffOrder,
    Promotion,
    PromotionResult,
    Reason,
    ShippingDiscount,
    StackingMode,
    apply_promotions,
)

D = Decimal
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
COFFEE, TEA, MUGS, DRINKS = 10, 11, 20, 1  # category ids; DRINKS is an ancestor


def line(
    line_id: str,
    price: str,
    quantity: int = 1,
    *,
    variant: int = 0,
    product: int = 0,
    categories: frozenset[int] = frozenset(),
    discountable: bool = True,
) -> CartLine:
    return CartLine(
        line_id=line_id,
        variant_id=variant,
        product_id=product,
        category_ids=categories,
        quantity=quantity,
        unit_price=D(price),
        discountable=discountable,
    )


def ctx(currency: str = "EUR", **kwargs: Any) -> CartContext:
    kwargs.setdefault("channel_id", 1)
    kwargs.setdefault("now", NOW)
    return CartContext(currency=currency, **kwargs)


def promo(promotion_id: int, action: Action, **kwargs: Any) -> Promotion:
    return Promotion(id=promotion_id, name=f"Promotion {promotion_id}", action=action, **kwargs)


def amounts(result: PromotionResult) -> dict[str, Decimal]:
    return {r.line_id: r.discount for r in result.lines}


def reasons(result: PromotionResult) -> dict[str, Reason]:
    return {r.code: r.reason for r in result.rejected_codes}


def reason_for(condition: Conditions, cart: list[CartLine], **context: Any) -> Reason | None:
    """Why a coded 10%-off promotion with ``condition`` does not apply (None: it applies)."""
    coded = promo(1, PercentOffItems(percent=D(10)), requires_code=True, conditions=condition)
    result = apply_promotions(cart, [coded], ctx(codes={"CODE": 1}, **context))
    if result.applied:
        return None
    return reasons(result)["CODE"]


CART = [
    line("beans", "12.00", 2, variant=100, product=1, categories=frozenset({COFFEE, DRINKS})),
    line("tea", "6.50", 1, variant=110, product=2, categories=frozenset({TEA, DRINKS})),
    line("mug", "10.00", 1, variant=200, product=3, categories=frozenset({MUGS})),
]


# --- actions ------------------------------------------------------------------------------


def test_percent_off_matching_items_by_ancestor_category() -> None:
    action = PercentOffItems(percent=D(20), items=ItemSelector(category_ids=frozenset({DRINKS})))
    result = apply_promotions(CART, [promo(1, action)], ctx())
    assert amounts(result) == {"beans": D("4.80"), "tea": D("1.30"), "mug": D("0.00")}
    assert result.applied[0].kind is DiscountKind.ITEMS
    assert result.applied[0].amount == D("6.10")
    assert result.total == D("40.50") - D("6.10")


def test_percent_off_all_items_rounds_half_up_once_per_line() -> None:
    # 3 x 3.33 = 9.99 at 15% is 1.4985 -> 1.50; 7 x 0.35 = 2.45 at 15% is 0.3675 -> 0.37,
    # where rounding each unit (0.0525 -> 0.05) would have given 0.35.
    cart = [line("a", "3.33", 3), line("b", "0.35", 7)]
    result = apply_promotions(cart, [promo(1, PercentOffItems(percent=D(15)))], ctx())
    assert amounts(result) == {"a": D("1.50"), "b": D("0.37")}


def test_amount_off_each_matching_item_never_below_zero() -> None:
    action = AmountOffItems(
        amounts={"EUR": D("5.00")}, items=ItemSelector(product_ids=frozenset({1, 2}))
    )
    result = apply_promotions(CART, [promo(1, action)], ctx())
    assert amounts(result) == {"beans": D("10.00"), "tea": D("5.00"), "mug": D("0.00")}
    # The tea line costs 6.50; a 9.00 discount per unit stops at the line.
    big = AmountOffItems(amounts={"EUR": D("9.00")}, items=ItemSelector(product_ids=frozenset({2})))
    assert apply_promotions(CART, [promo(1, big)], ctx()).line("tea").total == ZERO


def test_amount_off_items_without_amount_in_currency() -> None:
    action = AmountOffItems(amounts={"USD": D(5)})
    result = apply_promotions(CART, [promo(1, action, requires_code=True)], ctx(codes={"FIVE": 1}))
    assert result.applied == ()
    assert reasons(result) == {"FIVE": Reason.CURRENCY_NOT_ELIGIBLE}


def test_percent_off_order_is_allocated_over_lines() -> None:
    cart = [line("a", "10.00"), line("b", "20.00"), line("c", "30.01")]
    result = apply_promotions(cart, [promo(1, PercentOffOrder(percent=D(10)))], ctx())
    # 10% of 60.01 is 6.001 -> 6.00, spread 10:20:30.01
    assert result.applied[0].kind is DiscountKind.ORDER
    assert result.line_discount == D("6.00")
    assert amounts(result) == {"a": D("1.00"), "b": D("2.00"), "c": D("3.00")}


def test_amount_off_order_skips_gift_cards_and_stops_at_the_subtotal() -> None:
    gift = line("gift", "50.00", discountable=False)
    cart = [line("a", "1.00"), line("b", "1.00"), line("c", "1.00"), gift]
    result = apply_promotions(cart, [promo(1, AmountOffOrder(amounts={"EUR": D("0.10")}))], ctx())
    assert amounts(result) == {"a": D("0.04"), "b": D("0.03"), "c": D("0.03"), "gift": ZERO}
    result = apply_promotions(cart, [promo(1, AmountOffOrder(amounts={"EUR": D(100)}))], ctx())
    assert result.line_discount == D("3.00")
    assert result.line("gift").total == D("50.00")
    assert result.total == D("50.00")


def test_buy_two_get_one_free_takes_the_cheapest() -> None:
    cart = [line("shirt", "30.00"), line("cap", "10.00"), line("socks", "20.00")]
    action = BuyXGetY(buy_quantity=2, get_quantity=1)
    result = apply_promotions(cart, [promo(1, action)], ctx())
    assert amounts(result) == {"shirt": ZERO, "cap": D("10.00"), "socks": ZERO}


def test_buy_two_get_one_repeats_on_the_cheapest_units_of_the_whole_cart() -> None:
    cart = [line("shirt", "30.00", 2), line("cap", "10.00", 1), line("socks", "20.00", 4)]
    action = BuyXGetY(buy_quantity=2, get_quantity=1)
    # 7 units: two free, the cap and one pair of socks.
    result = apply_promotions(cart, [promo(1, action)], ctx())
    assert amounts(result) == {"shirt": ZERO, "cap": D("10.00"), "socks": D("20.00")}
    capped = BuyXGetY(buy_quantity=2, get_quantity=1, max_repeats=1)
    assert apply_promotions(cart, [promo(1, capped)], ctx()).line_discount == D("10.00")
    half = BuyXGetY(buy_quantity=1, get_quantity=1, percent=D(50))
    # 3 pairs: the three cheapest units (cap + 2 socks) at half price.
    assert amounts(apply_promotions(cart, [promo(1, half)], ctx())) == {
        "shirt": ZERO,
        "cap": D("5.00"),
        "socks": D("20.00"),
    }


def test_buy_x_get_y_needs_enough_matching_units() -> None:
    action = BuyXGetY(
        buy_quantity=2, get_quantity=1, items=ItemSelector(category_ids=frozenset({COFFEE}))
    )
    result = apply_promotions(CART, [promo(1, action, requires_code=True)], ctx(codes={"B": 1}))
    assert reasons(result) == {"B": Reason.QUANTITY_NOT_MET}
    other = BuyXGetY(
        buy_quantity=1, get_quantity=1, items=ItemSelector(product_ids=frozenset({99}))
    )
    result = apply_promotions(CART, [promo(1, other, requires_code=True)], ctx(codes={"B": 1}))
    assert reasons(result) == {"B": Reason.NO_MATCHING_ITEMS}


def test_free_and_discounted_shipping() -> None:
    result = apply_promotions(CART, [promo(1, ShippingDiscount())], ctx(shipping=D("4.99")))
    assert result.shipping_discount == D("4.99")
    assert result.applied[0].kind is DiscountKind.SHIPPING
    assert result.line_discount == ZERO
    assert result.total == result.subtotal
    half = promo(1, ShippingDiscount(percent=D(50)))
    assert apply_promotions(CART, [half], ctx(shipping=D("4.99"))).shipping_discount == D("2.50")
    free = promo(1, ShippingDiscount(), requires_code=True)
    result = apply_promotions(CART, [free], ctx(codes={"SHIP": 1}))
    assert reasons(result) == {"SHIP": Reason.NO_DISCOUNT}


BEANS = line("beans", "12.00", 3, variant=100, product=1)
MUG = line("mug", "10.00", 2, variant=200, product=3)
COFFEE_SET = FixedPriceBundle(
    components=(BundleComponent(product_id=1), BundleComponent(variant_id=200)),
    prices={"EUR": D("18.00")},
)


def test_bundle_of_beans_and_mug_found_twice() -> None:
    result = apply_promotions([BEANS, MUG], [promo(1, COFFEE_SET)], ctx())
    # Two complete bundles (the third bag has no mug): 2 x 22.00 normal, 2 x 18.00 bundled.
    assert result.line_discount == D("8.00")
    assert amounts(result) == {"beans": D("4.36"), "mug": D("3.64")}
    assert result.total == D("12.00") + 2 * D("18.00")
    once = FixedPriceBundle(
        components=COFFEE_SET.components, prices=COFFEE_SET.prices, max_repeats=1
    )
    assert apply_promotions([BEANS, MUG], [promo(1, once)], ctx()).line_discount == D("4.00")


def test_bundle_components_with_quantities_and_variants_first() -> None:
    # Two bags of any beans plus the dark roast (variant 101, also product 1) for 30.00.
    bundle = FixedPriceBundle(
        components=(
            BundleComponent(product_id=1, quantity=2),
            BundleComponent(variant_id=101),
        ),
        prices={"EUR": D("30.00")},
    )
    light = line("light", "12.00", 2, variant=100, product=1)
    dark = line("dark", "15.00", 1, variant=101, product=1)
    result = apply_promotions([light, dark], [promo(1, bundle)], ctx())
    assert result.line_discount == D("9.00")
    assert result.total == D("30.00")
    # Three bags but no dark roast: nothing to bundle.
    result = apply_promotions(
        [line("light", "12.00", 3, variant=100, product=1)],
        [promo(1, bundle, requires_code=True)],
        ctx(codes={"SET": 1}),
    )
    assert reasons(result) == {"SET": Reason.NO_MATCHING_ITEMS}


def test_bundle_never_costs_more_than_its_parts() -> None:
    dear = FixedPriceBundle(components=COFFEE_SET.components, prices={"EUR": D("25.00")})
    result = apply_promotions(
        [BEANS, MUG], [promo(1, dear, requires_code=True)], ctx(codes={"SET": 1})
    )
    assert result.line_discount == ZERO
    assert reasons(result) == {"SET": Reason.NO_DISCOUNT}


def test_jpy_rounding() -> None:
    cart = [line("a", "1999"), line("b", "333", 3)]
    result = apply_promotions(cart, [promo(1, PercentOffItems(percent=D(15)))], ctx("JPY"))
    # 299.85 -> 300 and 149.85 -> 150, whole yen
    assert amounts(result) == {"a": D(300), "b": D(150)}
    assert all(d.as_tuple().exponent == 0 for d in amounts(result).values())
    cart = [line("a", "100"), line("b", "100"), line("c", "100")]
    result = apply_promotions(cart, [promo(1, AmountOffOrder(amounts={"JPY": D(100)}))], ctx("JPY"))
    assert amounts(result) == {"a": D(34), "b": D(33), "c": D(33)}
    with pytest.raises(ValueError, match="decimals"):
        apply_promotions([line("a", "10.50")], [], ctx("JPY"))


def test_kwd_has_three_decimals() -> None:
    result = apply_promotions(
        [line("a", "1.235")], [promo(1, PercentOffItems(percent=D(10)))], ctx("KWD")
    )
    assert amounts(result) == {"a": D("0.124")}


# --- conditions ---------------------------------------------------------------------------


def test_time_window() -> None:
    window = Conditions(starts_at=NOW, ends_at=NOW + timedelta(days=1))
    assert reason_for(window, CART) is None
    assert reason_for(window, CART, now=NOW - timedelta(seconds=1)) is Reason.NOT_STARTED
    assert reason_for(window, CART, now=NOW + timedelta(days=1)) is Reason.EXPIRED
    with pytest.raises(ValueError, match="timezone"):
        Conditions(starts_at=datetime(2025, 1, 1))


def test_channel_and_currency() -> None:
    assert reason_for(Conditions(channel_ids=frozenset({1, 2})), CART) is None
    assert reason_for(Conditions(channel_ids=frozenset({2})), CART) is (Reason.CHANNEL_NOT_ELIGIBLE)
    assert reason_for(Conditions(currencies=frozenset({"USD"})), CART) is (
        Reason.CURRENCY_NOT_ELIGIBLE
    )


def test_customer_groups_and_ids() -> None:
    vip = Conditions(customer_groups=frozenset({"vip", "staff"}))
    assert reason_for(vip, CART, customer_id=7, customer_groups=frozenset({"vip"})) is None
    assert reason_for(vip, CART, customer_id=7, customer_groups=frozenset({"b2b"})) is (
        Reason.CUSTOMER_NOT_ELIGIBLE
    )
    assert reason_for(vip, CART) is Reason.CUSTOMER_NOT_ELIGIBLE
    only = Conditions(customer_ids=frozenset({7}))
    assert reason_for(only, CART, customer_id=7) is None
    assert reason_for(only, CART, customer_id=8) is Reason.CUSTOMER_NOT_ELIGIBLE


def test_first_order_only() -> None:
    first = Conditions(first_order_only=True)
    assert reason_for(first, CART, first_order=True) is None
    assert reason_for(first, CART, first_order=False) is Reason.FIRST_ORDER_ONLY


def test_minimum_subtotal_per_currency_ignores_gift_cards() -> None:
    minimum = Conditions(min_subtotal={"EUR": D("40.50"), "JPY": D(5000)})
    assert reason_for(minimum, CART) is None
    gift = line("gift", "100.00", discountable=False)
    assert reason_for(minimum, [*CART[:2], gift]) is Reason.MINIMUM_NOT_MET
    usd_cart = [line("a", "100.00")]
    assert reason_for(minimum, usd_cart, currency="USD") is Reason.CURRENCY_NOT_ELIGIBLE


def test_required_items_with_minimum_quantity() -> None:
    coffee = ItemSelector(category_ids=frozenset({COFFEE}))
    assert reason_for(Conditions(required_items=coffee, min_quantity=2), CART) is None
    assert reason_for(Conditions(required_items=coffee, min_quantity=3), CART) is (
        Reason.QUANTITY_NOT_MET
    )
    none = ItemSelector(variant_ids=frozenset({999}))
    assert reason_for(Conditions(required_items=none), CART) is Reason.NO_MATCHING_ITEMS
    # Without a selector the minimum counts every discountable unit (4 here).
    assert reason_for(Conditions(min_quantity=4), CART) is None
    assert reason_for(Conditions(min_quantity=5), CART) is Reason.QUANTITY_NOT_MET
    with pytest.raises(ValueError, match="selector"):
        ItemSelector()


def test_condition_narrows_but_action_decides_the_lines() -> None:
    # "10% off mugs when you buy coffee"
    condition = Conditions(required_items=ItemSelector(category_ids=frozenset({COFFEE})))
    action = PercentOffItems(percent=D(10), items=ItemSelector(category_ids=frozenset({MUGS})))
    result = apply_promotions(CART, [promo(1, action, conditions=condition)], ctx())
    assert amounts(result) == {"beans": ZERO, "tea": ZERO, "mug": D("1.00")}
    assert apply_promotions(CART[1:], [promo(1, action, conditions=condition)], ctx()).applied == ()


# --- stacking -----------------------------------------------------------------------------


def test_stackable_applies_on_what_is_left() -> None:
    cart = [line("a", "100.00")]
    result = apply_promotions(
        cart,
        [
            promo(1, PercentOffItems(percent=D(10)), priority=10),
            promo(2, PercentOffOrder(percent=D(10)), priority=5),
        ],
        ctx(),
    )
    assert [p.amount for p in result.applied] == [D("10.00"), D("9.00")]
    assert result.line("a").discounts[1].promotion_id == 2
    assert result.total == D("81.00")


def test_minimum_is_checked_after_earlier_discounts() -> None:
    cart = [line("a", "110.00")]
    over_100 = Conditions(min_subtotal={"EUR": D(100)})
    result = apply_promotions(
        cart,
        [
            promo(1, PercentOffItems(percent=D(20)), priority=10),
            promo(
                2, AmountOffOrder(amounts={"EUR": D(10)}), requires_code=True, conditions=over_100
            ),
        ],
        ctx(codes={"TEN": 2}),
    )
    assert [p.promotion_id for p in result.applied] == [1]
    assert reasons(result) == {"TEN": Reason.MINIMUM_NOT_MET}


def test_exclusive_is_blocked_by_an_earlier_promotion() -> None:
    result = apply_promotions(
        CART,
        [
            promo(1, PercentOffItems(percent=D(5)), priority=10),
            promo(
                2,
                PercentOffOrder(percent=D(50)),
                stacking=StackingMode.EXCLUSIVE,
                requires_code=True,
            ),
            promo(3, ShippingDiscount(), priority=-1),
        ],
        ctx(codes={"HALF": 2}, shipping=D("5.00")),
    )
    assert [p.promotion_id for p in result.applied] == [1, 3]
    assert reasons(result) == {"HALF": Reason.NOT_COMBINABLE}


def test_exclusive_first_blocks_everything_after_it() -> None:
    result = apply_promotions(
        CART,
        [
            promo(1, PercentOffItems(percent=D(5)), priority=1, requires_code=True),
            promo(2, PercentOffOrder(percent=D(50)), priority=9, stacking=StackingMode.EXCLUSIVE),
            promo(3, ShippingDiscount()),
        ],
        ctx(codes={"FIVE": 1}, shipping=D("5.00")),
    )
    assert [p.promotion_id for p in result.applied] == [2]
    assert result.shipping_discount == ZERO
    assert reasons(result) == {"FIVE": Reason.NOT_COMBINABLE}


def test_exclusive_that_gives_nothing_blocks_nothing() -> None:
    result = apply_promotions(
        CART,
        [
            promo(
                1,
                PercentOffItems(percent=D(50), items=ItemSelector(product_ids=frozenset({99}))),
                priority=9,
                stacking=StackingMode.EXCLUSIVE,
            ),
            promo(2, PercentOffItems(percent=D(5))),
        ],
        ctx(),
    )
    assert [p.promotion_id for p in result.applied] == [2]


def test_stop_applies_on_top_and_stops_the_rest() -> None:
    result = apply_promotions(
        [line("a", "100.00")],
        [
            promo(1, PercentOffItems(percent=D(10)), priority=3),
            promo(2, AmountOffOrder(amounts={"EUR": D(5)}), priority=2, stacking=StackingMode.STOP),
            promo(3, PercentOffOrder(percent=D(10)), priority=1, requires_code=True),
        ],
        ctx(codes={"MORE": 3}),
    )
    assert [p.promotion_id for p in result.applied] == [1, 2]
    assert result.total == D("85.00")
    assert reasons(result) == {"MORE": Reason.NOT_COMBINABLE}


def test_equal_priorities_are_ordered_by_id() -> None:
    one = promo(7, PercentOffItems(percent=D(10)), stacking=StackingMode.STOP)
    two = promo(3, AmountOffItems(amounts={"EUR": D(1)}), stacking=StackingMode.STOP)
    for promotions in ([one, two], [two, one]):
        result = apply_promotions([line("a", "10.00")], promotions, ctx())
        assert [p.promotion_id for p in result.applied] == [3]


# --- codes --------------------------------------------------------------------------------


def test_personal_one_time_code_applies_only_with_its_code() -> None:
    personal = Promotion(
        id=5,
        name="Welcome back, Ana",
        action=AmountOffOrder(amounts={"EUR": D("15.00")}),
        requires_code=True,
        conditions=Conditions(customer_ids=frozenset({42})),
    )
    without = apply_promotions(CART, [personal], ctx(customer_id=42))
    assert without.applied == () and without.rejected_codes == ()
    used = apply_promotions(CART, [personal], ctx(customer_id=42, codes={"ANA-7Q2X": 5}))
    assert used.applied[0].code == "ANA-7Q2X"
    assert used.applied[0].amount == D("15.00")
    assert used.rejected_codes == ()
    someone_else = apply_promotions(CART, [personal], ctx(customer_id=43, codes={"ANA-7Q2X": 5}))
    assert reasons(someone_else) == {"ANA-7Q2X": Reason.CUSTOMER_NOT_ELIGIBLE}


def test_unknown_and_duplicate_codes() -> None:
    automatic = promo(1, PercentOffItems(percent=D(10)))
    result = apply_promotions(
        CART, [automatic], ctx(codes={"SPRING": 1, "SPRING2": 1, "GONE": None, "OLD": 99})
    )
    assert result.applied[0].code == "SPRING"
    assert result.rejected_codes == (
        CodeRejection("GONE", None, Reason.UNKNOWN_CODE),
        CodeRejection("OLD", 99, Reason.UNKNOWN_CODE),
        CodeRejection("SPRING2", 1, Reason.DUPLICATE_CODE),
    )


# --- inputs -------------------------------------------------------------------------------


def test_invalid_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="duplicate line"):
        apply_promotions([line("a", "1.00"), line("a", "2.00")], [], ctx())
    with pytest.raises(ValueError, match="unique"):
        apply_promotions([], [promo(1, ShippingDiscount()), promo(1, ShippingDiscount())], ctx())
    with pytest.raises(ValueError, match="timezone"):
        ctx(now=datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="percent"):
        PercentOffItems(percent=D(120))
    with pytest.raises(ValueError, match="decimals"):
        AmountOffOrder(amounts={"JPY": D("1.5")})
    with pytest.raises(ValueError, match="either"):
        BundleComponent(product_id=1, variant_id=2)


def test_action_types_name_every_action() -> None:
    assert ACTION_TYPES["buy_x_get_y"] is BuyXGetY
    assert len(ACTION_TYPES) == 7


# --- properties ---------------------------------------------------------------------------

CURRENCIES = ["JPY", "VND", "EUR", "USD", "KWD"]


STACKING = [
    StackingMode.STACKABLE,
    StackingMode.STACKABLE,
    StackingMode.EXCLUSIVE,
    StackingMode.STOP,
]


def money_in(currency: str, max_units: int) -> st.SearchStrategy[Decimal]:
    return st.integers(0, max_units).map(lambda units: from_minor(units, currency))


def per_currency(currency: str, max_units: int) -> st.SearchStrategy[dict[str, Decimal]]:
    """Mostly with an amount in the cart currency, sometimes only in others."""
    others = st.dictionaries(st.sampled_from(CURRENCIES), st.integers(0, max_units), max_size=2)
    own = st.one_of(money_in(currency, max_units), money_in(currency, max_units), st.none())
    return st.builds(
        lambda extra, mine: (
            {c: from_minor(u, c) for c, u in extra.items()}
            | ({} if mine is None else {currency: mine})
        ),
        others,
        own,
    )


percents = st.integers(1, 1000).map(lambda tenths: D(tenths) / 10)
selectors = st.none() | st.builds(
    ItemSelector,
    product_ids=st.frozensets(st.integers(1, 3), min_size=1, max_size=2),
    variant_ids=st.frozensets(st.integers(1, 6), max_size=2),
    category_ids=st.frozensets(st.integers(1, 4), max_size=2),
)
components = st.one_of(
    st.builds(BundleComponent, variant_id=st.integers(1, 6), quantity=st.integers(1, 2)),
    st.builds(BundleComponent, product_id=st.integers(1, 3), quantity=st.integers(1, 2)),
)


def actions(currency: str) -> st.SearchStrategy[Action]:
    return st.one_of(
        st.builds(PercentOffItems, percent=percents, items=selectors),
        st.builds(AmountOffItems, amounts=per_currency(currency, 5000), items=selectors),
        st.builds(PercentOffOrder, percent=percents),
        st.builds(AmountOffOrder, amounts=per_currency(currency, 20000)),
        st.builds(
            BuyXGetY,
            buy_quantity=st.integers(1, 3),
            get_quantity=st.integers(1, 2),
            percent=percents,
            items=selectors,
            max_repeats=st.none() | st.integers(1, 3),
        ),
        st.builds(ShippingDiscount, percent=percents),
        st.builds(
            FixedPriceBundle,
            components=st.lists(components, min_size=1, max_size=3).map(tuple),
            prices=per_currency(currency, 30000),
            max_repeats=st.none() | st.integers(1, 3),
        ),
    )


def conditions(currency: str) -> st.SearchStrategy[Conditions]:
    return st.builds(
        Conditions,
        channel_ids=st.sampled_from([frozenset(), frozenset({1})]),
        min_subtotal=st.just({}) | per_currency(currency, 20000),
        required_items=selectors,
        min_quantity=st.integers(1, 3),
        first_order_only=st.integers(0, 3).map(lambda n: n == 0),
    )


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[CartLine], list[Promotion], CartContext]:
    currency = draw(st.sampled_from(CURRENCIES))
    cart = []
    for i in range(draw(st.integers(0, 6))):
        variant = draw(st.integers(1, 6))
        cart.append(
            CartLine(
                line_id=f"line-{i}",
                variant_id=variant,
                product_id=(variant + 1) // 2,
                category_ids=draw(st.frozensets(st.integers(1, 4), max_size=2)),
                quantity=draw(st.integers(1, 5)),
                unit_price=draw(money_in(currency, 50000)),
                discountable=draw(st.integers(0, 5)) > 0,
            )
        )
    promotions = draw(
        st.lists(
            st.builds(
                Promotion,
                id=st.integers(1, 30),
                name=st.just("p"),
                action=actions(currency),
                priority=st.integers(0, 2),
                stacking=st.sampled_from(STACKING),
                requires_code=st.booleans(),
                conditions=st.just(Conditions()) | conditions(currency),
            ),
            max_size=6,
            unique_by=lambda p: p.id,
        )
    )
    codes = {f"C{p.id}": p.id for p in promotions if draw(st.booleans())}
    context = CartContext(
        currency=currency,
        channel_id=draw(st.integers(1, 2)),
        now=NOW,
        first_order=draw(st.booleans()),
        codes=codes,
        shipping=draw(money_in(currency, 2000)),
    )
    return cart, promotions, context


Scenario = tuple[list[CartLine], list[Promotion], CartContext]


def discounts_add_up(result: PromotionResult) -> None:
    line_discounts = sum((d.amount for r in result.lines for d in r.discounts), ZERO)
    assert line_discounts == result.line_discount
    assert line_discounts + result.shipping_discount == sum(
        (p.amount for p in result.applied), ZERO
    )
    for applied in result.applied:
        on_lines = sum(
            (
                d.amount
                for r in result.lines
                for d in r.discounts
                if d.promotion_id == applied.promotion_id
            ),
            ZERO,
        )
        assert on_lines == (ZERO if applied.kind is DiscountKind.SHIPPING else applied.amount)


def nothing_goes_below_zero(result: PromotionResult) -> None:
    for r in result.lines:
        assert r.total >= ZERO
        assert all(d.amount > ZERO for d in r.discounts)
    assert ZERO <= result.shipping_discount <= result.shipping
    assert all(p.amount > ZERO for p in result.applied)


def amounts_are_in_minor_units(result: PromotionResult) -> None:
    everything = [result.subtotal, result.line_discount, result.shipping_discount, result.total]
    everything += [p.amount for p in result.applied]
    for r in result.lines:
        everything += [r.subtotal, r.discount, r.total, *(d.amount for d in r.discounts)]
    exponent = -minor_units(result.currency)
    for amount in everything:
        assert amount.as_tuple().exponent == exponent


def totals_are_reproducible_from_lines(result: PromotionResult, scenario: Scenario) -> None:
    cart, _, context = scenario
    assert result.subtotal == sum((c.unit_price * c.quantity for c in cart), ZERO)
    assert result.subtotal - result.line_discount == sum((r.total for r in result.lines), ZERO)
    assert result.total == (
        sum((r.total for r in result.lines), ZERO) + context.shipping - result.shipping_discount
    )
    for c in cart:
        if not c.discountable:
            assert result.line(c.line_id).discounts == ()


def every_code_is_answered(result: PromotionResult, scenario: Scenario) -> None:
    used = {p.code for p in result.applied if p.code is not None}
    rejected = {r.code for r in result.rejected_codes}
    assert used | rejected == set(scenario[2].codes)
    assert not used & rejected


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_invariants_hold_for_any_cart(scenario: Scenario) -> None:
    result = apply_promotions(*scenario)
    discounts_add_up(result)
    nothing_goes_below_zero(result)
    amounts_are_in_minor_units(result)
    totals_are_reproducible_from_lines(result, scenario)
    every_code_is_answered(result, scenario)


@pytest.mark.slow
@settings(max_examples=100, deadline=None)
@given(scenarios(), st.data())
def test_order_of_promotions_and_lines_does_not_matter(
    scenario: Scenario, data: st.DataObject
) -> None:
    cart, promotions, context = scenario
    result = apply_promotions(cart, promotions, context)
    shuffled = apply_promotions(
        data.draw(st.permutations(cart)), data.draw(st.permutations(promotions)), context
    )
    assert shuffled.applied == result.applied
    assert shuffled.rejected_codes == result.rejected_codes
    assert shuffled.shipping_discount == result.shipping_discount
    assert shuffled.total == result.total
    assert sorted(shuffled.lines, key=lambda r: r.line_id) == sorted(
        result.lines, key=lambda r: r.line_id
    )
