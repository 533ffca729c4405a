"""API models of the promotions domain.

Amounts are Decimal (sent as strings or numbers, answered as strings) in the currency's
minor unit; per-currency amounts are objects keyed by ISO 4217 code: ``{"EUR": "5.00"}``.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from pydantic import Field

from mercato.promotions.engine import DiscountKind, Reason, StackingMode
from mercato.schemas import ResponseModel, StrictModel

MAX_IDS = 500
MAX_CART_LINES = 500
MAX_CODES_PER_CART = 20
MAX_QUANTITY = 1_000_000


class ActionType(StrEnum):
    PERCENT_OFF_ITEMS = "percent_off_items"
    AMOUNT_OFF_ITEMS = "amount_off_items"
    PERCENT_OFF_ORDER = "percent_off_order"
    AMOUNT_OFF_ORDER = "amount_off_order"
    BUY_X_GET_Y = "buy_x_get_y"
    SHIPPING = "shipping"
    FIXED_PRICE_BUNDLE = "fixed_price_bundle"


class PromotionStatus(StrEnum):
    DRAFT = "draft"
    ACTIVE = "active"
    PAUSED = "paused"
    ARCHIVED = "archived"


class RedemptionStatus(StrEnum):
    RESERVED = "reserved"
    CONFIRMED = "confirmed"
    RELEASED = "released"


def _unset(value: Any) -> bool:
    return value is None


def _ids() -> Any:
    return Field(default_factory=list, max_length=MAX_IDS)


class ItemSelectorIn(StrictModel):
    """Lines whose product, variant or any category (with its ancestors) is listed."""

    product_ids: list[int] = _ids()
    variant_ids: list[int] = _ids()
    category_ids: list[int] = _ids()


class ConditionsIn(StrictModel):
    """Who and which carts qualify; an empty list means no restriction."""

    channel_ids: list[int] = _ids()
    currencies: list[str] = Field(default_factory=list, max_length=200)
    customer_ids: list[int] = _ids()
    customer_groups: list[str] = Field(default_factory=list, max_length=100)
    first_order_only: bool = False
    min_subtotal: dict[str, Decimal] = Field(
        default_factory=dict, description="Minimum subtotal per currency: {'EUR': '50.00'}"
    )
    required_items: ItemSelectorIn | None = None
    min_quantity: int = Field(default=1, ge=1, le=MAX_QUANTITY)


class BundleComponentIn(StrictModel):
    variant_id: int | None = None
    product_id: int | None = None
    quantity: int = Field(default=1, ge=1, le=1000)


class ActionIn(StrictModel):
    """What the promotion takes off. Which fields each ``type`` uses:

    * ``percent_off_items``: ``percent``, optional ``items`` (default: every item)
    * ``amount_off_items``: ``amounts`` off each unit, optional ``items``
    * ``percent_off_order``: ``percent``
    * ``amount_off_order``: ``amounts``
    * ``buy_x_get_y``: ``buy_quantity``, ``get_quantity``, optional ``percent`` (100),
      ``items``, ``max_repeats``
    * ``shipping``: optional ``percent`` (100: free shipping)
    * ``fixed_price_bundle``: ``components``, ``prices``, optional ``max_repeats``
    """

    type: ActionType
    # Each type uses a few of the fields; answering the others as null would suggest they
    # could apply, so unused fields are left out of answers.
    percent: Decimal | None = Field(default=None, gt=0, le=100, exclude_if=_unset)
    amounts: dict[str, Decimal] | None = Field(default=None, exclude_if=_unset)
    items: ItemSelectorIn | None = Field(default=None, exclude_if=_unset)
    buy_quantity: int | None = Field(default=None, ge=1, le=1000, exclude_if=_unset)
    get_quantity: int | None = Field(default=None, ge=1, le=1000, exclude_if=_unset)
    max_repeats: int | None = Field(default=None, ge=1, le=MAX_QUANTITY, exclude_if=_unset)
    components: list[BundleComponentIn] | None = Field(
        default=None, min_length=1, max_length=50, exclude_if=_unset
    )
    prices: dict[str, Decimal] | None = Field(default=None, exclude_if=_unset)


class PromotionIn(StrictModel):
    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=5000)
    status: PromotionStatus = PromotionStatus.DRAFT
    priority: int = Field(default=0, ge=-10_000, le=10_000)
    stacking: StackingMode = StackingMode.STACKABLE
    requires_code: bool = False
    conditions: ConditionsIn = Field(default_factory=ConditionsIn)
    action: ActionIn
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    budget: dict[str, Decimal] = Field(
        default_factory=dict,
        description="The most the promotion may give away, per currency: {'EUR': '1000.00'}",
    )
    max_uses: int | None = Field(default=None, ge=1, description="Total redemptions")
    max_uses_per_customer: int | None = Field(
        default=None, ge=1, description="Redemptions per customer (needs a signed-in customer)"
    )


class PromotionPatch(StrictModel):
    """Only the fields sent change; ``conditions``, ``action`` and ``budget`` are replaced
    as a whole. ``null`` clears the optional fields."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=5000)
    status: PromotionStatus | None = None
    priority: int | None = Field(default=None, ge=-10_000, le=10_000)
    stacking: StackingMode | None = None
    requires_code: bool | None = None
    conditions: ConditionsIn | None = None
    action: ActionIn | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    budget: dict[str, Decimal] | None = None
    max_uses: int | None = Field(default=None, ge=1)
    max_uses_per_customer: int | None = Field(default=None, ge=1)


