"""Input checks shared by the shipping use cases: each answers a 422 naming the field."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from mercato.errors import ValidationProblem
from mercato.money import check_precision, from_minor, to_minor, validate_currency
from mercato.shipping import customs
from mercato.shipping.carriers import normalise_postal, registered_adapters
from mercato.shipping.schemas import validate_country

MAX_RATE = Decimal(10)
PPM = Decimal(1_000_000)


def _country(value: str | None, field: str) -> str:
    try:
        return validate_country(value or "")
    except ValueError as exc:
        raise ValidationProblem.field(field, "not an ISO 3166-1 alpha-2 country code") from exc


def _currency(value: str | None, field: str) -> str:
    try:
        return validate_currency(value or "")
    except ValueError as exc:
        raise ValidationProblem.field(field, "not an ISO 4217 currency code") from exc


def _money(value: Decimal, currency: str, field: str) -> Decimal:
    """A non-negative amount with no more decimals than ``currency`` has."""
    if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
        raise ValidationProblem.field(field, "a finite amount of at least 0")
    try:
        return check_precision(value, currency)
    except ValueError as exc:
        raise ValidationProblem.field(field, str(exc)) from exc


def _optional_minor(value: Decimal | None, currency: str, field: str) -> int | None:
    return None if value is None else to_minor(_money(value, currency, field), currency)


def _decimal(units: int | None, currency: str) -> Decimal | None:
    return None if units is None else from_minor(units, currency)


def _ppm(rate: Decimal, field: str) -> int:
    """A rate (0.19 for 19%) in parts per million; at most 6 decimals."""
    if not rate.is_finite() or not 0 <= rate <= MAX_RATE:
        raise ValidationProblem.field(field, f"a fraction from 0 to {MAX_RATE} (19% is 0.19)")
    scaled = rate * PPM
    if scaled != scaled.to_integral_value():
        raise ValidationProblem.field(field, "at most 6 decimals")
    return int(scaled)


def _rate(ppm: int) -> Decimal:
    return Decimal(ppm) / PPM


def _hs_digits(code: str, field: str, minimum: int) -> str:
    digits = customs.normalise_hs(code)
    if not digits.isdigit() or not minimum <= len(digits) <= 10:
        raise ValidationProblem.field(field, f"an HS code of {minimum} to 10 digits")
    return digits


def _postal_prefix(value: str, field: str) -> str:
    prefix = normalise_postal(value)
    if not prefix.isalnum() or len(prefix) > 10:
        raise ValidationProblem.field(field, "1 to 10 letters or digits (spaces and - ignored)")
    return prefix


def _aware(value: datetime, field: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationProblem.field(field, "a timestamp with a UTC offset")
    return value


def _check_adapter(name: str, field: str) -> str:
    if name not in registered_adapters():
        known = ", ".join(registered_adapters())
        raise ValidationProblem.field(field, f"no carrier integration named {name!r} ({known})")
    return name
