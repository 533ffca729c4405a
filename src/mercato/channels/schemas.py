from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field, field_validator, model_validator

from mercato.i18n import normalise_locale
from mercato.locations.schemas import validate_country
from mercato.money import validate_currency
from mercato.schemas import ResponseModel, StrictModel


class ChannelType(StrEnum):
    WEB = "web"
    APP = "app"
    POS = "pos"
    MARKETPLACE = "marketplace"
    CALL_CENTRE = "call_centre"


def _locales(values: list[str]) -> list[str]:
    return list(dict.fromkeys(normalise_locale(v) for v in values))


def _currencies(values: list[str]) -> list[str]:
    return list(dict.fromkeys(validate_currency(v) for v in values))


def _countries(values: list[str]) -> list[str]:
    return list(dict.fromkeys(validate_country(v) for v in values))


def _country_currencies(values: dict[str, str]) -> dict[str, str]:
    return {validate_country(k): validate_currency(v) for k, v in values.items()}


COUNTRY_CURRENCIES_DOC = (
    "Which currency a shopper from each country is quoted in (ISO 3166-1 alpha-2 -> one of "
    "the channel's currencies); other countries get the default currency"
)
class ImportDuties(StrEnum):
    """Who pays the import duty and tax of a cross-border parcel, and when."""

    DDP = "ddp"  # delivered duty paid: the shopper pays them at checkout, with the order
    DAP = "dap"  # delivered at place: the carrier collects them from the shopper on delivery


class ChannelLocationIn(StrictModel):
    location_id: int
    priority: int = Field(default=0, ge=0, le=10_000)


class ChannelIn(StrictModel):
    code: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$")
    name: str = Field(min_length=1, max_length=200)
    type: ChannelType
    default_locale: str
    locales: list[str] = Field(default_factory=list, max_length=50)
    currencies: list[str] = Field(min_length=1, max_length=50, description="default first")
    price_list: str | None = Field(default=None, max_length=40)
    country: str | None = None
    country_currencies: dict[str, str] = Field(
        default_factory=dict, max_length=300, description=COUNTRY_CURRENCIES_DOC
    )
    ship_to_countries: list[str] = Field(default_factory=list, max_length=300)
    locations: list[ChannelLocationIn] = Field(default_factory=list, max_length=1000)
    assortment_category_ids: list[int] | None = Field(default=None, max_length=1000)
    import_duties: ImportDuties = ImportDuties.DAP
    active: bool = True

    _default_locale = field_validator("default_locale")(normalise_locale)
    _locales = field_validator("locales")(_locales)
    _currencies = field_validator("currencies")(_currencies)
    _ship_to = field_validator("ship_to_countries")(_countries)
    _country_currencies = field_validator("country_currencies")(_country_currencies)

    @field_validator("country")
    @classmethod
    def _country(cls, value: str | None) -> str | None:
        return None if value is None else validate_country(value)

    @model_validator(mode="after")
    def _default_first(self) -> ChannelIn:
        self.locales = [self.default_locale, *(x for x in self.locales if x != self.default_locale)]
        return self

    @model_validator(mode="after")
    def _sold_currencies(self) -> ChannelIn:
        check_country_currencies(self.country_currencies, self.currencies)
        return self


def check_country_currencies(rules: dict[str, str], currencies: list[str]) -> None:
    for country, currency in rules.items():
        if currency not in currencies:
            raise ValueError(
                f"country_currencies.{country}: {currency} is not one of the channel's "
                f"currencies ({', '.join(currencies)})"
            )


class ChannelPatch(StrictModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    default_locale: str | None = None
    locales: list[str] | None = Field(default=None, max_length=50)
    currencies: list[str] | None = Field(default=None, min_length=1, max_length=50)
    price_list: str | None = Field(default=None, max_length=40)
    country: str | None = None
    country_currencies: dict[str, str] | None = Field(
        default=None, max_length=300, description=COUNTRY_CURRENCIES_DOC
    )
    ship_to_countries: list[str] | None = Field(default=None, max_length=300)
    locations: list[ChannelLocationIn] | None = Field(default=None, max_length=1000)
    assortment_category_ids: list[int] | None = Field(default=None, max_length=1000)
    import_duties: ImportDuties | None = None
    active: bool | None = None

    @field_validator("default_locale")
    @classmethod
    def _default_locale(cls, value: str | None) -> str | None:
        return None if value is None else normalise_locale(value)

    @field_validator("locales")
    @classmethod
    def _locales(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _locales(value)

    @field_validator("currencies")
    @classmethod
    def _currencies(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _currencies(value)

    @field_validator("ship_to_countries")
    @classmethod
    def _ship_to(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _countries(value)

    @field_validator("country_currencies")
    @classmethod
    def _country_currencies(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return None if value is None else _country_currencies(value)

    @field_validator("country")
    @classmethod
    def _country(cls, value: str | None) -> str | None:
        return None if value is None else validate_country(value)


class ChannelOut(ResponseModel):
    id: int
    code: str
    name: str
    type: ChannelType
    default_locale: str
    locales: list[str]
    currencies: list[str]
    price_list: str | None
    country: str | None
    country_currencies: dict[str, str]
    ship_to_countries: list[str]
    locations: list[ChannelLocationIn]
    assortment_category_ids: list[int] | None
    import_duties: ImportDuties
    active: bool
    created_at: datetime
    updated_at: datetime


class ApiKeyIn(StrictModel):
    name: str = Field(min_length=1, max_length=100)


class ApiKeyOut(ResponseModel):
    id: int
    name: str
    key_prefix: str
    created_at: datetime
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="Shown once; store it in the storefront or POS configuration")
