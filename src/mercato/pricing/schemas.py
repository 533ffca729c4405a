from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from pydantic import Field, field_validator, model_validator

from mercato.locations.schemas import validate_country
from mercato.money import ROUNDING_MODES, validate_currency
from mercato.schemas import ResponseModel, StrictModel

MAX_AMOUNT = Decimal("1e12")


def _currency(value: str) -> str:
    return validate_currency(value)


def _optional_country(value: str | None) -> str | None:
    return None if value is None else validate_country(value)


class PriceListIn(StrictModel):
    code: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$")
    name: str = Field(min_length=1, max_length=200)
    base_currency: str
    tax_inclusive: bool = True

    _base = field_validator("base_currency")(_currency)


class PriceListPatch(StrictModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    base_currency: str | None = None
    tax_inclusive: bool | None = None
    active: bool | None = None

    @field_validator("base_currency")
    @classmethod
    def _base(cls, value: str | None) -> str | None:
        return None if value is None else validate_currency(value)


class PriceListOut(ResponseModel):
    id: int
    code: str
    name: str
    base_currency: str
    tax_inclusive: bool
    active: bool


class PriceIn(StrictModel):
    variant_id: int | None = None
    sku: str | None = Field(default=None, max_length=80)
    currency: str
    amount: Decimal = Field(ge=0, le=MAX_AMOUNT, allow_inf_nan=False)
    country: str | None = None
    customer_group: str | None = Field(default=None, min_length=1, max_length=40)
    starts_at: datetime | None = None
    ends_at: datetime | None = None

    _currency = field_validator("currency")(_currency)
    _country = field_validator("country")(_optional_country)

    @model_validator(mode="after")
    def _one_reference(self) -> PriceIn:
        if (self.variant_id is None) == (self.sku is None):
            raise ValueError("give either variant_id or sku")
        return self


class PricesIn(StrictModel):
    prices: list[PriceIn] = Field(min_length=1, max_length=10_000)


class PriceOut(ResponseModel):
    id: int
    variant_id: int
    currency: str
    amount: Decimal
    country: str | None
    customer_group: str | None
    starts_at: datetime | None
    ends_at: datetime | None


class RateIn(StrictModel):
    base_currency: str
    quote_currency: str
    rate: Decimal = Field(gt=0, le=Decimal("1e9"), allow_inf_nan=False)
    effective_at: datetime
    source: str | None = Field(default=None, max_length=100)

    _base = field_validator("base_currency")(_currency)
    _quote = field_validator("quote_currency")(_currency)


class RatesIn(StrictModel):
    rates: list[RateIn] = Field(min_length=1, max_length=10_000)


class RateOut(ResponseModel):
    base_currency: str
    quote_currency: str
    rate: Decimal
    effective_at: datetime
    source: str | None


class RoundingIn(StrictModel):
    increment: Decimal = Field(gt=0, le=Decimal("1e6"), allow_inf_nan=False)
    mode: str = "half_up"
    ending: Decimal | None = Field(default=None, ge=0, lt=1)

    @field_validator("mode")
    @classmethod
    def _mode(cls, value: str) -> str:
        if value not in ROUNDING_MODES:
            raise ValueError(f"one of {', '.join(sorted(ROUNDING_MODES))}")
        return value


class RoundingOut(ResponseModel):
    currency: str
    increment: Decimal
    mode: str
    ending: Decimal | None


class ResolvedPriceOut(ResponseModel):
    variant_id: int
    currency: str
    amount: Decimal
    formatted: str
    tax_inclusive: bool
    price_list: str
    source: str
    compare_at: Decimal | None = None
