"""Request and response models of the shipping API.

Amounts are ``Decimal`` (JSON strings or numbers in, strings out); the service checks them
against the minor unit of the currency they are in.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pycountry
from pydantic import AfterValidator, Field

from mercato.money import validate_currency
from mercato.schemas import ResponseModel, StrictModel
from mercato.shipping.carriers import LabelFormat, ServiceLevel, ServiceScope, TrackingStatus

MAX_WEIGHT_G = 1_000_000
MAX_DAYS = 90


def validate_country(value: str) -> str:
    """The upper-cased ISO 3166-1 alpha-2 code, or ValueError."""
    code = value.strip().upper()
    if len(code) != 2 or pycountry.countries.get(alpha_2=code) is None:
        raise ValueError(f"{value!r} is not an ISO 3166-1 alpha-2 country code")
    return code


def validate_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"{value!r} is not an IANA time zone") from exc
    return value


CountryCode = Annotated[
    str,
    Field(min_length=2, max_length=2, description="ISO 3166-1 alpha-2"),
    AfterValidator(validate_country),
]
CurrencyCode = Annotated[
    str,
    Field(min_length=3, max_length=3, description="ISO 4217"),
    AfterValidator(validate_currency),
]
Code = Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[a-z0-9][a-z0-9_-]*$")]
Amount = Annotated[
    Decimal, Field(ge=0, max_digits=20, allow_inf_nan=False, description="in the currency")
]
Fraction = Annotated[
    Decimal,
    Field(ge=0, le=10, allow_inf_nan=False, description="a fraction: 19% is 0.19"),
]
Weight = Annotated[int, Field(gt=0, le=MAX_WEIGHT_G, description="grams")]
Name = Annotated[str, Field(min_length=1, max_length=200)]


# --- carriers and services ---------------------------------------------------------------


class CarrierIn(StrictModel):
    code: Code
    name: Name
    active: bool = True
    adapter: str = Field(
        default="table",
        min_length=1,
        max_length=40,
        description="Registered integration that serves this carrier",
    )
    tracking_prefix: str = Field(
        pattern=r"^[A-Za-z]{2}$", description="Two letters that start its tracking numbers"
    )
    timezone: Annotated[str, AfterValidator(validate_timezone)] = "UTC"
    webhook_secret: str | None = Field(default=None, min_length=16, max_length=200)
    ships_from: list[CountryCode] = Field(min_length=1, max_length=300)
    ships_to: list[CountryCode] = Field(min_length=1, max_length=300)


class CarrierPatch(StrictModel):
    name: Name | None = None
    active: bool | None = None
    adapter: str | None = Field(default=None, min_length=1, max_length=40)
    timezone: Annotated[str, AfterValidator(validate_timezone)] | None = None
    webhook_secret: str | None = Field(
        default=None, min_length=16, max_length=200, description="null removes the secret"
    )
    ships_from: list[CountryCode] | None = Field(default=None, min_length=1, max_length=300)
    ships_to: list[CountryCode] | None = Field(default=None, min_length=1, max_length=300)


class ServiceIn(StrictModel):
    code: Code
    name: Name
    level: ServiceLevel
    scope: ServiceScope = ServiceScope.ANY
    min_days: int = Field(ge=0, le=MAX_DAYS, description="business days")
    max_days: int = Field(ge=0, le=MAX_DAYS, description="business days")
    active: bool = True


class ServicePatch(StrictModel):
    name: Name | None = None
    level: ServiceLevel | None = None
    scope: ServiceScope | None = None
    min_days: int | None = Field(default=None, ge=0, le=MAX_DAYS)
    max_days: int | None = Field(default=None, ge=0, le=MAX_DAYS)
    active: bool | None = None


class ServiceOut(ResponseModel):
    id: int
    carrier_id: int
    code: str
    name: str
    level: str
    scope: str
    min_days: int
    max_days: int
    active: bool


class CarrierOut(ResponseModel):
    id: int
    code: str
    name: str
    active: bool
    adapter: str
    tracking_prefix: str
    timezone: str
    has_webhook_secret: bool
    ships_from: list[str]
    ships_to: list[str]
    services: list[ServiceOut]
    created_at: datetime
    updated_at: datetime


# --- zones ----------------------------------------------------------------------------------


class ZoneMemberIn(StrictModel):
    country: CountryCode
    region: str | None = Field(
        default=None,
        min_length=1,
        max_length=10,
        description='ISO 3166-2 subdivision: "CA" or "US-CA"',
    )
    postal_prefix: str | None = Field(default=None, min_length=1, max_length=12)


class ZoneIn(StrictModel):
    code: Code
    name: Name
    members: list[ZoneMemberIn] = Field(min_length=1, max_length=5000)


class ZonePatch(StrictModel):
    name: Name | None = None
    members: list[ZoneMemberIn] | None = Field(default=None, min_length=1, max_length=5000)


class ZoneMemberOut(ResponseModel):
    country: str
    region: str | None
    postal_prefix: str | None


class ZoneOut(ResponseModel):
    id: int
    code: str
    name: str
    members: list[ZoneMemberOut]
    created_at: datetime
    updated_at: datetime


# --- rate tables ---------------------------------------------------------------------------


class BracketIn(StrictModel):
    up_to_g: Weight
    price: Amount


class RateTableIn(StrictModel):
    service_id: int
    zone_id: int
    origin_country: CountryCode | None = Field(default=None, description="null: any origin")
    currency: CurrencyCode
    brackets: list[BracketIn] = Field(
        min_length=1, max_length=200, description="ascending by up_to_g"
    )
    per_extra_kg: Amount | None = Field(
        default=None, description="per started kg above the last bracket; null: not served"
    )
    free_over: Amount | None = Field(
        default=None, description="order value from which the base price is waived"
    )
    remote_surcharge: Amount | None = Field(default=None, description="per parcel")
    remote_postal_prefixes: list[Annotated[str, Field(min_length=1, max_length=12)]] = Field(
        default_factory=list, max_length=2000
    )


class BracketOut(ResponseModel):
    up_to_g: int
    price: Decimal


class RateTableOut(ResponseModel):
    id: int
    service_id: int
    carrier_code: str
    service_code: str
    zone_id: int
    zone_code: str
    origin_country: str | None
    currency: str
    brackets: list[BracketOut]
    per_extra_kg: Decimal | None
    free_over: Decimal | None
    remote_surcharge: Decimal | None
    remote_postal_prefixes: list[str]
    created_at: datetime
    updated_at: datetime


# --- quotes ---------------------------------------------------------------------------------


class DestinationIn(StrictModel):
    country: CountryCode
    region: str | None = Field(default=None, max_length=10)
    postal_code: str | None = Field(default=None, max_length=20)


class QuoteIn(StrictModel):
    origin_country: CountryCode
    destination: DestinationIn
    parcels: list[Weight] | None = Field(
        default=None, min_length=1, max_length=50, description="weight of each parcel in grams"
    )
    total_weight_g: Weight | None = Field(default=None, description="one parcel")
    order_value: Amount
    currency: CurrencyCode
    at: datetime | None = Field(default=None, description="when it ships; default now")


class OptionOut(ResponseModel):
    option_id: str
    carrier_code: str
    carrier_name: str
    service_code: str
    service_name: str
    level: str
    amount: Decimal
    currency: str
    free_shipping: bool
    remote_surcharge: Decimal
    min_days: int
    max_days: int
    earliest_delivery: date
    latest_delivery: date


class QuoteOut(ResponseModel):
    options: list[OptionOut]


# --- labels and tracking --------------------------------------------------------------------


class AddressIn(StrictModel):
    name: Name
    company: str | None = Field(default=None, max_length=200)
    line1: Name
    line2: str | None = Field(default=None, max_length=200)
    city: Annotated[str, Field(min_length=1, max_length=100)]
    region: str | None = Field(default=None, max_length=100)
    postal_code: str | None = Field(default=None, max_length=20)
    country: CountryCode
    phone: str | None = Field(default=None, max_length=40)


class CustomsItemIn(StrictModel):
    description: Name
    hs_code: str = Field(min_length=6, max_length=14, description="at least 6 digits")
    origin_country: CountryCode
    quantity: int = Field(gt=0, le=100_000)
    value: Amount
    currency: CurrencyCode


class LabelIn(StrictModel):
    carrier_code: Code
    service_code: Code
    ship_from: AddressIn
    ship_to: AddressIn
    weight_g: Weight
    reference: str | None = Field(
        default=None, max_length=64, description="the caller's shipment or parcel id"
    )
    format: LabelFormat = LabelFormat.ZPL
    customs_items: list[CustomsItemIn] = Field(
        default_factory=list, max_length=100, description="required across a customs border"
    )


class LabelOut(ResponseModel):
    id: int
    tracking_number: str
    carrier_code: str
    service_code: str
    reference: str | None
    origin_country: str
    destination_country: str
    weight_g: int
    format: str
    content: str | None = Field(
        description="The printable label (names the recipient): null without customers:pii"
    )
    url: str | None = Field(description="Where the carrier serves it: null without customers:pii")
    customs: list[dict[str, Any]]
    status: str
    status_at: datetime | None
    created_at: datetime
    voided_at: datetime | None


class TrackingEventIn(StrictModel):
    status: TrackingStatus
    occurred_at: datetime
    location: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    event_id: str | None = Field(
        default=None, min_length=1, max_length=100, description="recorded once per carrier"
    )


class TrackingEventOut(ResponseModel):
    id: int
    tracking_number: str
    status: str
    occurred_at: datetime
    location: str | None
    description: str | None
    source: str
    external_id: str | None
    created_at: datetime


class TrackingOut(ResponseModel):
    tracking_number: str
    carrier_code: str
    service_code: str
    status: str
    status_at: datetime | None
    events: list[TrackingEventOut]


class WebhookResultOut(ResponseModel):
    received: int
    recorded: int
    duplicates: int
    ignored: list[str] = Field(description="tracking numbers not ours or voided")


# --- customs ---------------------------------------------------------------------------------


class DutyRateIn(StrictModel):
    hs_prefix: str = Field(pattern=r"^\d{2,10}$", description="chapter, heading or subheading")
    rate: Fraction
    description: str | None = Field(default=None, max_length=200)


class CustomsIn(StrictModel):
    currency: CurrencyCode
    duty_de_minimis: Amount | None = Field(
        default=None, description="no duty at or under this goods value; null: none"
    )
    tax_de_minimis: Amount | None = Field(
        default=None, description="no import tax at or under this goods value; null: none"
    )
    default_duty_rate: Fraction
    import_tax_rate: Fraction
    tax_name: str = Field(default="VAT", min_length=1, max_length=40)
    valuation: Literal["cif", "fob"] = "cif"
    preferential_origins: list[CountryCode] = Field(default_factory=list, max_length=300)
    duty_rates: list[DutyRateIn] = Field(default_factory=list, max_length=5000)
    note: str | None = Field(default=None, max_length=2000)


class DutyRateOut(ResponseModel):
    hs_prefix: str
    rate: Decimal
    description: str | None


class CustomsOut(ResponseModel):
    country: str
    currency: str
    duty_de_minimis: Decimal | None
    tax_de_minimis: Decimal | None
    default_duty_rate: Decimal
    import_tax_rate: Decimal
    tax_name: str
    valuation: str
    preferential_origins: list[str]
    duty_rates: list[DutyRateOut]
    note: str | None
    updated_at: datetime


class ExchangeRateIn(StrictModel):
    rate: Decimal = Field(
        gt=0,
        max_digits=30,
        allow_inf_nan=False,
        description="units of the target currency per unit of the source",
    )


class ExchangeRateOut(ResponseModel):
    from_currency: str
    to_currency: str
    rate: Decimal
    updated_at: datetime


class DutyItemIn(StrictModel):
    hs_code: str | None = Field(default=None, max_length=14)
    origin_country: CountryCode
    value: Amount
    currency: CurrencyCode


class DutyEstimateIn(StrictModel):
    destination_country: CountryCode
    origin_country: CountryCode
    items: list[DutyItemIn] = Field(min_length=1, max_length=500)
    shipping_amount: Amount = Decimal(0)


class DutyLineOut(ResponseModel):
    hs_code: str | None
    origin_country: str
    value: Decimal
    shipping_share: Decimal
    customs_value: Decimal
    duty_rate: Decimal
    duty: Decimal
    import_tax: Decimal
    preferential: bool


class DutyEstimateOut(ResponseModel):
    destination_country: str
    origin_country: str
    currency: str
    goods_value: Decimal
    duty: Decimal
    import_tax: Decimal
    total: Decimal
    crosses_border: bool
    de_minimis_applied: bool
    tax_de_minimis_applied: bool
    tax_name: str | None
    notes: list[str]
    lines: list[DutyLineOut]
