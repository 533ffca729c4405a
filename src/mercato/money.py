"""Money: ``Decimal`` amounts in a currency's minor unit, never floats.

Minor units come from Babel's CLDR data (JPY and VND have none, EUR two, KWD three).
Every amount that leaves this module is quantized to its currency, so totals built from
quantized lines are reproducible anywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, ROUND_HALF_UP, ROUND_UP, Decimal
from functools import lru_cache

from babel import UnknownLocaleError
from babel.numbers import format_currency, get_currency_precision, list_currencies

ZERO = Decimal(0)

# Codes Babel lists that are not currencies anyone pays with (testing, precious metals, funds).
_NOT_TENDER = frozenset(
    {"XXX", "XTS", "XAU", "XAG", "XPD", "XPT", "XDR", "XBA", "XBB", "XBC", "XBD", "XSU", "XUA"}
)

ROUNDING_MODES = {
    "half_up": ROUND_HALF_UP,
    "up": ROUND_UP,
    "down": ROUND_DOWN,
    "ceiling": ROUND_CEILING,
    "floor": ROUND_FLOOR,
}


@lru_cache(maxsize=1)
def known_currencies() -> frozenset[str]:
    return frozenset(list_currencies()) - _NOT_TENDER


def validate_currency(code: str) -> str:
    """The upper-cased ISO 4217 code, or ValueError naming why it is not one."""
    upper = code.strip().upper()
    if upper not in known_currencies():
        raise ValueError(f"{code!r} is not an ISO 4217 currency code")
    return upper


@lru_cache(maxsize=512)
def minor_units(currency: str) -> int:
    """How many decimals the currency uses (JPY 0, EUR 2, KWD 3)."""
    return int(get_currency_precision(currency))


@lru_cache(maxsize=512)
def quantum(currency: str) -> Decimal:
    """The smallest amount of the currency: 1 for JPY, 0.01 for EUR, 0.001 for KWD."""
    return Decimal(1).scaleb(-minor_units(currency))


def quantize(amount: Decimal | int | str, currency: str, rounding: str = "half_up") -> Decimal:
    """``amount`` rounded to the currency's minor unit (commercial rounding by default)."""
    return Decimal(amount).quantize(quantum(currency), rounding=ROUNDING_MODES[rounding])


# Far above any real price or order total, far below where Decimal's 28 digits run out.
MAX_AMOUNT = Decimal(10) ** 15


def has_valid_precision(amount: Decimal, currency: str) -> bool:
    """True when ``amount`` is a sane amount with no more decimals than the currency allows."""
    if not amount.is_finite() or abs(amount) >= MAX_AMOUNT:
        return False
    return amount == amount.quantize(quantum(currency), rounding=ROUND_DOWN)


def check_precision(amount: Decimal, currency: str) -> Decimal:
    """The amount, quantized, or ValueError when it has more decimals than the currency."""
    if not has_valid_precision(amount, currency):
        if not amount.is_finite():
            raise ValueError("not a finite amount")
        if abs(amount) >= MAX_AMOUNT:
            raise ValueError(f"{amount} is beyond the largest amount Mercato accepts")
        raise ValueError(
            f"{amount} has more decimals than {currency} allows ({minor_units(currency)})"
        )
    return amount.quantize(quantum(currency))


def to_minor(amount: Decimal, currency: str) -> int:
    """The amount in minor units (cents, yen): exact for quantized amounts."""
    return int(quantize(amount, currency).scaleb(minor_units(currency)))


def from_minor(units: int, currency: str) -> Decimal:
    return Decimal(units).scaleb(-minor_units(currency)).quantize(quantum(currency))


def format_money(amount: Decimal, currency: str, locale: str) -> str:
    """The amount as a shopper in ``locale`` reads it (``￥1,234``, ``1.234,50 €``)."""
    babel_locale = locale.replace("-", "_")
    try:
        return str(format_currency(quantize(amount, currency), currency, locale=babel_locale))
    except (ValueError, LookupError, UnknownLocaleError):
        return str(format_currency(quantize(amount, currency), currency, locale="en"))


def allocate(total: Decimal, weights: Sequence[Decimal], currency: str) -> list[Decimal]:
    """Split ``total`` over ``weights`` in proportion, each share in minor units.

    The shares always sum to exactly ``total`` (largest remainder method, ties to the
    earliest index), so an order discount spread over lines, or a refund spread over
    tenders, is reproducible from its parts. All-zero weights split evenly.
    """
    if not weights:
        return []
    total_units = to_minor(total, currency)
    clean = [max(w, ZERO) for w in weights]
    weight_sum = sum(clean, ZERO)
    if weight_sum == ZERO:
        clean = [Decimal(1)] * len(weights)
        weight_sum = Decimal(len(weights))
    sign = -1 if total_units < 0 else 1
    units = abs(total_units)
    exact = [Decimal(units) * w / weight_sum for w in clean]
    floors = [int(x.to_integral_value(rounding=ROUND_FLOOR)) for x in exact]
    left = units - sum(floors)
    order = sorted(range(len(exact)), key=lambda i: (-(exact[i] - floors[i]), i))
    for i in order[:left]:
        floors[i] += 1
    return [from_minor(sign * f, currency) for f in floors]


@dataclass(frozen=True)
class RoundingRule:
    """How a converted price is rounded in a currency without an explicit price.

    ``increment`` is the step prices land on (1 for whole yen, 1000 for VND, 0.01 for
    cents); ``ending`` makes prices end in a charm value (``0.99`` turns 12.30 into 12.99,
    ``0.95`` turns 3.96 into 4.95) after the increment rounding.
    """

    increment: Decimal
    mode: str = "half_up"
    ending: Decimal | None = None

    def __post_init__(self) -> None:
        if self.increment <= ZERO:
            raise ValueError("increment must be positive")
        if self.mode not in ROUNDING_MODES:
            raise ValueError(f"mode must be one of {sorted(ROUNDING_MODES)}")
        if self.ending is not None and not (ZERO <= self.ending < Decimal(1)):
            raise ValueError("ending is the fractional part, between 0 and 1")

    def apply(self, amount: Decimal, currency: str) -> Decimal:
        steps = (amount / self.increment).to_integral_value(rounding=ROUNDING_MODES[self.mode])
        rounded = steps * self.increment
        if self.ending is not None:
            whole = rounded.to_integral_value(rounding=ROUND_FLOOR)
            candidate = whole + self.ending
            if candidate < rounded:
                candidate += 1
            rounded = candidate
        return quantize(rounded, currency)


def default_rounding(currency: str) -> RoundingRule:
    """Plain rounding to the currency's minor unit."""
    return RoundingRule(increment=quantum(currency))


def convert(
    amount: Decimal, rate: Decimal, currency: str, rule: RoundingRule | None = None
) -> Decimal:
    """``amount`` times ``rate`` in ``currency``, rounded by ``rule`` (or the minor unit)."""
    return (rule or default_rounding(currency)).apply(amount * rate, currency)
