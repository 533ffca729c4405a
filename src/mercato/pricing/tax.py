"""Tax engine: VAT, GST, Japanese consumption tax and US sales tax from rule tables.

A :class:`TaxRequest` (currency, price convention, ship-to address, lines) goes into a
:class:`TaxProvider` and a :class:`TaxResult` comes out: per line the rate, net, tax and
gross; a breakdown per rate as an invoice prints it; and the totals. Everything is pure
``Decimal`` arithmetic in the currency's minor unit, so the same cart gives the same
cents on the web, in the app and on the POS.

:class:`TableTaxProvider` is the built-in provider. Its tables cover the 27 EU member
states, Japan, Vietnam, Singapore and the 50 US states plus DC; merchants add countries
or change rates by passing rules or rate patches to its constructor, and an external tax
service can take its place by implementing :class:`TaxProvider`.

Decisions every caller should know about:

* **Rounding.** Each jurisdiction has a :class:`RoundingPolicy`. ``"line"`` rounds the tax
  of every line. ``"total"`` computes the tax once per rate on the sum of the lines at
  that rate, rounds it once, and spreads that rounded amount back over the lines with
  :func:`mercato.money.allocate` (largest remainder), so line taxes always add up to the
  invoice total. Japan rounds down per rate (the qualified invoice system allows one
  rounding per rate per invoice, and rounding down is the common practice), the EU,
  Singapore and the US round half up per rate, Vietnam rounds half up per line.
* **Tax-inclusive prices where tax is added at checkout.** In the US sales tax is added
  on top of the shelf price. A tax-inclusive price list used for a US address is treated
  as a net price list: the amount is the pre-tax price and sales tax is added to it, and
  the result says ``tax_included=False`` so the storefront shows "plus tax". The
  alternative, stripping the seller's home VAT first, would need the seller's home rate
  on every request and would make the US price depend on where the merchant is based;
  a merchant who wants lower US prices keeps a separate net price list for that market.
* **Refunds.** A negative amount is a refund (a credit-note line). All lines of one
  request must then be zero or negative: an invoice and its credit note are rounded as
  separate documents, so a request mixing signs is rejected. A refund is computed as
  the mirror image of the sale, so refunding a whole order gives back exactly the tax
  that was charged, whatever the rounding mode.
* **Unsupported destinations.** A country without rules (or a US territory) gets zero
  tax and a breakdown entry with a ``note`` saying so, not an exception, so the cart
  still totals; an address that is not ISO 3166 is a ``ValueError``.
* **Addresses too vague to tax.** Where the tax depends on more than the country (a US
  state), an address without it, or with a region the country does not have, raises
  :class:`TaxAddressIncomplete`. Callers that price before the shopper gave an address
  (carts, product pages) show the tax as pending; checkout asks for the missing part.
  An external provider raises the same exception for the same situation.

Simplifications of the built-in tables (override them when they matter to a merchant):

* ``"food"`` is the rate for everyday groceries such as coffee beans and tea: the
  country's reduced rate for foodstuffs. Where the reduced food rate only covers a short
  list of staples (Bulgaria, Latvia) or there is none (Denmark, Estonia, Lithuania), it
  is the standard rate. Several countries tax particular foods (coffee, sweets, drinks)
  differently from staples; a merchant selling those defines a custom tax class.
* ``"reduced"`` is a generic class: the highest rate of the Commission's "reduced rate"
  column (super-reduced and parking rates excluded), the 8% rate in Japan and 5% in
  Vietnam. Prefer the specific classes (``food``, ``books``) where they apply.
* ``"shipping"`` follows the standard rate in the EU, Japan, Singapore and Vietnam. In
  the EU delivery strictly follows the rate of the goods it carries (a parcel of coffee
  ships at the food rate, a mixed parcel is split pro rata); the standard rate is the
  conservative simplification. In Japan shipping is taxed at 10% even for food.
  In the US shipping is taxed only in the states that tax separately stated delivery
  charges, at the state rate even when every item in the parcel is exempt.
* ``"digital"`` (downloads, e-services) is taxed at the customer's standard rate outside
  the US (in the EU the customer's country taxes e-services since 2015); e-books sold as
  ``"books"`` get the book rate instead. In the US it is exempt in the states that do
  not tax digital goods.
* US rates are the **state** rates only (plus the statewide local add-ons that CA, UT and
  VA levy everywhere). County, city and district taxes depend on the exact address; a
  merchant collecting them configures a combined rate per state or plugs in a provider
  that resolves the postal code. ``postal_code`` is carried for such providers and not
  used by the built-in tables, which also ignore EU special territories (Canary Islands,
  Åland, French overseas departments, ...).
* Vietnam is at its statutory 10%. Most goods there are taxed at 8% until
  31 December 2026 under the temporary two-point reduction (with exclusions such as
  telecoms, banking and real estate); a merchant whose goods qualify configures
  ``rates={"VN": {"standard": "0.08"}}``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal, InvalidOperation, localcontext
from types import MappingProxyType
from typing import Literal, Protocol, runtime_checkable

import pycountry

from mercato.money import (
    ROUNDING_MODES,
    ZERO,
    allocate,
    check_precision,
    quantize,
    validate_currency,
)

__all__ = [
    "DEFAULT_RULES",
    "RATES_AS_OF",
    "TAX_CLASSES",
    "ZERO_RATED_CLASSES",
    "LineTax",
    "RoundingLevel",
    "RoundingPolicy",
    "TableTaxProvider",
    "TaxAddress",
    "TaxAddressIncomplete",
    "TaxBreakdown",
    "TaxLine",
    "TaxProvider",
    "TaxRequest",
    "TaxResult",
    "TaxRule",
]

RATES_AS_OF = date(2026, 4, 1)
"""The day the built-in tables describe (rates in force on that day)."""

TAX_CLASSES = frozenset(
    {"standard", "reduced", "food", "books", "zero", "exempt", "shipping", "digital"}
)
ZERO_RATED_CLASSES = frozenset({"zero", "exempt"})

RoundingLevel = Literal["line", "total"]

_NO_TAX = Decimal("0.00")


def _pct(percent: str) -> Decimal:
    # scaleb keeps the written precision, so "10" becomes Decimal("0.10"), not 0.1.
    return Decimal(percent).scaleb(-2)


def _parse_rate(value: Decimal | str, label: str) -> Decimal:
    # Rates often come from configuration files as strings; floats are refused so a
    # binary fraction never reaches money arithmetic.
    if isinstance(value, str):
        try:
            rate = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"{label}: {value!r} is not a decimal rate") from None
    elif isinstance(value, Decimal):
        rate = value
    else:
        raise TypeError(f"{label}: a rate is a Decimal or a string, not {type(value).__name__}")
    if not rate.is_finite() or not ZERO <= rate < 1:
        raise ValueError(f"{label}: rate {value} is not a fraction in [0, 1) (19% is 0.19)")
    return rate


def _country_code(value: str) -> str:
    code = value.strip().upper()
    if len(code) != 2 or pycountry.countries.get(alpha_2=code) is None:
        raise ValueError(f"{value!r} is not an ISO 3166-1 alpha-2 country code")
    return code


def _subdivision_name(code: str) -> str | None:
    """The ISO 3166-2 subdivision's name (``"US-PR"`` is Puerto Rico), None if no such code."""
    # pycountry's subdivision lookup is untyped; the annotation gives it a signature.
    lookup: Callable[..., object] = pycountry.subdivisions.get
    name = getattr(lookup(code=code), "name", None)
    return None if name is None else str(name)


