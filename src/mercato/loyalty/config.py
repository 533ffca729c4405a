"""The programme as the use cases read it: one snapshot per transaction.

Currency rates, category multipliers, tiers and the active campaigns; the arithmetic that
uses them is :mod:`mercato.loyalty.rules`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from mercato.errors import NotFound
from mercato.loyalty import rules
from mercato.loyalty.models import (
    PROGRAMME_ID,
    Campaign,
    CategoryMultiplier,
    CurrencyRule,
    Programme,
    Tier,
)


@dataclass(frozen=True)
class TierInfo:
    code: str
    name: str
    threshold: int
    earn_multiplier: Decimal
    customer_group: str | None


@dataclass(frozen=True)
class CurrencyInfo:
    currency: str
    earn_points: int
    earn_amount: Decimal
    point_value: Decimal | None

    @property
    def rate(self) -> rules.EarnRate:
        return rules.EarnRate(self.earn_points, self.earn_amount)


@dataclass(frozen=True)
class Config:
    """The programme as the use cases read it (one snapshot per transaction)."""

    name: str
    active: bool
    expiry_months: int | None
    expiring_soon_days: int
    currencies: dict[str, CurrencyInfo]
    multipliers: dict[int, Decimal]
    tiers: tuple[TierInfo, ...]  # by threshold, lowest first
    campaigns: tuple[rules.CampaignRule, ...]

    def expires_at(self, earned_at: datetime) -> datetime | None:
        if self.expiry_months is None:
            return None
        return rules.add_months(earned_at, self.expiry_months)

    def tier_for(self, qualifying: int) -> TierInfo | None:
        reached = [t for t in self.tiers if t.threshold <= qualifying]
        return reached[-1] if reached else None

    def tier(self, code: str | None) -> TierInfo | None:
        return next((t for t in self.tiers if t.code == code), None)


def _tier_info(tier: Tier) -> TierInfo:
    return TierInfo(tier.code, tier.name, tier.threshold, tier.earn_multiplier, tier.customer_group)


def _campaign_rule(c: Campaign) -> rules.CampaignRule:
    return rules.CampaignRule(
        starts_at=c.starts_at,
        ends_at=c.ends_at,
        multiplier=c.multiplier,
        bonus_points=c.bonus_points,
        first_order_only=c.first_order_only,
        weekdays=frozenset(c.weekdays or ()),
        timezone=c.timezone,
    )


def get_config(session: Session) -> Config | None:
    """The programme, or None when the business has not set one up."""
    programme = session.get(Programme, PROGRAMME_ID, populate_existing=True)
    if programme is None:
        return None
    currencies = {
        r.currency: CurrencyInfo(r.currency, r.earn_points, r.earn_amount, r.point_value)
        for r in session.scalars(select(CurrencyRule).order_by(CurrencyRule.currency))
    }
    multipliers = {m.category_id: m.multiplier for m in session.scalars(select(CategoryMultiplier))}
    tiers = tuple(_tier_info(t) for t in session.scalars(select(Tier).order_by(Tier.threshold)))
    campaigns = tuple(
        _campaign_rule(c)
        for c in session.scalars(select(Campaign).where(Campaign.active.is_(True)))
    )
    return Config(
        programme.name,
        programme.active,
        programme.expiry_months,
        programme.expiring_soon_days,
        currencies,
        multipliers,
        tiers,
        campaigns,
    )


def require_config(session: Session) -> Config:
    config = get_config(session)
    if config is None:
        raise NotFound("no loyalty programme is set up", code="no-loyalty-programme")
    return config
