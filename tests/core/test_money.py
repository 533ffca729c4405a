"""Money arithmetic: minor units from CLDR, exact allocation, conversion rounding."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mercato.money import (
    RoundingRule,
    allocate,
    check_precision,
    convert,
    format_money,
    from_minor,
    has_valid_precision,
    minor_units,
    quantize,
    to_minor,
    validate_currency,
)

CURRENCIES = ["JPY", "VND", "EUR", "USD", "KWD", "SGD"]


def test_minor_units_follow_cldr() -> None:
    assert [minor_units(c) for c in ("JPY", "VND", "EUR", "KWD")] == [0, 0, 2, 3]


def test_currency_validation() -> None:
    assert validate_currency("jpy") == "JPY"
    for bad in ("XXX", "ABC", "EURO", ""):
        with pytest.raises(ValueError):
            validate_currency(bad)


def test_precision_checks() -> None:
    assert check_precision(Decimal("12.50"), "EUR") == Decimal("12.50")
    with pytest.raises(ValueError, match="more decimals"):
        check_precision(Decimal("1.5"), "JPY")
    with pytest.raises(ValueError):
        check_precision(Decimal("1.234"), "EUR")
    assert has_valid_precision(Decimal("1.234"), "KWD")
    assert not has_valid_precision(Decimal("NaN"), "EUR")


def test_formatting_per_locale() -> None:
    assert format_money(Decimal("1234"), "JPY", "ja-JP") == "￥1,234"
    assert format_money(Decimal("1234.5"), "EUR", "de-DE") == "1.234,50\xa0€"
    assert format_money(Decimal("123400"), "VND", "vi-VN") == "123.400\xa0₫"
    assert format_money(Decimal("5"), "USD", "xx-unknown") == "$5.00"


def test_rounding_rules() -> None:
    assert RoundingRule(Decimal(1000)).apply(Decimal("123456.7"), "VND") == Decimal(123000)
    assert RoundingRule(Decimal("0.01"), ending=Decimal("0.99")).apply(
        Decimal("12.30"), "USD"
    ) == Decimal("12.99")
    assert RoundingRule(Decimal(10), mode="up").apply(Decimal(1231), "JPY") == Decimal(1240)
    assert convert(Decimal("10.00"), Decimal("162.3456"), "JPY") == Decimal(1623)
    with pytest.raises(ValueError):
        RoundingRule(Decimal(0))


@given(
    total=st.integers(min_value=-(10**9), max_value=10**9),
    weights=st.lists(st.decimals(min_value=0, max_value=10**6, places=2), min_size=1, max_size=12),
    currency=st.sampled_from(CURRENCIES),
)
def test_allocation_is_exact(total: int, weights: list[Decimal], currency: str) -> None:
    amount = from_minor(total, currency)
    shares = allocate(amount, weights, currency)
    assert sum(shares, Decimal(0)) == amount
    assert all(quantize(s, currency) == s for s in shares)
    # No share is more than one minor unit away from its exact proportion.
    weight_sum = sum(weights) or Decimal(len(weights))
    for share, weight in zip(shares, weights, strict=True):
        exact = Decimal(total) * ((weight if sum(weights) else 1) / weight_sum)
        assert abs(to_minor(share, currency) - exact) <= 1


@given(
    units=st.integers(min_value=-(10**12), max_value=10**12), currency=st.sampled_from(CURRENCIES)
)
def test_minor_unit_round_trip(units: int, currency: str) -> None:
    assert to_minor(from_minor(units, currency), currency) == units


@given(
    amount=st.decimals(min_value=0, max_value=10**7, places=4),
    increment=st.sampled_from([Decimal("0.01"), Decimal("0.05"), Decimal(1), Decimal(10)]),
    ending=st.sampled_from([None, Decimal("0.99"), Decimal("0.95")]),
)
def test_rounding_rule_lands_on_its_grid(
    amount: Decimal, increment: Decimal, ending: Decimal | None
) -> None:
    rounded = RoundingRule(increment, ending=ending).apply(amount, "USD")
    if ending is None:
        assert (rounded / increment) == (rounded / increment).to_integral_value()
        assert abs(rounded - amount) <= increment / 2 + Decimal("0.005")
    else:
        assert rounded - rounded.to_integral_value(rounding="ROUND_FLOOR") == ending
        assert rounded >= quantize(amount, "USD") - increment
