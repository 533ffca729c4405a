from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from mercato.auth.schemas import EMAIL_PATTERN
from mercato.customers.schemas import normalise_phone
from mercato.locations.schemas import validate_country
from mercato.money import validate_currency
from mercato.schemas import ResponseModel, StrictModel

MAX_LINE_QUANTITY = 999


class DeliveryMode(StrEnum):
    SHIP = "ship"
    PICKUP = "pickup"


class CartIn(StrictModel):
    currency: str | None = Field(
        default=None,
        description="Default: the currency the channel quotes the shopper's country in, "
        "else the channel's first currency",
    )
    country: str | None = Field(
        default=None,
        description="The shopper's country (ISO 3166-1 alpha-2): picks the currency by the "
        "channel's country_currencies and taxes the cart until it has an address",
    )

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str | None) -> str | None:
        return None if value is None else validate_currency(value)

    @field_validator("country")
    @classmethod
    def _country(cls, value: str | None) -> str | None:
        return None if value is None else validate_country(value)


class LineIn(StrictModel):
    variant_id: int
    quantity: int = Field(ge=1, le=MAX_LINE_QUANTITY)
    delivery_mode: DeliveryMode = DeliveryMode.SHIP
    pickup_location_id: int | None = None

    @model_validator(mode="after")
    def _pickup(self) -> LineIn:
        if (self.delivery_mode is DeliveryMode.PICKUP) != (self.pickup_location_id is not None):
            raise ValueError("pickup_location_id is required for pickup, and only for pickup")
        return self


class LinePatch(StrictModel):
    quantity: int | None = Field(
        default=None, ge=0, le=MAX_LINE_QUANTITY, description="0 removes the line"
    )
    delivery_mode: DeliveryMode | None = None
    pickup_location_id: int | None = None


class AddressIn(StrictModel):
    name: str = Field(min_length=1, max_length=200)
    line1: str = Field(min_length=1, max_length=200)
    line2: str | None = Field(default=None, max_length=200)
    city: str = Field(min_length=1, max_length=100)
    region: str | None = Field(default=None, max_length=100)
    postal_code: str | None = Field(default=None, max_length=20)
    country: str = Field(min_length=2, max_length=2)
    phone: str | None = Field(default=None, max_length=32)
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)

    _country = field_validator("country")(validate_country)

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        return None if value is None else normalise_phone(value)


class CartPatch(StrictModel):
    email: str | None = Field(default=None, pattern=EMAIL_PATTERN, max_length=254)
    shipping_address: AddressIn | None = None
    billing_address: AddressIn | None = None
    shipping_option_id: str | None = Field(default=None, max_length=200)
    currency: str | None = None

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str | None) -> str | None:
        return None if value is None else validate_currency(value)


class CodeIn(StrictModel):
    code: str = Field(min_length=1, max_length=64)


class CartHoldIn(StrictModel):
    ttl_seconds: int = Field(
        default=900, ge=60, le=3600, description="How long the units stay held (1 to 60 min)"
    )


class HeldUnitsOut(ResponseModel):
    variant_id: int
    location_id: int
    quantity: int


class CartHoldOut(ResponseModel):
    token: str
    held_until: datetime | None
    holds: list[HeldUnitsOut]


class MoneyOut(ResponseModel):
    amount: Decimal
    formatted: str


class LineDiscountOut(ResponseModel):
    promotion_id: int
    amount: Decimal


class CartLineOut(ResponseModel):
    id: int
    variant_id: int
    sku: str
    name: str
    options: dict[str, str]
    quantity: int
    delivery_mode: DeliveryMode
    pickup_location_id: int | None
    unit_price: MoneyOut | None
    subtotal: MoneyOut
    discount: MoneyOut
    tax: MoneyOut
    tax_rate: Decimal
    total: MoneyOut
    discounts: list[LineDiscountOut]
    available: int
    issues: list[str] = Field(description="Why this channel cannot sell the line now, if it cannot")


class ShippingOptionOut(ResponseModel):
    option_id: str
    carrier: str
    service: str
    name: str
    amount: MoneyOut
    min_days: int | None = None
    max_days: int | None = None
    origin_country: str | None = Field(
        default=None, description="Where the parcel leaves from (where routing would source it)"
    )


class ImportChargesOut(ResponseModel):
    """Import duty and tax of a parcel crossing a customs border (an estimate)."""

    origin_country: str
    destination_country: str
    duty: MoneyOut
    import_tax: MoneyOut
    total: MoneyOut
    payment: Literal["with_order", "on_delivery"] = Field(
        description="with_order: in the grand total (duties paid); on_delivery: the carrier "
        "collects them from the shopper"
    )
    estimated: bool
    de_minimis_applied: bool
    note: str | None = None


class AppliedPromotionOut(ResponseModel):
    promotion_id: int
    name: str
    code: str | None
    kind: str
    amount: MoneyOut


class CodeStatusOut(ResponseModel):
    code: str
    applied: bool
    reason: str | None = None


class TaxStatus(StrEnum):
    CALCULATED = "calculated"
    PENDING = "pending"


class TaxLineOut(ResponseModel):
    name: str
    jurisdiction: str
    rate: Decimal
    taxable: Decimal
    tax: MoneyOut


class CartOut(ResponseModel):
    token: str
    status: str
    channel: str
    locale: str
    currency: str
    price_list: str
    customer_id: int | None
    email: str | None
    shipping_address: dict[str, Any] | None
    billing_address: dict[str, Any] | None
    lines: list[CartLineOut]
    codes: list[CodeStatusOut]
    promotions: list[AppliedPromotionOut]
    shipping_options: list[ShippingOptionOut]
    shipping_option_id: str | None
    subtotal: MoneyOut
    discount_total: MoneyOut
    shipping_total: MoneyOut
    tax_total: MoneyOut
    grand_total: MoneyOut
    tax_included: bool
    taxes: list[TaxLineOut]
    import_charges: ImportChargesOut | None = None
    issues: list[str]
    can_checkout: bool
    order_number: str | None = None
    held_until: datetime | None = None
    updated_at: datetime
    tax_status: TaxStatus = Field(
        default=TaxStatus.CALCULATED,
        description="pending: the address does not say enough to know the tax (a US cart "
        "without its state); tax_total is 0 until it does, and checkout needs it",
    )
    tax_note: str | None = Field(default=None, description="Why the tax is pending")


class CartCreated(CartOut):
    pass


class PickupStoreOut(ResponseModel):
    location_id: int
    code: str
    name: str
    distance_km: float | None
    available: int


class LineDeliveryOut(ResponseModel):
    line_id: int
    variant_id: int
    ship: bool
    ship_from_store: bool
    pickup_stores: list[PickupStoreOut]


class DeliveryOptionsOut(ResponseModel):
    shipping_options: list[ShippingOptionOut]
    lines: list[LineDeliveryOut]
