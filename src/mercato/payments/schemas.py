"""API models of the payments domain. Amounts are decimal strings in the currency's unit."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field

from mercato.payments.service import TenderRequest
from mercato.schemas import ResponseModel, StrictModel

Amount = Annotated[
    Decimal,
    Field(
        description='A decimal string such as "12.50" (a JSON number is accepted), with no '
        "more decimals than the currency has (none for JPY and VND)",
        examples=["12.50"],
    ),
]
Reason = Annotated[str | None, Field(default=None, max_length=200)]


class TenderIn(StrictModel):
    """One way of paying, as a checkout request names it."""

    method: str = Field(
        max_length=30,
        description="test_gateway, cash_on_delivery, pos_cash, pos_card, gift_card, store_credit",
    )
    amount: Amount
    token: str | None = Field(
        default=None, max_length=64, description="test_gateway: a tok_... card token"
    )
    gift_card_code: str | None = Field(default=None, max_length=40)
    approval_code: str | None = Field(
        default=None, max_length=20, description="pos_card: the terminal's approval code"
    )
    location_id: int | None = Field(default=None, description="POS tenders: the store")

    def to_request(self) -> TenderRequest:
        return TenderRequest(
            method=self.method,
            amount=self.amount,
            token=self.token,
            gift_card_code=self.gift_card_code,
            approval_code=self.approval_code,
            location_id=self.location_id,
        )


class CaptureIn(StrictModel):
    amount: Amount | None = Field(default=None, description="Omitted: all that is left")


class RefundIn(StrictModel):
    amount: Amount
    reason: Reason = None


class ReferenceRefundIn(StrictModel):
    reference: str = Field(min_length=1, max_length=64)
    amount: Amount
    reason: Reason = None


class ReconcileIn(StrictModel):
    older_than_seconds: int = Field(default=300, ge=0, le=30 * 24 * 3600)


class ReconcileOut(ResponseModel):
    completed: int


class TransactionOut(ResponseModel):
    id: int
    kind: str
    status: str
    currency: str
    amount: Decimal
    refund_id: int | None
    provider_reference: str | None
    failure_code: str | None
    failure_message: str | None
    created_at: datetime
    completed_at: datetime | None


class RefundOut(ResponseModel):
    id: int
    payment_id: int
    reference: str
    method: str
    currency: str
    amount: Decimal
    status: str
    reason: str | None
    provider_reference: str | None
    failure_code: str | None
    failure_message: str | None
    created_at: datetime
    completed_at: datetime | None


class PaymentOut(ResponseModel):
    id: int
    reference: str
    order_id: int | None
    position: int
    method: str
    status: str
    currency: str
    amount: Decimal
    authorized: Decimal
    captured: Decimal
    refunded: Decimal
    charged_back: Decimal
    capturable: Decimal
    refundable: Decimal
    customer_id: int | None
    channel_id: int | None
    location_id: int | None
    provider_reference: str | None
    card_brand: str | None
    card_last4: str | None
    approval_code: str | None
    gift_card_id: int | None
    action_url: str | None
    failure_code: str | None
    failure_message: str | None
    created_at: datetime
    updated_at: datetime
    transactions: list[TransactionOut] = []
    refunds: list[RefundOut] = []


class PaymentPage(ResponseModel):
    items: list[PaymentOut]
    next_cursor: str | None = None


# --- gift cards and store credit --------------------------------------------------------------


class GiftCardIn(StrictModel):
    currency: str = Field(min_length=3, max_length=3)
    amount: Amount
    expires_at: AwareDatetime | None = Field(
        default=None, description="With a time zone, e.g. 2026-12-31T23:59:59Z"
    )
    customer_id: int | None = Field(default=None, description="The customer it was sold to")
    note: str | None = Field(default=None, max_length=2000)


class GiftCardTransactionOut(ResponseModel):
    id: int
    kind: str
    currency: str
    amount: Decimal
    balance_after: Decimal
    payment_id: int | None
    reference: str | None
    note: str | None
    created_at: datetime


class GiftCardOut(ResponseModel):
    id: int
    masked_code: str
    last4: str
    currency: str
    initial: Decimal
    balance: Decimal
    status: str
    expires_at: datetime | None
    customer_id: int | None
    note: str | None
    created_at: datetime
    updated_at: datetime
    transactions: list[GiftCardTransactionOut] = []


class IssuedGiftCardOut(GiftCardOut):
    code: str = Field(description="The full code, shown only in this answer")


class GiftCardPage(ResponseModel):
    items: list[GiftCardOut]
    next_cursor: str | None = None


class GiftCardBalanceIn(StrictModel):
    code: str = Field(min_length=1, max_length=40)


class GiftCardBalanceOut(ResponseModel):
    usable: bool
    currency: str
    balance: Decimal
    last4: str
    expires_at: datetime | None


class StoreCreditAccountOut(ResponseModel):
    currency: str
    balance: Decimal
    updated_at: datetime


class StoreCreditOut(ResponseModel):
    customer_id: int
    accounts: list[StoreCreditAccountOut]


class StoreCreditAdjustmentIn(StrictModel):
    currency: str = Field(min_length=3, max_length=3)
    amount: Amount = Field(description="Positive adds credit, negative takes it away")
    reason: str = Field(min_length=1, max_length=200)


class StoreCreditTransactionOut(ResponseModel):
    id: int
    kind: str
    currency: str
    amount: Decimal
    balance_after: Decimal
    payment_id: int | None
    reference: str | None
    reason: str | None
    created_at: datetime


class StoreCreditTransactionPage(ResponseModel):
    items: list[StoreCreditTransactionOut]
    next_cursor: str | None = None


# --- shopper-facing -----------------------------------------------------------------------------


class CardTokenIn(StrictModel):
    number: str = Field(min_length=12, max_length=23, description="A test card number")
    exp_month: int = Field(ge=1, le=12)
    exp_year: int = Field(ge=2000, le=2100)
    cvc: str = Field(min_length=3, max_length=4)


class CardTokenOut(ResponseModel):
    token: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int


class CompleteActionIn(StrictModel):
    client_secret: str = Field(min_length=1, max_length=64)
    outcome: Literal["authenticated", "failed"] = Field(
        default="authenticated",
        description="test_gateway only: the result of the simulated 3-D Secure challenge",
    )


class StorePaymentOut(ResponseModel):
    id: int
    status: str
    method: str
    currency: str
    amount: Decimal
    card_brand: str | None
    card_last4: str | None
    action_url: str | None
    failure_code: str | None


class WebhookAck(ResponseModel):
    status: Literal["applied", "duplicate", "ignored"]