def _country_name(code: str) -> str:
    country = pycountry.countries.get(alpha_2=code)
    if country is None:
        return code
    return str(getattr(country, "common_name", None) or country.name)


# ---------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class RoundingPolicy:
    """Where tax is rounded (each line, or once per rate) and in which direction.

    ``mode`` is a key of :data:`mercato.money.ROUNDING_MODES`.
    """

    level: RoundingLevel
    mode: str = "half_up"

    def __post_init__(self) -> None:
        if self.level not in ("line", "total"):
            raise ValueError(f"rounding level must be 'line' or 'total', not {self.level!r}")
        if self.mode not in ROUNDING_MODES:
            raise ValueError(f"rounding mode must be one of {sorted(ROUNDING_MODES)}")


@dataclass(frozen=True)
class TaxRule:
    """The tax of one jurisdiction: a country (``"DE"``) or a region (``"US-CA"``).

    ``rates`` maps tax classes to rates as fractions (``Decimal("0.19")``) and must
    contain ``"standard"``; a class it does not list is taxed at the standard rate, so
    changing the standard rate moves every class that follows it. ``"zero"`` and
    ``"exempt"`` are always 0. ``added_at_checkout`` marks jurisdictions where prices
    are shown without tax and the tax is added on top (US sales tax).
    """

    code: str
    name: str
    tax_name: str
    # A read-only mapping is not hashable; the rule hashes by its other fields.
    rates: Mapping[str, Decimal] = field(hash=False)
    rounding: RoundingPolicy
    added_at_checkout: bool = False

    def __post_init__(self) -> None:
        country, _, region = self.code.strip().upper().partition("-")
        country = _country_code(country)
        code = f"{country}-{region}" if region else country
        clean = {
            tax_class: _parse_rate(rate, f"{code} {tax_class!r}")
            for tax_class, rate in self.rates.items()
        }
        if "standard" not in clean:
            raise ValueError(f"{code}: a tax rule needs a 'standard' rate")
        for tax_class in ZERO_RATED_CLASSES & clean.keys():
            if clean[tax_class] != ZERO:
                raise ValueError(f"{code}: the {tax_class!r} class is always 0")
        object.__setattr__(self, "code", code)
        object.__setattr__(self, "rates", MappingProxyType(clean))

    def rate_for(self, tax_class: str) -> Decimal:
        if tax_class in ZERO_RATED_CLASSES:
            return _NO_TAX
        return self.rates.get(tax_class, self.rates["standard"])

    def with_rates(self, rates: Mapping[str, Decimal | str]) -> TaxRule:
        """A copy with some class rates replaced or added (the others are kept)."""
        merged: dict[str, Decimal] = dict(self.rates)
        for tax_class, rate in rates.items():
            merged[tax_class] = _parse_rate(rate, f"{self.code} {tax_class!r}")
        return replace(self, rates=merged)


