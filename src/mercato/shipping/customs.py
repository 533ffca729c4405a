"""Import duty and import tax estimates for cross-border parcels (pure calculation).

For each destination country staff configure :class:`CustomsRules`: ad valorem duty rates
by HS chapter (2 digits), heading (4) or subheading (6+) with a default rate, the import
VAT/GST rate, de minimis thresholds in the destination's currency, whether customs value
includes shipping (CIF) or not (FOB), and origins whose goods enter duty free under a
trade agreement.

How an estimate is computed (every amount in the estimate's currency, the currency of
the goods):

1. No customs border (same country, or both in the EU customs union): nothing is due.
2. ``goods_value`` is the sum of the item values. When it is at or under the duty
   threshold no duty is due; at or under the tax threshold no import tax is due. A
   threshold in another currency is converted with the customs exchange rate.
3. The shipping amount is spread over the items in proportion to their value
   (:func:`mercato.money.allocate`, so the shares add up exactly).
4. Per item: customs value = value (+ its shipping share under CIF); duty = customs value x
   the rate of the longest matching HS prefix (0 for preferential origins); import tax =
   (value + shipping share + duty) x the tax rate. Each is rounded half up to the minor
   unit, and the totals are the sums of the lines.

Simplifications: only ad valorem duties (no specific duties per kg or litre), no excise,
no brokerage fees, de minimis compared with the goods value without shipping, and the EU
customs union without its special territories.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from mercato.money import allocate, quantize

ZERO = Decimal(0)

EU_MEMBERS = frozenset(
    {
        "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE",
        "IT", "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE",
    }
)  # fmt: skip


def customs_territory(country: str) -> str:
    """The customs territory a country belongs to ("EU" for member states)."""
    return "EU" if country in EU_MEMBERS else country


def crosses_customs_border(origin_country: str, destination_country: str) -> bool:
    return customs_territory(origin_country) != customs_territory(destination_country)


def normalise_hs(code: str) -> str:
    """HS codes are compared as digits only: "6109.10" -> "610910"."""
    return "".join(ch for ch in code if ch not in " .-")


@dataclass(frozen=True)
class CustomsRules:
    country: str
    currency: str
    default_duty_rate: Decimal
    import_tax_rate: Decimal
    tax_name: str = "VAT"
    duty_de_minimis: Decimal | None = None
    tax_de_minimis: Decimal | None = None
    valuation: str = "cif"
    duty_rates: Mapping[str, Decimal] = field(default_factory=dict)
    preferential_origins: frozenset[str] = frozenset()

    def duty_rate(self, hs_code: str | None) -> Decimal:
        """The rate of the longest configured prefix of ``hs_code``, else the default."""
        code = normalise_hs(hs_code or "")
        for length in range(len(code), 1, -1):
            rate = self.duty_rates.get(code[:length])
            if rate is not None:
                return rate
        return self.default_duty_rate


@dataclass(frozen=True)
class DutyItem:
    hs_code: str | None
    origin_country: str
    value: Decimal
    currency: str


@dataclass(frozen=True)
class DutyLine:
    hs_code: str | None
    origin_country: str
    value: Decimal
    shipping_share: Decimal
    customs_value: Decimal
    duty_rate: Decimal
    duty: Decimal
    import_tax: Decimal
    preferential: bool


@dataclass(frozen=True)
class DutyEstimate:
    destination_country: str
    origin_country: str
    currency: str
    goods_value: Decimal
    duty: Decimal
    import_tax: Decimal
    total: Decimal
    lines: tuple[DutyLine, ...]
    crosses_border: bool
    de_minimis_applied: bool  # duty waived: goods at or under the duty threshold
    tax_de_minimis_applied: bool  # import tax waived: goods at or under the tax threshold
    tax_name: str | None
    notes: tuple[str, ...] = ()


def _nothing_due(
    destination: str,
    origin: str,
    items: Sequence[DutyItem],
    shipping: Decimal,
    currency: str,
    crosses: bool,
    note: str,
) -> DutyEstimate:
    shares = allocate(shipping, [i.value for i in items], currency)
    lines = tuple(
        DutyLine(
            i.hs_code,
            i.origin_country,
            i.value,
            s,
            i.value,
            ZERO,
            quantize(ZERO, currency),
            quantize(ZERO, currency),
            False,
        )
        for i, s in zip(items, shares, strict=True)
    )
    zero = quantize(ZERO, currency)
    goods = quantize(sum((i.value for i in items), ZERO), currency)
    return DutyEstimate(
        destination,
        origin,
        currency,
        goods,
        zero,
        zero,
        zero,
        lines,
        crosses,
        False,
        False,
        None,
        (note,),
    )


def _under(threshold: Decimal | None, goods: Decimal, fx_rate: Decimal | None) -> bool:
    if threshold is None:
        return False
    return goods <= threshold * (fx_rate if fx_rate is not None else Decimal(1))


def estimate(
    rules: CustomsRules | None,
    *,
    destination_country: str,
    origin_country: str,
    items: Sequence[DutyItem],
    shipping_amount: Decimal,
    currency: str,
    fx_rate: Decimal | None = None,
) -> DutyEstimate:
    """Duties and import tax for ``items`` (validated, all in ``currency``).

    ``fx_rate`` is how much of ``currency`` one unit of the rules' currency is worth; it
    is needed only when the two differ and a threshold is configured.
    """
    if not crosses_customs_border(origin_country, destination_country):
        return _nothing_due(
            destination_country,
            origin_country,
            items,
            shipping_amount,
            currency,
            False,
            "no customs border between origin and destination",
        )
    if rules is None:
        return _nothing_due(
            destination_country,
            origin_country,
            items,
            shipping_amount,
            currency,
            True,
            f"no customs rules configured for {destination_country}",
        )
    goods = sum((i.value for i in items), ZERO)
    duty_waived = _under(rules.duty_de_minimis, goods, fx_rate)
    tax_waived = _under(rules.tax_de_minimis, goods, fx_rate)
    shares = allocate(shipping_amount, [i.value for i in items], currency)
    lines = tuple(
        _line(rules, item, share, currency, duty_waived=duty_waived, tax_waived=tax_waived)
        for item, share in zip(items, shares, strict=True)
    )
    duty = quantize(sum((x.duty for x in lines), ZERO), currency)
    tax = quantize(sum((x.import_tax for x in lines), ZERO), currency)
    notes = []
    if duty_waived:
        notes.append("goods value at or under the duty de minimis threshold")
    if tax_waived:
        notes.append("goods value at or under the import tax de minimis threshold")
    return DutyEstimate(
        destination_country=destination_country,
        origin_country=origin_country,
        currency=currency,
        goods_value=quantize(goods, currency),
        duty=duty,
        import_tax=tax,
        total=duty + tax,
        lines=lines,
        crosses_border=True,
        de_minimis_applied=duty_waived,
        tax_de_minimis_applied=tax_waived,
        tax_name=rules.tax_name,
        notes=tuple(notes),
    )


def _line(
    rules: CustomsRules,
    item: DutyItem,
    share: Decimal,
    currency: str,
    *,
    duty_waived: bool,
    tax_waived: bool,
) -> DutyLine:
    preferential = item.origin_country in rules.preferential_origins
    rate = ZERO if preferential else rules.duty_rate(item.hs_code)
    customs_value = item.value + share if rules.valuation == "cif" else item.value
    duty = ZERO if duty_waived else quantize(customs_value * rate, currency)
    tax_base = item.value + share + duty
    tax = ZERO if tax_waived else quantize(tax_base * rules.import_tax_rate, currency)
    return DutyLine(
        hs_code=item.hs_code,
        origin_country=item.origin_country,
        value=item.value,
        shipping_share=share,
        customs_value=quantize(customs_value, currency),
        duty_rate=rate,
        duty=quantize(duty, currency),
        import_tax=quantize(tax, currency),
        preferential=preferential,
    )
