from __future__ import annotations

from decimal import Decimal

from pydantic import Field

from mercato.auth.schemas import EMAIL_PATTERN
from mercato.schemas import StrictModel


class TenderIn(StrictModel):
    method: str = Field(
        min_length=1,
        max_length=30,
        description="test_gateway, cash_on_delivery, gift_card, store_credit, pos_cash, pos_card",
    )
    amount: Decimal = Field(gt=0, le=Decimal("1e12"), allow_inf_nan=False)
    token: str | None = Field(
        default=None, max_length=200, description="Card token from the test gateway"
    )
    gift_card_code: str | None = Field(default=None, max_length=64)
    approval_code: str | None = Field(default=None, max_length=64)
    location_id: int | None = None


class CheckoutIn(StrictModel):
    payments: list[TenderIn] = Field(min_length=1, max_length=5)
    email: str | None = Field(default=None, pattern=EMAIL_PATTERN, max_length=254)
    note: str | None = Field(default=None, max_length=1000)
