from __future__ import annotations

from pydantic import Field

from mercato.auth.schemas import EMAIL_PATTERN
from mercato.payments.schemas import TenderIn
from mercato.schemas import StrictModel

__all__ = ["CheckoutIn", "TenderIn"]


class CheckoutIn(StrictModel):
    payments: list[TenderIn] = Field(
        min_length=1,
        max_length=5,
        description="Up to five tenders adding up to the grand total exactly",
    )
    email: str | None = Field(default=None, pattern=EMAIL_PATTERN, max_length=254)
    note: str | None = Field(default=None, max_length=1000)
