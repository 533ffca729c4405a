from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import model_validator

from mercato.money import quantize
from mercato.schemas import ResponseModel

_ORDER_AMOUNTS = ("subtotal", "discount_total", "shipping_total", "tax_total", "grand_total")
_LINE_AMOUNTS = ("unit_price", "subtotal", "discount", "tax", "total")


class OrderLineOut(ResponseModel):
    id: int
    line_no: int
    variant_id: int
    sku: str
    name: str
    tax_class: str
    quantity: int
    unit_price: Decimal
    subtotal: Decimal
    discount: Decimal
    tax: Decimal
    tax_rate: Decimal
    total: Decimal
    delivery_mode: str
    pickup_location_id: int | None
    status: str
    cancelled_quantity: int
    fulfilled_quantity: int
    returned_quantity: int

    def in_currency(self, currency: str) -> OrderLineOut:
        for name in _LINE_AMOUNTS:
            setattr(self, name, quantize(getattr(self, name), currency))
        return self


class TransitionOut(ResponseModel):
    from_status: str | None
    to_status: str
    actor_type: str
    actor_id: str | None
    reason: str | None
    at: datetime


class OrderOut(ResponseModel):
    id: int
    number: str
    channel_id: int
    customer_id: int | None
    external_id: str | None
    source: str
    status: str
    currency: str
    price_list: str | None
    locale: str | None
    subtotal: Decimal
    discount_total: Decimal
    shipping_total: Decimal
    tax_total: Decimal
    grand_total: Decimal
    tax_included: bool
    email: str | None
    shipping_address: dict[str, Any] | None
    billing_address: dict[str, Any] | None
    shipping_option: dict[str, Any] | None
    tax_breakdown: list[dict[str, Any]]
    promotions: list[dict[str, Any]]
    placed_at: datetime | None
    created_at: datetime
    lines: list[OrderLineOut] = []
    timeline: list[TransitionOut] = []

    @model_validator(mode="after")
    def _minor_units(self) -> OrderOut:
        """Amounts in the currency's minor unit (the database keeps four decimals)."""
        for name in _ORDER_AMOUNTS:
            setattr(self, name, quantize(getattr(self, name), self.currency))
        return self


class OrderSummaryOut(ResponseModel):
    id: int
    number: str
    channel_id: int
    customer_id: int | None
    source: str
    status: str
    currency: str
    grand_total: Decimal
    placed_at: datetime | None
    created_at: datetime
