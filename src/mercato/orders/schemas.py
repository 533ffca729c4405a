from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import Field, field_validator, model_validator

from mercato.customers.schemas import IdentityIn
from mercato.money import quantize
from mercato.schemas import ResponseModel, StrictModel

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


class ActivityOut(ResponseModel):
    """One entry of the order's timeline: a status change, a hold put or released, a note."""

    at: datetime
    kind: str  # status | hold | hold_released | note
    actor_type: str
    actor_id: str | None
    from_status: str | None = None
    to_status: str | None = None
    # The reason or note; None for readers without customers:pii when typed by staff.
    text: str | None = None


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
    # Import duty and tax of a cross-border order: prepaid (in the grand total) or due on
    # delivery, as estimated at checkout.
    import_charges: dict[str, Any] | None = None
    # Each time the order came to ship from another country or with another carrier than
    # quoted, oldest first: what the shopper was told (and emailed).
    shipping_changes: list[dict[str, Any]] = []
    tax_breakdown: list[dict[str, Any]]
    promotions: list[dict[str, Any]]
    placed_at: datetime | None
    created_at: datetime
    # Fulfilment is stopped until staff release it (the reason is on the timeline).
    on_hold: bool = False
    lines: list[OrderLineOut] = []
    timeline: list[TransitionOut] = []
    # The status changes with the holds and notes, oldest first.
    activity: list[ActivityOut] = []

    @field_validator("shipping_changes", mode="before")
    @classmethod
    def _no_changes(cls, value: Any) -> Any:
        return [] if value is None else value

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


class NoteIn(StrictModel):
    body: str = Field(min_length=1, max_length=5000)


class NoteOut(ResponseModel):
    id: int
    # None for readers without customers:pii: notes quote what customers said.
    body: str | None
    author_type: str
    author_id: str | None
    author_label: str | None
    created_at: datetime


class ReasonIn(StrictModel):
    reason: str = Field(min_length=1, max_length=500)


class TransitionIn(StrictModel):
    to: str = Field(description="confirmed, fraud_review, delivered or closed")
    reason: str | None = Field(default=None, max_length=500)


class CancelLineIn(StrictModel):
    order_line_id: int
    quantity: int = Field(ge=1, le=1_000_000)


class CancelLinesIn(StrictModel):
    lines: list[CancelLineIn] = Field(min_length=1, max_length=500)
    reason: str = Field(min_length=1, max_length=500)


class CancellationOut(ResponseModel):
    order: OrderOut
    refund_due: Decimal
    refunded: Decimal


class ImportLineIn(StrictModel):
    sku: str = Field(min_length=1, max_length=80)
    quantity: int = Field(ge=1, le=100_000)
    unit_price: Decimal = Field(ge=0, allow_inf_nan=False)
    discount: Decimal = Field(default=Decimal(0), ge=0, allow_inf_nan=False)
    tax: Decimal = Field(default=Decimal(0), ge=0, allow_inf_nan=False)


class ImportOrderIn(StrictModel):
    """An order sold elsewhere (marketplace, ERP), at its own prices, already paid there."""

    channel_id: int
    external_id: str = Field(min_length=1, max_length=64)
    currency: str = Field(min_length=3, max_length=3)
    lines: list[ImportLineIn] = Field(min_length=1, max_length=500)
    shipping_total: Decimal = Field(default=Decimal(0), ge=0, allow_inf_nan=False)
    tax_included: bool = True
    email: str | None = Field(default=None, max_length=254)
    customer_id: int | None = None
    # Without customer_id: the buyer as the marketplace knows them (buyer id, email, phone),
    # resolved to one profile across channels (see customers identity resolution).
    identities: list[IdentityIn] = Field(default_factory=list, max_length=10)
    customer_name: str | None = Field(default=None, max_length=200)
    shipping_address: dict[str, Any] | None = None
    paid: bool = True
    locale: str | None = Field(default=None, max_length=20)


class RoutingDecisionOut(ResponseModel):
    id: int
    trigger: str
    excluded_location_ids: list[int]
    plan: list[dict[str, Any]]
    unfilled: list[dict[str, Any]]
    cost: Decimal
    shipments: int
    explanation: str
    created_at: datetime