class PromotionOut(ResponseModel):
    id: int
    name: str
    description: str | None
    status: PromotionStatus
    priority: int
    stacking: StackingMode
    requires_code: bool
    conditions: ConditionsIn
    action: ActionIn
    starts_at: datetime | None
    ends_at: datetime | None
    budget: dict[str, Decimal]
    spent: dict[str, Decimal] = Field(
        description="Discount given by active (reserved or confirmed) redemptions, per currency"
    )
    max_uses: int | None
    max_uses_per_customer: int | None
    redemptions: int = Field(description="Active (reserved or confirmed) redemptions")
    created_at: datetime
    updated_at: datetime


# --- codes ----------------------------------------------------------------------------------


class PromotionCodeIn(StrictModel):
    code: str = Field(min_length=1, max_length=64, description="Normalised to upper case")
    max_uses: int | None = Field(default=None, ge=1)
    expires_at: datetime | None = None


class GenerateCodesIn(StrictModel):
    count: int = Field(ge=1, le=10_000)
    prefix: str | None = Field(default=None, max_length=20)
    length: int = Field(default=10, ge=6, le=32, description="Random characters after the prefix")
    max_uses: int | None = Field(default=1, ge=1, description="Per code; null: unlimited")
    expires_at: datetime | None = None


class GeneratedCodesOut(ResponseModel):
    promotion_id: int
    batch: str
    count: int
    codes: list[str]


class PersonalCodeIn(StrictModel):
    customer_id: int
    expires_at: datetime | None = None
    valid_days: int | None = Field(
        default=None, ge=1, le=366, description="Instead of expires_at: valid for this many days"
    )


class CodeOut(ResponseModel):
    id: int
    promotion_id: int
    code: str
    max_uses: int | None
    uses: int
    expires_at: datetime | None
    customer_id: int | None
    batch: str | None
    disabled: bool
    created_at: datetime


# --- redemptions ----------------------------------------------------------------------------


class RedemptionOut(ResponseModel):
    id: int
    promotion_id: int
    code_id: int | None
    code: str | None
    customer_id: int | None
    reference: str
    amount: Decimal
    currency: str
    status: RedemptionStatus
    created_at: datetime
    confirmed_at: datetime | None
    released_at: datetime | None


# --- cart evaluation (preview) -------------------------------------------------------------


class CartLineIn(StrictModel):
    line_id: str = Field(min_length=1, max_length=64)
    variant_id: int
    quantity: int = Field(ge=1, le=MAX_QUANTITY)
    unit_price: Decimal = Field(ge=0)
    discountable: bool = True


class EvaluateIn(StrictModel):
    currency: str = Field(min_length=3, max_length=3)
    channel_id: int
    customer_id: int | None = None
    customer_groups: list[str] = Field(default_factory=list, max_length=100)
    first_order: bool = False
    shipping: Decimal = Field(default=Decimal(0), ge=0)
    codes: list[str] = Field(default_factory=list, max_length=MAX_CODES_PER_CART)
    lines: list[CartLineIn] = Field(min_length=1, max_length=MAX_CART_LINES)
    at: datetime | None = Field(default=None, description="Evaluate at this time (default: now)")


class LineDiscountOut(ResponseModel):
    promotion_id: int
    amount: Decimal


class LineResultOut(ResponseModel):
    line_id: str
    subtotal: Decimal
    discounts: list[LineDiscountOut]
    discount: Decimal
    total: Decimal


class AppliedDiscountOut(ResponseModel):
    promotion_id: int
    name: str
    code: str | None
    kind: DiscountKind
    amount: Decimal


class CodeRejectionOut(ResponseModel):
    code: str
    promotion_id: int | None
    reason: Reason


class EvaluationOut(ResponseModel):
    currency: str
    lines: list[LineResultOut]
    applied: list[AppliedDiscountOut]
    rejected_codes: list[CodeRejectionOut]
    subtotal: Decimal
    line_discount: Decimal
    shipping: Decimal
    shipping_discount: Decimal
    discount: Decimal
    total: Decimal