# -------------------------------------------------------------------------- request


class TaxAddressIncomplete(ValueError):
    """The tax at this address cannot be known until the address says more.

    ``part`` names what is missing or wrong (``"region"`` for a US state); the message says
    why in words a shopper can act on. It is a ``ValueError`` so that callers that treat
    any unusable address alike keep working.
    """

    def __init__(self, message: str, part: str = "region") -> None:
        super().__init__(message)
        self.part = part


@dataclass(frozen=True)
class TaxAddress:
    """Where the goods go: ISO 3166-1 alpha-2 country, region (the US state code,
    ``"CA"`` or ``"US-CA"``) and postal code. Only countries with regional rules (the
    US) look at the region."""

    country: str
    region: str | None = None
    postal_code: str | None = None

    def __post_init__(self) -> None:
        country = _country_code(self.country)
        region = (self.region or "").strip().upper() or None
        if region is not None and region.startswith(f"{country}-"):
            region = region[len(country) + 1 :]
        postal = (self.postal_code or "").strip() or None
        object.__setattr__(self, "country", country)
        object.__setattr__(self, "region", region)
        object.__setattr__(self, "postal_code", postal)


@dataclass(frozen=True)
class TaxLine:
    """One line of the cart or order: ``amount`` is the line total after discounts, in
    the request currency; shipping is a line of class ``"shipping"``."""

    id: str
    tax_class: str
    amount: Decimal

    def __post_init__(self) -> None:
        if not isinstance(self.amount, Decimal):
            raise TypeError(
                f"line {self.id!r}: amount must be a Decimal, not {type(self.amount).__name__}"
            )


