"""The arithmetic of points: rounding down once per order, proportional reversal, campaigns."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from mercato.loyalty import rules

amounts = st.decimals(min_value=0, max_value=Decimal("100000"), places=2)
multipliers = st.sampled_from([Decimal("1"), Decimal("1.5"), Decimal("2"), Decimal("0.5")])
rates = st.sampled_from(
    [rules.EarnRate(1, Decimal(1)), rules.EarnRate(1, Decimal(100)), rules.EarnRate(3, Decimal(7))]
)
lines = st.lists(
    st.builds(
        rules.EarnLine,
        variant_id=st.integers(1, 10**6),
        quantity=st.integers(1, 20),
        amount=amounts,
        multiplier=multipliers,
    ),
    min_size=1,
    max_size=8,
)


@given(lines, rates, multipliers, st.integers(0, 1000))
def test_an_order_earns_its_exact_points_rounded_down_once(
    order: list[rules.EarnLine], rate: rules.EarnRate, multiplier: Decimal, bonus: int
) -> None:
    earned = rules.earn_points(order, rate, multiplier=multiplier, bonus_points=bonus)
    exact = sum(
        (
            Fraction(x.amount)
            * rate.points
            / Fraction(rate.per_amount)
            * Fraction(x.multiplier)
            * Fraction(multiplier)
            for x in order
        ),
        Fraction(0),
    )
    assert earned.points == math.floor(exact) + bonus
    assert earned.points - bonus <= exact < earned.points - bonus + 1
    # Rounding once never gives less than rounding every line down.
    per_line = sum(math.floor(w) for w in earned.weights)
    assert earned.points - bonus >= per_line


def test_rounding_examples() -> None:
    jpy = rules.EarnRate(1, Decimal(100))
    one = [rules.EarnLine(1, 1, Decimal(199))]
    assert rules.earn_points(one, jpy).points == 1  # 1.99 points: down to 1
    two = [rules.EarnLine(1, 1, Decimal(150)), rules.EarnLine(2, 1, Decimal(150))]
    assert rules.earn_points(two, jpy).points == 3  # 1.5 + 1.5, rounded once
    coffee = [rules.EarnLine(1, 2, Decimal("12.50"), Decimal(2))]
    assert rules.earn_points(coffee, rules.EarnRate(1, Decimal(1))).points == 25


@st.composite
def returns(draw: st.DrawFn) -> tuple[int, list[Fraction], list[int], list[list[int]]]:
    """Points, line weights, line quantities and a sequence of partial returns."""
    n = draw(st.integers(1, 6))
    weights = [Fraction(draw(st.integers(0, 5000)), draw(st.integers(1, 7))) for _ in range(n)]
    quantities = [draw(st.integers(1, 5)) for _ in range(n)]
    steps = draw(
        st.lists(st.lists(st.integers(0, 3), min_size=n, max_size=n), min_size=1, max_size=5)
    )
    return draw(st.integers(0, 100_000)), weights, quantities, steps


@given(returns())
def test_proportional_reversal_never_takes_more_and_a_full_return_takes_all(
    case: tuple[int, list[Fraction], list[int], list[list[int]]],
) -> None:
    points, weights, quantities, steps = case
    returned = [0] * len(weights)
    taken = 0
    for step in steps:
        returned = [min(q, r + s) for q, r, s in zip(quantities, returned, step, strict=True)]
        fractions = [Fraction(r, q) for r, q in zip(returned, quantities, strict=True)]
        target = rules.reversal_target(points, weights, fractions)
        assert target >= taken  # cumulative: a later return never gives points back
        assert target <= points
        # Never more than the exact share of what came back.
        assert target <= points * rules.returned_share(weights, fractions)
        taken = target
    everything = rules.reversal_target(points, weights, [Fraction(1)] * len(weights))
    assert everything == points


def test_reversal_weighs_lines_by_what_they_earned() -> None:
    # Coffee earned 50 points (double), the mug 25: returning the coffee takes back 2/3.
    weights = [Fraction(50), Fraction(25)]
    assert rules.reversal_target(75, weights, [Fraction(1), Fraction(0)]) == 50
    assert rules.reversal_target(75, weights, [Fraction(0), Fraction(1)]) == 25
    assert rules.reversal_target(75, weights, [Fraction(1, 2), Fraction(0)]) == 25
    # A bonus-only order (no line earned anything) splits evenly over its lines.
    assert rules.reversal_target(500, [Fraction(0), Fraction(0)], [Fraction(1), Fraction(0)]) == 250


@given(st.integers(1, 10**6), st.integers(1, 10**9), st.lists(st.integers(1, 10**8), max_size=6))
def test_refunds_restore_points_in_proportion_and_a_full_refund_restores_all(
    points: int, amount: int, refunds: list[int]
) -> None:
    refunded = 0
    restored = 0
    for part in refunds:
        if refunded + part > amount:
            continue
        refunded += part
        now = rules.restored_points(points, amount, refunded)
        assert restored <= now <= points
        restored = now
    assert rules.restored_points(points, amount, amount) == points


def test_points_for_an_amount_must_be_whole() -> None:
    assert rules.points_for_amount(Decimal("12.34"), Decimal("0.01")) == 1234
    assert rules.points_for_amount(Decimal("500"), Decimal("1")) == 500
    assert rules.points_for_amount(Decimal("1.5"), Decimal("1")) is None


def test_campaigns_by_date_weekday_and_first_order() -> None:
    june = datetime(2025, 6, 1, tzinfo=UTC)
    july = datetime(2025, 7, 1, tzinfo=UTC)
    weekend = rules.CampaignRule(june, july, multiplier=Decimal(2), weekdays=frozenset({6, 7}))
    welcome = rules.CampaignRule(june, july, bonus_points=500, first_order_only=True)
    triple = rules.CampaignRule(june, july, multiplier=Decimal(3), weekdays=frozenset({7}))
    saturday = datetime(2025, 6, 7, 12, tzinfo=UTC)
    monday = datetime(2025, 6, 9, 12, tzinfo=UTC)
    sunday = datetime(2025, 6, 8, 12, tzinfo=UTC)
    both = [weekend, welcome, triple]
    assert rules.campaign_effect(both, saturday, first_order=True) == (Decimal(2), 500)
    assert rules.campaign_effect(both, monday, first_order=False) == (Decimal(1), 0)
    # Multipliers do not stack: the best one applies.
    assert rules.campaign_effect(both, sunday, first_order=False) == (Decimal(3), 0)
    assert rules.campaign_effect(both, july, first_order=True) == (Decimal(1), 0)
    # Weekdays are read in the campaign's time zone: Sunday 23:30 UTC is Monday in Tokyo.
    tokyo = rules.CampaignRule(
        june, july, multiplier=Decimal(2), weekdays=frozenset({7}), timezone="Asia/Tokyo"
    )
    late_sunday = datetime(2025, 6, 8, 23, 30, tzinfo=UTC)
    assert not tokyo.applies(late_sunday, first_order=False)


def test_add_months_clamps_to_the_end_of_the_month() -> None:
    assert rules.add_months(datetime(2025, 1, 31, tzinfo=UTC), 1) == datetime(
        2025, 2, 28, tzinfo=UTC
    )
    assert rules.add_months(datetime(2024, 3, 15, tzinfo=UTC), -12) == datetime(
        2023, 3, 15, tzinfo=UTC
    )
    assert rules.add_months(datetime(2025, 11, 30, tzinfo=UTC), 3) == datetime(
        2026, 2, 28, tzinfo=UTC
    )
