"""API models of the returns domain. Amounts are decimal strings in the currency's unit."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import Field, field_validator, model_validator

from mercato.inventory.service import MAX_QUANTITY
from mercato.locations.schemas import validate_country
from mercato.money import quantize
from mercato.payments.schemas import TenderIn
from mercato.returns.state import Condition, Reason, RefundMethod
from mercato.schemas import ResponseModel, StrictModel

# --- policies -----------------------------------------------------------------------------------


class PolicyRules(StrictModel):
    days_allowed: int = Field(
        ge=0, le=3650, description="Days after fulfilment (after the order when unknown)"
    )
    non_returnable_category_ids: list[int] = Field(
        default_factory=list,
        max_length=500,
        description="Products in these categories or below them cannot be returned",
    )
    accept_store_returns: bool = Field(
        default=True, description="Whether stores (not only warehouses) may receive returns"
    )
    restocking_fee_percent: Decimal = Field(
        default=Decimal(0),
        description="Kept from lines returned for the customer's own reasons (0 to 100)",
    )
    auto_approve: bool = Field(
        default=True, description="Approve requests that pass the checks without staff review"
    )

    @field_validator("restocking_fee_percent")
    @classmethod
    def _percent(cls, value: Decimal) -> Decimal:
        return _check_percent(value)


def _check_percent(value: Decimal) -> Decimal:
    if not value.is_finite() or not Decimal(0) <= value <= Decimal(100):
        raise ValueError("a percentage from 0 to 100")
    if value != value.quantize(Decimal("0.01")):
        raise ValueError("at most two decimals")
    return value


class PolicyIn(PolicyRules):
    channel_id: int | None = Field(default=None, description="Omitted: every channel")
    country: str | None = Field(
        default=None, min_length=2, max_length=2, description="Omitted: every country"
    )

    @field_validator("country")
    @classmethod
    def _country(cls, value: str | None) -> str | None:
        return None if value is None else validate_country(value)


class PolicyPatch(StrictModel):
    days_allowed: int | None = Field(default=None, ge=0, le=3650)
    non_returnable_category_ids: list[int] | None = Field(default=None, max_length=500)
    accept_store_returns: bool | None = None
    restocking_fee_percent: Decimal | None = None
    auto_approve: bool | None = None

    @field_validator("restocking_fee_percent")
    @classmethod
    def _percent(cls, value: Decimal | None) -> Decimal | None:
        return None if value is None else _check_percent(value)


class PolicyOut(ResponseModel):
    id: int | None
    scope: str
    channel_id: int | None
    country: str | None
    days_allowed: int
    non_returnable_category_ids: list[int]
    accept_store_returns: bool
    restocking_fee_percent: Decimal
    auto_approve: bool


# --- returns ------------------------------------------------------------------------------------


class ReturnLineIn(StrictModel):
    order_line_id: int
    quantity: int = Field(gt=0, le=MAX_QUANTITY)
    reason: Reason
    note: str | None = Field(default=None, max_length=1000)
    exchange_variant_id: int | None = Field(
        default=None, description="Replace the units with this variant of the same product"
    )


class _ReturnBody(StrictModel):
    lines: list[ReturnLineIn] = Field(min_length=1, max_length=200)
    note: str | None = Field(default=None, max_length=2000)
    refund_method: RefundMethod = RefundMethod.ORIGINAL_PAYMENT


class ReturnIn(_ReturnBody):
    """A return started by staff: name the order by id or by number."""

    order_id: int | None = None
    order_number: str | None = Field(default=None, min_length=1, max_length=20)

    @model_validator(mode="after")
    def _one_order(self) -> ReturnIn:
        if (self.order_id is None) == (self.order_number is None):
            raise ValueError("give order_id or order_number")
        return self


class StoreReturnIn(_ReturnBody):
    """A return started by the shopper for one of her own orders."""

    order_number: str = Field(min_length=1, max_length=20)


class DecisionIn(StrictModel):
    reason: str | None = Field(default=None, max_length=1000)


class ReasonIn(StrictModel):
    reason: str = Field(min_length=1, max_length=1000)


class InspectionIn(StrictModel):
    return_line_id: int
    condition: Condition
    note: str | None = Field(default=None, max_length=1000)


class ReceiveIn(StrictModel):
    location_id: int = Field(description="Where the units arrived (needs the returns capability)")
    lines: list[InspectionIn] = Field(
        min_length=1, max_length=200, description="What inspection found, one entry per line"
    )
    note: str | None = Field(default=None, max_length=2000)


class RefundIn(StrictModel):
    method: RefundMethod | None = Field(
        default=None, description="Omitted: the method the customer chose in the request"
    )
    payments: list[TenderIn] = Field(
        default_factory=list,
        max_length=5,
        description="Pays the difference when a replacement costs more than the returned units",
    )
    exchange: bool = Field(
        default=True, description="false: refund exchanged lines instead of replacing them"
    )


class ReturnLineOut(ResponseModel):
    id: int
    line_no: int
    order_line_id: int
    variant_id: int
    sku: str
    name: str
    quantity: int
    reason: str
    note: str | None
    exchange_variant_id: int | None
    condition: str | None
    paid: Decimal | None
    restocking_fee: Decimal | None
    amount: Decimal | None = Field(description="The credit: paid minus the restocking fee")
    refund: Decimal | None = Field(description="The money due back for this line")


class TransitionOut(ResponseModel):
    from_status: str | None
    to_status: str
    actor_type: str
    actor_id: str | None
    reason: str | None
    at: datetime


class SettlementOut(ResponseModel):
    id: int
    method: str
    status: str
    amount: Decimal
    refunded: Decimal
    charge: Decimal
    exchange_order_id: int | None
    refund_ids: list[int]
    failure_code: str | None
    failure_message: str | None
    created_at: datetime
    completed_at: datetime | None


class ReturnOut(ResponseModel):
    id: int
    number: str
    order_id: int
    order_number: str
    channel_id: int
    origin_channel_id: int | None
    customer_id: int | None
    currency: str
    status: str
    refund_method: str
    policy: dict[str, Any]
    location_id: int | None
    shipping_refund: Decimal
    refund_total: Decimal | None
    refunded_total: Decimal
    exchange_order_id: int | None
    exchange_order_number: str | None
    exchange_charge: Decimal
    settlement: str
    note: str | None
    created_at: datetime
    updated_at: datetime
    lines: list[ReturnLineOut] = []
    timeline: list[TransitionOut] = []
    settlements: list[SettlementOut] = []

    def in_currency(self) -> ReturnOut:
        """Every amount in the currency's minor unit (the database keeps four decimals)."""
        c = self.currency
        for name in ("shipping_refund", "refunded_total", "exchange_charge"):
            setattr(self, name, quantize(getattr(self, name), c))
        if self.refund_total is not None:
            self.refund_total = quantize(self.refund_total, c)
        for line in self.lines:
            for name in ("paid", "restocking_fee", "amount", "refund"):
                value = getattr(line, name)
                if value is not None:
                    setattr(line, name, quantize(value, c))
        for s in self.settlements:
            for name in ("amount", "refunded", "charge"):
                setattr(s, name, quantize(getattr(s, name), c))
        return self


class ReturnSummaryOut(ResponseModel):
    id: int
    number: str
    order_id: int
    order_number: str
    customer_id: int | None
    currency: str
    status: str
    location_id: int | None
    refund_total: Decimal | None
    refunded_total: Decimal
    created_at: datetime

    @model_validator(mode="after")
    def _minor_units(self) -> ReturnSummaryOut:
        self.refunded_total = quantize(self.refunded_total, self.currency)
        if self.refund_total is not None:
            self.refund_total = quantize(self.refund_total, self.currency)
        return self
