"""API models of the payments domain. Amounts are decimal strings in the currency's unit."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)
from pydantic_core import InitErrorDetails

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


# --- tenders: the ways a checkout pays, one model per method ----------------------------------

TenderAmount = Annotated[
    Decimal,
    Field(
        gt=0,
        le=Decimal("1e12"),
        allow_inf_nan=False,
        description='A decimal string in the checkout\'s currency, such as "12.50" (a JSON '
        "number is accepted), with no more decimals than the currency has",
        examples=["12.50"],
    ),
]
# A field another method uses: null or left out (tenders were once one model with every
# field optional, and what clients sent then stays valid).
Unused = Annotated[None, Field(description="Not used by this method: null or left out")]


class _Tender(StrictModel):
    method: str
    amount: TenderAmount
    location_id: int | None = Field(default=None, description="The store, for POS tenders")

    def to_request(self) -> TenderRequest:
        return TenderRequest(
            method=self.method,
            amount=self.amount,
            token=getattr(self, "token", None),
            gift_card_code=getattr(self, "gift_card_code", None),
            approval_code=getattr(self, "approval_code", None),
            location_id=self.location_id,
        )


class TestGatewayTender(_Tender):
    """A card, tokenised with ``POST /v1/store/payments/test-gateway/tokens`` (the built-in
    simulated gateway)."""

    method: Literal["test_gateway"]
    token: str = Field(min_length=1, max_length=64, description="The tok_... card token")
    gift_card_code: Unused = None
    approval_code: Unused = None


class _NoInstrument(_Tender):
    """A tender that needs nothing but its amount."""

    token: Unused = None
    gift_card_code: Unused = None
    approval_code: Unused = None


class CashOnDeliveryTender(_NoInstrument):
    """Paid to the courier (web, app, marketplace and call centre channels)."""

    method: Literal["cash_on_delivery"]


class PosCashTender(_NoInstrument):
    """Cash at a store till (store channels)."""

    method: Literal["pos_cash"]


class PosCardTender(_Tender):
    """A card on a store terminal (store channels)."""

    method: Literal["pos_card"]
    approval_code: str = Field(
        pattern=r"^[A-Za-z0-9]{4,12}$", description="The terminal's approval code"
    )
    token: Unused = None
    gift_card_code: Unused = None


class GiftCardTender(_Tender):
    """A gift card's balance, spent at once (in the gift card's currency only)."""

    method: Literal["gift_card"]
    gift_card_code: str = Field(min_length=1, max_length=64, description="The card's code")
    token: Unused = None
    approval_code: Unused = None


class StoreCreditTender(_NoInstrument):
    """The signed-in customer's store credit in the checkout's currency."""

    method: Literal["store_credit"]


class LoyaltyPointsTender(_NoInstrument):
    """The signed-in customer's loyalty points. ``amount`` is money in the checkout's
    currency; it spends ``amount`` divided by the programme's value of a point there (1
    point = 1 JPY = 0.01 EUR), which must be a whole number of points. Declined with
    ``insufficient_points`` when the balance is short."""

    method: Literal["loyalty_points"]


# Methods of the providers above; "paid_elsewhere" records money taken outside Mercato
# (imported orders) and is no way to pay.
BUILT_IN_METHODS = (
    "test_gateway",
    "cash_on_delivery",
    "pos_cash",
    "pos_card",
    "gift_card",
    "store_credit",
    "loyalty_points",
)
RESERVED_METHODS = (*BUILT_IN_METHODS, "paid_elsewhere")


class ExtensionTender(_NoInstrument):
    """A payment method added by an extension (``register_provider``, e.g. a real card
    gateway); a method no provider serves is refused with a 422 naming ``method``."""

    method: str = Field(
        min_length=1, max_length=30, json_schema_extra={"not": {"enum": list(RESERVED_METHODS)}}
    )


_EXTENSION = "extension"
_BY_METHOD: dict[str, type[_Tender]] = {
    "test_gateway": TestGatewayTender,
    "cash_on_delivery": CashOnDeliveryTender,
    "pos_cash": PosCashTender,
    "pos_card": PosCardTender,
    "gift_card": GiftCardTender,
    "store_credit": StoreCreditTender,
    "loyalty_points": LoyaltyPointsTender,
}


def _tender_kind(value: Any) -> str:
    method = value.get("method") if isinstance(value, dict) else getattr(value, "method", None)
    return method if isinstance(method, str) and method in _BY_METHOD else _EXTENSION


def _errors_at_the_tender(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """Name fields as the client wrote them (``payments[0].token``), without the union
    member's tag that validation puts in between."""
    try:
        return handler(value)
    except ValidationError as exc:
        tags = {*_BY_METHOD, _EXTENSION}
        details: list[InitErrorDetails] = []
        for error in exc.errors():
            loc = error["loc"]
            detail = InitErrorDetails(
                type=error["type"],
                loc=loc[1:] if loc and loc[0] in tags else loc,
                input=error["input"],
            )
            if "ctx" in error:
                detail["ctx"] = error["ctx"]
            details.append(detail)
        raise ValidationError.from_exception_data(exc.title, details) from None


TenderIn = Annotated[
    Annotated[TestGatewayTender, Tag("test_gateway")]
    | Annotated[CashOnDeliveryTender, Tag("cash_on_delivery")]
    | Annotated[PosCashTender, Tag("pos_cash")]
    | Annotated[PosCardTender, Tag("pos_card")]
    | Annotated[GiftCardTender, Tag("gift_card")]
    | Annotated[StoreCreditTender, Tag("store_credit")]
    | Annotated[LoyaltyPointsTender, Tag("loyalty_points")]
    | Annotated[ExtensionTender, Tag(_EXTENSION)],
    Discriminator(_tender_kind),
    WrapValidator(_errors_at_the_tender),
]
"""One way of paying, chosen by ``method``."""


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


class ProviderOut(ResponseModel):
    name: str = Field(description="The payment method name tenders use")
    refund_last: bool = Field(
        description="Refunds reach it after the tenders that moved real money (points)"
    )
    webhook_path: str = Field(
        description="Where the provider posts its signed events (the secret is never shown)"
    )


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