@dataclass(frozen=True)
class TaxRequest:
    """What to tax. ``prices_include_tax`` says whether the line amounts are gross
    (tax-inclusive, usual in the EU, Japan, Singapore, Vietnam) or net.

    The currency is validated and upper-cased, line ids must be unique and amounts may
    not have more decimals than the currency has (they are quantized to it).
    """

    currency: str
    prices_include_tax: bool
    ship_to: TaxAddress
    lines: Sequence[TaxLine]

    def __post_init__(self) -> None:
        currency = validate_currency(self.currency)
        seen: set[str] = set()
        lines: list[TaxLine] = []
        for line in self.lines:
            if line.id in seen:
                raise ValueError(f"duplicate line id {line.id!r}")
            seen.add(line.id)
            try:
                amount = check_precision(line.amount, currency)
            except ValueError as exc:
                raise ValueError(f"line {line.id!r}: {exc}") from None
            lines.append(replace(line, amount=amount))
        object.__setattr__(self, "currency", currency)
        object.__setattr__(self, "lines", tuple(lines))


# --------------------------------------------------------------------------- result


@dataclass(frozen=True)
class LineTax:
    id: str
    tax_class: str
    rate: Decimal
    net: Decimal
    tax: Decimal
    gross: Decimal


@dataclass(frozen=True)
class TaxBreakdown:
    """One row of the tax summary an invoice prints: all lines taxed at ``rate`` by
    ``tax_name`` in one jurisdiction. ``note`` explains rows without real tax rules."""

    jurisdiction: str
    jurisdiction_name: str
    tax_name: str
    rate: Decimal
    taxable: Decimal
    tax: Decimal
    gross: Decimal
    note: str | None = None


@dataclass(frozen=True)
class TaxResult:
    """Taxes of a request. For every line ``net + tax == gross``; line taxes, breakdown
    taxes and ``total_tax`` agree to the minor unit. ``tax_included`` is true when the
    request amounts are the gross prices (then every ``gross`` equals its amount);
    otherwise the amounts are the net prices and tax comes on top."""

    currency: str
    tax_included: bool
    lines: tuple[LineTax, ...]
    breakdown: tuple[TaxBreakdown, ...]
    total_net: Decimal
    total_tax: Decimal
    total_gross: Decimal

    def line(self, line_id: str) -> LineTax:
        for line in self.lines:
            if line.id == line_id:
                return line
        raise KeyError(line_id)


@runtime_checkable
class TaxProvider(Protocol):
    """Anything that can tax a request: the built-in tables or an external service."""

    def calculate(self, request: TaxRequest) -> TaxResult: ...


# ------------------------------------------------------------------- built-in tables

_EU_ROUNDING = RoundingPolicy("total", "half_up")

