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

Where the tax depends on more of the address than the cart has (a US cart before the
shopper gave the state), the cart still prices: its tax is *pending* (zero, with the
reason in ``tax_pending``, ``tax_included`` false since it may come on top) and the grand
total is the lines plus shipping.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from mercato.money import ZERO, quantize
from mercato.pricing.tax import (
    TaxAddress,
    TaxAddressIncomplete,
    TaxLine,
    TaxProvider,
    TaxRequest,
)

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
    # Why the tax is not known yet (an address without its US state), or None.
    tax_pending: TaxAddressIncomplete | None = None


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
        return _untaxed(currency, inclusive, lines, shipping)
    tax_lines = [TaxLine(x.line_id, x.tax_class, x.subtotal - x.discount) for x in lines]
    if shipping > 0:
        tax_lines.append(TaxLine(SHIPPING_LINE, "shipping", shipping))
    try:
        result = provider.calculate(TaxRequest(currency, inclusive, address, tax_lines))
    except TaxAddressIncomplete as exc:
        return _untaxed(currency, inclusive, lines, shipping, pending=exc)
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


def _untaxed(
    currency: str,
    inclusive: bool,
    lines: Sequence[LineAmounts],
    shipping: Decimal,
    pending: TaxAddressIncomplete | None = None,
) -> Totals:
    """Totals without tax: nothing to tax yet, or a tax that waits for more of the address."""
    subtotal = sum((x.subtotal for x in lines), ZERO)
    discount = sum((x.discount for x in lines), ZERO)
    none = quantize(ZERO, currency)
    taxed = {x.line_id: TaxedLine(x.line_id, none, ZERO, x.subtotal - x.discount) for x in lines}
    grand_total = subtotal - discount + shipping
    # A pending tax may still come on top: never claim it is included.
    included = inclusive and pending is None
    return Totals(
        taxed, subtotal, discount, shipping, none, grand_total, included, tax_pending=pending
    )


@dataclass(frozen=True)
class PriceTax:
    """How a shelf price relates to tax where the shopper is: inside it, on top of it, or
    not known until the address says more (then ``pending`` says why)."""

    included: bool
    pending: str | None = None


def price_tax(
    provider: TaxProvider, currency: str, inclusive: bool, country: str | None
) -> PriceTax:
    """What a product page says about tax for prices of a list in ``country``.

    Asks the provider about a zero-amount line, so the answer follows the provider's own
    rules (US sales tax always comes on top, even of a tax-inclusive list).
    """
    if country is None:
        return PriceTax(inclusive)
    line = TaxLine("price", "standard", ZERO)
    probe = TaxRequest(currency, inclusive, TaxAddress(country), [line])
    try:
        return PriceTax(provider.calculate(probe).tax_included)
    except TaxAddressIncomplete as exc:
        return PriceTax(False, str(exc))
