from __future__ import annotations

from decimal import Decimal
from enum import StrEnum

from pydantic import Field

from mercato.schemas import ResponseModel


class StoreCategoryOut(ResponseModel):
    id: int
    code: str
    name: str
    parent_id: int | None


class PriceTaxStatus(StrEnum):
    INCLUDED = "included"
    ADDED = "added"
    PENDING = "pending"


class StorePriceOut(ResponseModel):
    amount: Decimal
    currency: str
    formatted: str
    tax_inclusive: bool = Field(description="The price includes the shopper's tax")
    tax_status: PriceTaxStatus = Field(
        default=PriceTaxStatus.INCLUDED,
        description="included in the price, added on top, or pending: added on top at a "
        "rate that depends on the address (a US state)",
    )
    tax_note: str | None = Field(default=None, description="Why the tax is pending")
    compare_at: Decimal | None = None
    compare_at_formatted: str | None = None


class StoreVariantOut(ResponseModel):
    id: int
    sku: str
    barcode: str | None
    options: dict[str, str]
    price: StorePriceOut | None = None


class StoreProductOut(ResponseModel):
    id: int
    code: str
    locale: str
    name: str
    description: str | None
    category: StoreCategoryOut | None
    media_urls: list[str]
    variants: list[StoreVariantOut]


class StoreProductPage(ResponseModel):
    locale: str
    currency: str
    items: list[StoreProductOut]
    next_cursor: str | None = None


class StoreChannelOut(ResponseModel):
    code: str
    name: str
    type: str
    locale: str
    locales: list[str]
    currencies: list[str]
    country: str | None
    country_currencies: dict[str, str] = Field(
        default_factory=dict,
        description="The currency each listed country is quoted in; others get the first",
    )