# VAT in % as in force on RATES_AS_OF, from the European Commission's "VAT rates applied
# in the Member States" / TEDB, with the 2026 changes (FI 13.5%, LT books 5%, LV books
# 5%, SE food 6% from 1 April 2026 to 31 December 2027).
# (country, name, standard, reduced, food, books)
_EU_VAT: tuple[tuple[str, str, str, str, str, str], ...] = (
    ("AT", "Austria", "20", "13", "10", "10"),
    ("BE", "Belgium", "21", "6", "6", "6"),
    ("BG", "Bulgaria", "20", "9", "20", "9"),
    ("HR", "Croatia", "25", "13", "5", "5"),
    ("CY", "Cyprus", "19", "9", "5", "3"),
    ("CZ", "Czechia", "21", "12", "12", "0"),
    ("DK", "Denmark", "25", "25", "25", "25"),
    ("EE", "Estonia", "24", "13", "24", "9"),
    ("FI", "Finland", "25.5", "13.5", "13.5", "13.5"),
    ("FR", "France", "20", "10", "5.5", "5.5"),
    ("DE", "Germany", "19", "7", "7", "7"),
    ("GR", "Greece", "24", "13", "13", "6"),
    ("HU", "Hungary", "27", "18", "5", "5"),
    ("IE", "Ireland", "23", "13.5", "0", "0"),
    ("IT", "Italy", "22", "10", "10", "4"),
    ("LV", "Latvia", "21", "12", "21", "5"),
    ("LT", "Lithuania", "21", "12", "21", "5"),
    ("LU", "Luxembourg", "17", "8", "3", "3"),
    ("MT", "Malta", "18", "7", "0", "5"),
    ("NL", "Netherlands", "21", "9", "9", "9"),
    ("PL", "Poland", "23", "8", "5", "5"),
    ("PT", "Portugal", "23", "13", "6", "6"),
    ("RO", "Romania", "21", "11", "11", "11"),
    ("SK", "Slovakia", "23", "19", "5", "5"),
    ("SI", "Slovenia", "22", "9.5", "9.5", "5"),
    ("ES", "Spain", "21", "10", "10", "4"),
    ("SE", "Sweden", "25", "12", "6", "6"),
)

# State-level sales tax in % in force in 2026 (source year 2026; no state changed its
# general rate on 1 January 2026, only grocery rates moved). CA, UT and VA include the local
# add-on levied statewide (CA 1.25%, UT 1.25%, VA 1%), which is also why their grocery
# rates are not 0 in UT and VA. Groceries: AR and IL repealed their state grocery tax
# on 1 January 2026, MS taxes them at 5% since July 2025, AL at 2% since September 2025.
# Shipping: states where separately stated delivery charges on a taxable sale are
# taxable. Digital: false where downloaded music, films and e-books are not taxed.
# (state, name, rate, groceries rate, shipping taxable, digital goods taxable)
_US_SALES_TAX: tuple[tuple[str, str, str, str, bool, bool], ...] = (
    ("AL", "Alabama", "4", "2", False, True),
    ("AK", "Alaska", "0", "0", False, False),
    ("AZ", "Arizona", "5.6", "0", False, True),
    ("AR", "Arkansas", "6.5", "0", True, True),
    ("CA", "California", "7.25", "0", False, False),
    ("CO", "Colorado", "2.9", "0", False, True),
    ("CT", "Connecticut", "6.35", "0", True, True),
    ("DE", "Delaware", "0", "0", False, False),
    ("DC", "District of Columbia", "6", "0", True, True),
    ("FL", "Florida", "6", "0", False, False),
    ("GA", "Georgia", "4", "0", True, False),
    ("HI", "Hawaii", "4", "4", True, True),
    ("ID", "Idaho", "6", "6", False, True),
    ("IL", "Illinois", "6.25", "0", False, False),
    ("IN", "Indiana", "7", "0", True, True),
    ("IA", "Iowa", "6", "0", False, True),
    ("KS", "Kansas", "6.5", "0", True, False),
    ("KY", "Kentucky", "6", "0", True, True),
    ("LA", "Louisiana", "5", "0", False, True),
    ("ME", "Maine", "5.5", "0", False, True),
    ("MD", "Maryland", "6", "0", False, True),
    ("MA", "Massachusetts", "6.25", "0", False, False),
    ("MI", "Michigan", "6", "0", True, False),
    ("MN", "Minnesota", "6.875", "0", True, True),
    ("MS", "Mississippi", "7", "5", True, True),
    ("MO", "Missouri", "4.225", "1.225", False, False),
    ("MT", "Montana", "0", "0", False, False),
    ("NE", "Nebraska", "5.5", "0", True, True),
    ("NV", "Nevada", "6.85", "0", False, False),
    ("NH", "New Hampshire", "0", "0", False, False),
    ("NJ", "New Jersey", "6.625", "0", True, True),
    ("NM", "New Mexico", "4.875", "0", True, True),
    ("NY", "New York", "4", "0", True, False),
    ("NC", "North Carolina", "4.75", "0", True, True),
    ("ND", "North Dakota", "5", "0", True, False),
    ("OH", "Ohio", "5.75", "0", True, True),
    ("OK", "Oklahoma", "4.5", "0", False, False),
    ("OR", "Oregon", "0", "0", False, False),
    ("PA", "Pennsylvania", "6", "0", True, True),
    ("RI", "Rhode Island", "7", "0", True, True),
    ("SC", "South Carolina", "6", "0", True, False),
    ("SD", "South Dakota", "4.2", "4.2", True, True),
    ("TN", "Tennessee", "7", "4", True, True),
    ("TX", "Texas", "6.25", "0", True, True),
    ("UT", "Utah", "6.1", "3", False, True),
    ("VT", "Vermont", "6", "0", True, True),
    ("VA", "Virginia", "5.3", "1", False, False),
    ("WA", "Washington", "6.5", "0", True, True),
    ("WV", "West Virginia", "6", "0", True, True),
    ("WI", "Wisconsin", "5", "0", True, True),
    ("WY", "Wyoming", "4", "0", False, True),
)


