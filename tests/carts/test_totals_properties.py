"""Cart totals are reproducible from their lines, for every currency's minor unit."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from mercato.carts.totals import LineAmounts, assemble
from mercato.money import from_minor, quantize
from mercato.pricing.tax import TableTaxProvider, TaxAddress
from mercato.promotions import engine

PROVIDER = TableTaxProvider()
PLACES = {
    "JPY": [TaxAddress("JP")],
    "VND": [TaxAddress("VN")],
    "EUR": [TaxAddress("DE"), TaxAddress("FR")],
    "USD": [TaxAddress("US", "CA"), TaxAddress("US", "OR")],
    "KWD": [TaxAddress("KW")],
}


@st.composite
def carts(
    draw: st.DrawFn,
) -> tuple[
    str, list[engine.CartLine], list[engine.Promotion], Decimal, TaxAddress, bool, list[str]
]:
    currency = draw(st.sampled_from(sorted(PLACES)))
    count = draw(st.integers(1, 6))
    lines = [
        engine.CartLine(
            line_id=str(i),
            variant_id=i,
            product_id=i,
            category_ids=frozenset({i % 3}),
            quantity=draw(st.integers(1, 5)),
            unit_price=from_minor(draw(st.integers(1, 2_000_000)), currency),
        )
        for i in range(count)
    ]
    promotions = []
    if draw(st.booleans()):
        promotions.append(
            engine.Promotion(
                id=1,
                name="order",
                action=engine.PercentOffOrder(percent=Decimal(draw(st.integers(1, 60)))),
            )
        )
    if draw(st.booleans()):
        promotions.append(
            engine.Promotion(
                id=2,
                name="items",
                action=engine.PercentOffItems(
                    percent=Decimal(draw(st.integers(1, 90))),
                    items=engine.ItemSelector(category_ids=frozenset({0})),
                ),
            )
        )
    shipping = from_minor(draw(st.integers(0, 300_000)), currency)
    place = draw(st.sampled_from(PLACES[currency]))
    classes = [draw(st.sampled_from(["standard", "food", "books"])) for _ in lines]
    return currency, lines, promotions, shipping, place, draw(st.booleans()), classes


@settings(max_examples=150, deadline=None)
@given(carts())
def test_totals_are_the_sum_of_their_lines(case: tuple) -> None:  # type: ignore[type-arg]
    currency, lines, promotions, shipping, place, inclusive, classes = case
    context = engine.CartContext(
        currency=currency, channel_id=1, now=datetime(2026, 11, 23, tzinfo=UTC), shipping=shipping
    )
    result = engine.apply_promotions(lines, promotions, context)
    amounts = [
        LineAmounts(x.line_id, tax_class, x.subtotal, result.line(x.line_id).discount)
        for x, tax_class in zip(lines, classes, strict=True)
    ]
    shipping_net = shipping - result.shipping_discount
    totals = assemble(currency, inclusive, place, amounts, shipping_net, PROVIDER)
    line_totals = sum((t.total for t in totals.lines.values()), Decimal(0))
    line_taxes = sum((t.tax for t in totals.lines.values()), Decimal(0))
    for a in amounts:
        taxed = totals.lines[a.line_id]
        expected = a.subtotal - a.discount + (Decimal(0) if totals.tax_included else taxed.tax)
        assert taxed.total == expected
        assert taxed.tax >= 0 and quantize(taxed.tax, currency) == taxed.tax
    assert totals.subtotal == sum((x.subtotal for x in lines), Decimal(0))
    assert totals.discount_total == result.line_discount
    shipping_tax = totals.tax_total - line_taxes
    extra = Decimal(0) if totals.tax_included else shipping_tax
    # subtotal - discounts (+ taxes when added on top) + shipping == grand total
    assert totals.grand_total == line_totals + shipping_net + extra
    assert totals.grand_total == (
        totals.subtotal
        - totals.discount_total
        + shipping_net
        + (Decimal(0) if totals.tax_included else totals.tax_total)
    )
    for value in (totals.grand_total, totals.tax_total, totals.subtotal):
        assert quantize(value, currency) == value
    assert totals.grand_total >= 0
