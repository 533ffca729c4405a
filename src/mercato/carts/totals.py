"""The arithmetic of a cart's totals, apart from where the numbers come from.

``assemble`` takes each line's subtotal and discount (discounts already allocated to lines
by the promotion engine, so every amount lives on a line), the shipping amount after its
discount, and the tax jurisdiction, and returns the taxed lines and the totals:

* tax-inclusive prices: line total = subtotal - discount (its tax is inside);
  grand total = Σ line totals + shipping;
* tax-exclusive prices (or tax added at checkout, as in the US): line total =
  subtotal - discount + tax; grand total = Σ line totals + shipping + shipping tax.

Every figure is a multiple of the currency's minor unit, so the same cart gives the same
totals in every channel and locale.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from mercato.money import ZERO
from mercato.pricing.tax import TaxAddress, TaxLine, TaxProvider, TaxRequest

SHIPPING_LINE = "shipping"


@dataclass(frozen=True)
class LineAmounts:
    line_id: str
    tax_class: str
    subtotal: Decimal
    discount: Decimal


@dataclass(frozen=True)
class TaxedLine:
    line_id: str
    tax: Decimal
    rate: Decimal
    total: Decimal


@dataclass
class Totals:
    lines: dict[str, TaxedLine]
    subtotal: Decimal
    discount_total: Decimal
    shipping_total: Decimal
    tax_total: Decimal
    grand_total: Decimal
    tax_included: bool
    breakdown: list[dict[str, Any]] = field(default_factory=list)


def assemble(
    currency: str,
    inclusive: bool,
    address: TaxAddress | None,
    lines: Sequence[LineAmounts],
    shipping: Decimal,
    provider: TaxProvider,
) -> Totals:
    subtotal = sum((x.subtotal for x in lines), ZERO)
    discount = sum((x.discount for x in lines), ZERO)
    if address is None or not lines:
        taxed = {
            x.line_id: TaxedLine(x.line_id, ZERO, ZERO, x.subtotal - x.discount) for x in lines
        }
        return Totals(
            taxed, subtotal, discount, shipping, ZERO, subtotal - discount + shipping, inclusive
        )
    tax_lines = [TaxLine(x.line_id, x.tax_class, x.subtotal - x.discount) for x in lines]
    if shipping > 0:
        tax_lines.append(TaxLine(SHIPPING_LINE, "shipping", shipping))
    result = provider.calculate(TaxRequest(currency, inclusive, address, tax_lines))
    by_id = {t.id: t for t in result.lines}
    taxed = {
        x.line_id: TaxedLine(
            x.line_id, by_id[x.line_id].tax, by_id[x.line_id].rate, by_id[x.line_id].gross
        )
        for x in lines
    }
    breakdown = [
        {
            "name": b.tax_name,
            "jurisdiction": b.jurisdiction_name,
            "rate": b.rate,
            "taxable": b.taxable,
            "tax": b.tax,
        }
        for b in result.breakdown
    ]
    return Totals(
        taxed,
        subtotal,
        discount,
        shipping,
        result.total_tax,
        result.total_gross,
        result.tax_included,
        breakdown,
    )