def _builtin_rules() -> dict[str, TaxRule]:
    rules: list[TaxRule] = [
        TaxRule(
            code=code,
            name=name,
            tax_name="VAT",
            rates={
                "standard": _pct(standard),
                "reduced": _pct(reduced),
                "food": _pct(food),
                "books": _pct(books),
            },
            rounding=_EU_ROUNDING,
        )
        for code, name, standard, reduced, food, books in _EU_VAT
    ]
    rules.append(
        TaxRule(
            code="JP",
            name="Japan",
            tax_name="JCT",
            # The 8% reduced rate (軽減税率) covers food and drink other than alcohol and
            # eating in, and newspaper subscriptions; books and shipping are at 10%.
            rates={"standard": _pct("10"), "reduced": _pct("8"), "food": _pct("8")},
            rounding=RoundingPolicy("total", "down"),
        )
    )
    rules.append(
        TaxRule(
            code="VN",
            name="Vietnam",
            tax_name="VAT",
            # 5% covers fresh and essential foodstuffs, teaching aids and books (many of
            # which, like textbooks, are outside VAT altogether).
            rates={
                "standard": _pct("10"),
                "reduced": _pct("5"),
                "food": _pct("5"),
                "books": _pct("5"),
            },
            rounding=RoundingPolicy("line", "half_up"),
        )
    )
    rules.append(
        TaxRule(
            code="SG",
            name="Singapore",
            tax_name="GST",
            # One rate for every taxable supply, groceries included, since 1 January 2024.
            rates={"standard": _pct("9")},
            rounding=RoundingPolicy("total", "half_up"),
        )
    )
    for state, name, rate, groceries, shipping, digital in _US_SALES_TAX:
        rates = {"standard": _pct(rate)}
        if groceries != rate:
            rates["food"] = _pct(groceries)
        if not shipping:
            rates["shipping"] = _NO_TAX
        if not digital:
            rates["digital"] = _NO_TAX
        rules.append(
            TaxRule(
                code=f"US-{state}",
                name=name,
                tax_name="Sales tax",
                rates=rates,
                rounding=RoundingPolicy("total", "half_up"),
                added_at_checkout=True,
            )
        )
    return {rule.code: rule for rule in rules}


DEFAULT_RULES: Mapping[str, TaxRule] = MappingProxyType(_builtin_rules())
"""The built-in rules by jurisdiction code (``"DE"``, ``"JP"``, ``"US-CA"``)."""


# ------------------------------------------------------------------------- provider


