"""Properties of the money of a return: line shares, fees, exchange lines and netting."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mercato.money import ZERO, from_minor, has_valid_precision, to_minor
from mercato.returns import amounts

pytestmark = pytest.mark.slow

CURRENCIES = st.sampled_from(["JPY", "VND", "EUR", "USD", "KWD"])


def _money(currency: str, top: int = 10**9) -> st.SearchStrategy[Decimal]:
    return st.integers(0, top).map(lambda minor: from_minor(minor, currency))


@st.composite
def line_returns(draw: st.DrawFn) -> tuple[str, Decimal, int, list[int]]:
    """A line (currency, total, units) and the sizes of the returns that bring it back."""
    currency = draw(CURRENCIES)
    total = draw(_money(currency))
    units = draw(st.integers(1, 60))
    sizes: list[int] = []
    left = draw(st.integers(1, units))
    while left:
        size = draw(st.integers(1, left))
        sizes.append(size)
        left -= size
    return currency, total, units, sizes


@settings(max_examples=200, deadline=None)
@given(line_returns())
def test_returns_of_a_line_never_refund_more_than_was_paid(
    case: tuple[str, Decimal, int, list[int]],
) -> None:
    currency, total, units, sizes = case
    shares = amounts.unit_shares(total, units, currency)
    start = 0
    refunded = ZERO
    for size in sizes:
        part = amounts.unit_slice(total, units, start, size, currency)
        assert part == sum(shares[start : start + size], ZERO)  # the allocate() reference
        assert part >= 0 and has_valid_precision(part, currency)
        refunded += part
        start += size
    assert refunded <= total
    if start == units:
        assert refunded == total  # returning every unit gives back exactly what was paid
    # Shares differ by at most one minor unit: no return is priced unfairly.
    assert max(shares) - min(shares) <= from_minor(1, currency)


@settings(max_examples=200, deadline=None)
@given(currency=CURRENCIES, data=st.data())
def test_restocking_fee_is_a_rounded_part_of_the_share(currency: str, data: st.DataObject) -> None:
    paid = data.draw(_money(currency))
    percent = data.draw(st.integers(0, 10000).map(lambda x: Decimal(x) / 100))
    fee = amounts.restocking_fee(paid, percent, currency)
    assert ZERO <= fee <= paid and has_valid_precision(fee, currency)
    assert abs(fee - paid * percent / 100) <= from_minor(1, currency) / 2


@settings(max_examples=200, deadline=None)
@given(
    currency=CURRENCIES,
    tax_included=st.booleans(),
    rate=st.integers(0, 2500).map(lambda x: Decimal(x) / 10000),
    quantity=st.integers(1, 20),
    data=st.data(),
)
def test_a_replacement_line_adds_up_like_any_order_line(
    currency: str, tax_included: bool, rate: Decimal, quantity: int, data: st.DataObject
) -> None:
    unit = data.draw(_money(currency, 10**7))
    gross = amounts.gross_value(unit, quantity, rate, tax_included, currency)
    credit = from_minor(data.draw(st.integers(0, to_minor(gross, currency))), currency)
    priced = amounts.replacement_line(unit, quantity, rate, tax_included, credit, currency)
    assert priced.total == gross - credit
    assert priced.discount >= 0 and priced.tax >= 0
    # What orders.check_totals requires of every line.
    assert priced.subtotal - priced.discount == priced.total - (0 if tax_included else priced.tax)
    for value in (priced.subtotal, priced.discount, priced.tax, priced.total):
        assert has_valid_precision(value, currency)
    if credit == 0 and not tax_included:
        assert priced.discount == 0


@settings(max_examples=200, deadline=None)
@given(currency=CURRENCIES, data=st.data())
def test_an_exchange_nets_the_credit_against_the_replacement(
    currency: str, data: st.DataObject
) -> None:
    money = _money(currency, 10**7)
    refunds = data.draw(st.dictionaries(st.integers(1, 50), money, max_size=4))
    credits = data.draw(st.dictionaries(st.integers(51, 99), money, min_size=1, max_size=4))
    values = data.draw(st.lists(money, min_size=1, max_size=4))
    shipping = data.draw(money)
    plan = amounts.plan_settlement(refunds, credits, values, shipping, currency)
    credit, value = sum(credits.values(), ZERO), sum(values, ZERO)
    assert plan.credit_used == min(credit, value) == sum(plan.credits, ZERO)
    assert plan.charge == max(value - credit, ZERO)
    assert plan.refund == sum(refunds.values(), ZERO) + shipping + max(credit - value, ZERO)
    assert plan.refund == sum(plan.line_refunds.values(), ZERO) + shipping
    assert all(c <= v for c, v in zip(plan.credits, values, strict=True))
    assert all(plan.line_refunds[k] == v for k, v in refunds.items())
    assert all(0 <= plan.line_refunds[k] <= credits[k] for k in credits)


def test_a_unit_slice_outside_the_line_is_an_error() -> None:
    assert amounts.unit_slice(Decimal("10.00"), 3, 0, 0, "EUR") == Decimal("0.00")
    for start, count in ((2, 2), (-1, 1)):
        try:
            amounts.unit_slice(Decimal("10.00"), 3, start, count, "EUR")
        except ValueError:
            continue
        raise AssertionError((start, count))
    # 10.00 over 3 units: 3.34, 3.33, 3.33 (the first unit carries the extra cent).
    assert [amounts.unit_slice(Decimal("10.00"), 3, i, 1, "EUR") for i in range(3)] == [
        Decimal("3.34"),
        Decimal("3.33"),
        Decimal("3.33"),
    ]
    assert amounts.shipping_paid(Decimal("110"), [Decimal("50"), Decimal("40")], "JPY") == 20
