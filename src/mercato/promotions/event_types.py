"""The promotions domain's events: promotions created or changed, personal codes issued,
discounts redeemed and given back."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from mercato.event_types import DomainEvent


@dataclass(frozen=True, kw_only=True)
class PromotionFacts(DomainEvent):
    """What every event of a promotion's definition says about it (as staff set it)."""

    AGGREGATE = "promotion"
    KEY = "id"

    id: int
    name: str
    description: str | None
    status: str
    priority: int
    stacking: str
    requires_code: bool
    conditions: dict[str, Any]
    action: dict[str, Any]
    starts_at: datetime | None
    ends_at: datetime | None
    # Per currency, the amount as a decimal string ("250.00").
    budget: dict[str, str]
    max_uses: int | None
    max_uses_per_customer: int | None


@dataclass(frozen=True, kw_only=True)
class PromotionCreated(PromotionFacts):
    """Staff created a promotion (draft or active)."""

    TYPE = "promotion.created"


@dataclass(frozen=True, kw_only=True)
class PromotionUpdated(PromotionFacts):
    """Staff changed a promotion (status, schedule, conditions, limits); ``changed`` names
    the fields they sent."""

    TYPE = "promotion.updated"

    changed: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class PersonalCodeIssued(DomainEvent):
    """A one-time code only one customer may use was issued for a promotion."""

    TYPE = "promotion.personal_code_issued"
    AGGREGATE = "promotion"

    promotion_id: int
    code_id: int
    customer_id: int
    expires_at: datetime | None


@dataclass(frozen=True)
class RedeemedDiscount:
    """One promotion's discount on an order (a redemption row)."""

    id: int
    promotion_id: int
    code: str | None
    customer_id: int | None
    amount: Decimal
    currency: str


@dataclass(frozen=True, kw_only=True)
class RedemptionFacts(DomainEvent):
    """The redemptions of one reference (an order or checkout) that changed together."""

    AGGREGATE = "redemption"
    KEY = "reference"

    reference: str
    redemptions: tuple[RedeemedDiscount, ...]


@dataclass(frozen=True, kw_only=True)
class PromotionRedeemed(RedemptionFacts):
    """The discounts reserved for an order are final: the order is placed and paid."""

    TYPE = "promotion.redeemed"


@dataclass(frozen=True, kw_only=True)
class RedemptionsReleased(RedemptionFacts):
    """The discounts an order had reserved or confirmed were given back (payment failed,
    order cancelled before fulfilment): they count against no limit or budget any more."""

    TYPE = "promotion.redemptions_released"