class TableTaxProvider:
    """Taxes requests from rule tables: the built-in ones, changed by configuration.

    ``rules`` adds jurisdictions or replaces built-in ones wholesale (a country the
    tables do not cover, a merchant's own rounding). ``rates`` patches class rates of
    existing rules, keyed by jurisdiction code, with ``Decimal`` or string rates as a
    settings file holds them::

        TableTaxProvider(rates={"US-CA": {"standard": "0.0875"}, "VN": {"standard": "0.08"}})

    A class name that appears in any rule (``{"DE": {"wine": "0.19"}}``) becomes a known
    tax class, taxed at the standard rate wherever no rule lists it. ``builtin=False``
    starts from an empty table.
    """

    def __init__(
        self,
        rules: Iterable[TaxRule] = (),
        rates: Mapping[str, Mapping[str, Decimal | str]] | None = None,
        *,
        builtin: bool = True,
    ) -> None:
        table: dict[str, TaxRule] = dict(DEFAULT_RULES) if builtin else {}
        for rule in rules:
            table[rule.code] = rule
        for code, patch in (rates or {}).items():
            key = code.strip().upper()
            if key not in table:
                raise ValueError(f"no tax rule {code!r} to change rates of; pass a TaxRule for it")
            table[key] = table[key].with_rates(patch)
        self._rules: Mapping[str, TaxRule] = MappingProxyType(table)
        self._regional = frozenset(code.partition("-")[0] for code in table if "-" in code)
        self._classes = TAX_CLASSES | {name for rule in table.values() for name in rule.rates}

    @property
    def rules(self) -> Mapping[str, TaxRule]:
        return self._rules

    @property
    def tax_classes(self) -> frozenset[str]:
        return self._classes

    def rule_for(self, address: TaxAddress) -> TaxRule | None:
        """The rule that applies at ``address``, or None when the tables have none.

        A country with regional rules (the US) needs a valid region: a missing or unknown
        one is :class:`TaxAddressIncomplete` because the tax cannot be known, a valid region
        without rules (a US territory) has no rule.
        """
        if address.region is not None:
            regional = self._rules.get(f"{address.country}-{address.region}")
            if regional is not None:
                return regional
        rule = self._rules.get(address.country)
        if rule is not None or address.country not in self._regional:
            return rule
        if address.region is None:
            raise TaxAddressIncomplete(
                f"tax in {address.country} depends on the region: set the ship-to region "
                "(the state code)"
            )
        if _subdivision_name(f"{address.country}-{address.region}") is None:
            raise TaxAddressIncomplete(
                f"{address.region!r} is not an ISO 3166-2 region of {address.country}"
            )
        return None

    def calculate(self, request: TaxRequest) -> TaxResult:
        for line in request.lines:
            if line.tax_class not in self._classes:
                raise ValueError(
                    f"unknown tax class {line.tax_class!r} on line {line.id!r}; "
                    f"known classes: {', '.join(sorted(self._classes))}"
                )
        refund = _is_refund(request.lines)
        rule = self.rule_for(request.ship_to)
        if rule is None:
            return self._untaxed(request, refund)
        currency = request.currency
        inclusive = request.prices_include_tax and not rule.added_at_checkout
        amounts = [abs(line.amount) for line in request.lines]
        rates = [rule.rate_for(line.tax_class) for line in request.lines]
        taxes = _taxes(amounts, rates, inclusive, rule.rounding, currency)
        lines = []
        for line, amount, rate, tax in zip(request.lines, amounts, rates, taxes, strict=True):
            net, gross = (amount - tax, amount) if inclusive else (amount, amount + tax)
            lines.append(
                LineTax(
                    id=line.id,
                    tax_class=line.tax_class,
                    rate=rate,
                    net=_signed(net, refund),
                    tax=_signed(tax, refund),
                    gross=_signed(gross, refund),
                )
            )
        by_rate: dict[Decimal, list[LineTax]] = {}
        for line_tax in lines:
            by_rate.setdefault(line_tax.rate, []).append(line_tax)
        breakdown = tuple(
            TaxBreakdown(
                jurisdiction=rule.code,
                jurisdiction_name=rule.name,
                tax_name=rule.tax_name,
                rate=rate,
                taxable=_sum((t.net for t in group), currency),
                tax=_sum((t.tax for t in group), currency),
                gross=_sum((t.gross for t in group), currency),
            )
            for rate, group in sorted(by_rate.items(), key=lambda item: item[0], reverse=True)
        )
        return _result(request, inclusive, lines, breakdown)

    def _untaxed(self, request: TaxRequest, refund: bool) -> TaxResult:
        address = request.ship_to
        code, name = address.country, _country_name(address.country)
        if address.country in self._regional and address.region is not None:
            code = f"{address.country}-{address.region}"
            name = _subdivision_name(code) or code
        currency = request.currency
        lines = [
            LineTax(
                id=line.id,
                tax_class=line.tax_class,
                rate=_NO_TAX,
                net=line.amount,
                tax=_signed(quantize(ZERO, currency), refund),
                gross=line.amount,
            )
            for line in request.lines
        ]
        total = _sum((line.amount for line in request.lines), currency)
        note = TaxBreakdown(
            jurisdiction=code,
            jurisdiction_name=name,
            tax_name="No tax",
            rate=_NO_TAX,
            taxable=total,
            tax=quantize(ZERO, currency),
            gross=total,
            note=f"no tax rules for {code}: tax not calculated",
        )
        return _result(request, request.prices_include_tax, lines, (note,))


# -------------------------------------------------------------------------- helpers


def _is_refund(lines: Sequence[TaxLine]) -> bool:
    negative = [line.id for line in lines if line.amount < 0]
    if not negative:
        return False
    positive = [line.id for line in lines if line.amount > 0]
    if positive:
        raise ValueError(
            "a request is a sale or a refund: lines "
            f"{', '.join(map(repr, positive))} are positive and "
            f"{', '.join(map(repr, negative))} negative; tax refunds in a request of their own"
        )
    return True


def _exact_tax(amount: Decimal, rate: Decimal, inclusive: bool) -> Decimal:
    if inclusive:
        return amount * rate / (1 + rate)
    return amount * rate


def _taxes(
    amounts: Sequence[Decimal],
    rates: Sequence[Decimal],
    inclusive: bool,
    policy: RoundingPolicy,
    currency: str,
) -> list[Decimal]:
    """The tax of each line in minor units, rounded as ``policy`` says."""
    # Headroom so that the division for tax-inclusive prices never rounds before the
    # currency rounding does, even for very large amounts.
    with localcontext() as ctx:
        ctx.prec = 50
        if policy.level == "line":
            return [
                quantize(_exact_tax(amount, rate, inclusive), currency, policy.mode)
                for amount, rate in zip(amounts, rates, strict=True)
            ]
        groups: dict[Decimal, list[int]] = {}
        for index, rate in enumerate(rates):
            groups.setdefault(rate, []).append(index)
        taxes = [quantize(ZERO, currency)] * len(amounts)
        for rate, indices in groups.items():
            weights = [amounts[i] for i in indices]
            total = quantize(_exact_tax(sum(weights, ZERO), rate, inclusive), currency, policy.mode)
            for index, share in zip(indices, allocate(total, weights, currency), strict=True):
                taxes[index] = share
        return taxes


def _signed(value: Decimal, negative: bool) -> Decimal:
    # Keeps zero unsigned: Decimal("-0.00") would print as a negative amount.
    return -value if negative and value else value


def _sum(values: Iterable[Decimal], currency: str) -> Decimal:
    return sum(values, quantize(ZERO, currency))


def _result(
    request: TaxRequest,
    tax_included: bool,
    lines: Sequence[LineTax],
    breakdown: tuple[TaxBreakdown, ...],
) -> TaxResult:
    currency = request.currency
    return TaxResult(
        currency=currency,
        tax_included=tax_included,
        lines=tuple(lines),
        breakdown=breakdown,
        total_net=_sum((line.net for line in lines), currency),
        total_tax=_sum((line.tax for line in lines), currency),
        total_gross=_sum((line.gross for line in lines), currency),
    )
