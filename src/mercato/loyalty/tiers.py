"""Tiers follow the *qualifying points* of the last 12 months.

Qualifying points are points earned minus points reversed, so a returned order does not keep
its tier. A tier is re-evaluated whenever they change and by the periodic job (so a tier is
lost once its points age out).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from mercato.customers import service as customers
from mercato.db import utcnow
from mercato.events import publish
from mercato.loyalty import rules
from mercato.loyalty._common import Kind
from mercato.loyalty.config import Config, TierInfo, _tier_info, get_config
from mercato.loyalty.event_types import TierChanged
from mercato.loyalty.models import Account, Entry, Tier

TIER_WINDOW_MONTHS = 12
TIER_WINDOW = "rolling_12_months"
QUALIFYING = (Kind.EARN.value, Kind.REVERSE.value)


def qualifying_points(session: Session, customer_id: int, *, now: datetime | None = None) -> int:
    """Points earned minus points reversed over the last 12 months (never below zero)."""
    since = rules.add_months(now or utcnow(), -TIER_WINDOW_MONTHS)
    total = session.scalar(
        select(func.coalesce(func.sum(Entry.points), 0)).where(
            Entry.customer_id == customer_id,
            Entry.kind.in_(QUALIFYING),
            Entry.created_at > since,
        )
    )
    return max(0, int(total or 0))


def _set_tier(
    session: Session,
    customer_id: int,
    previous: str | None,
    tier: TierInfo | None,
    qualifying: int,
    now: datetime,
    config: Config,
) -> None:
    code = tier.code if tier else None
    changed = session.scalar(
        update(Account)
        .where(Account.customer_id == customer_id)
        .where(Account.tier_code.is_(None) if previous is None else Account.tier_code == previous)
        .values(tier_code=code, tier_since=now, updated_at=now)
        .returning(Account.customer_id)
        .execution_options(synchronize_session=False)
    )
    if changed is None:
        return  # changed meanwhile by someone who saw newer points
    before = config.tier(previous)
    publish(
        session,
        TierChanged(
            customer_id=customer_id,
            from_tier=previous,
            to_tier=code,
            qualifying_points=qualifying,
            customer_group=tier.customer_group if tier else None,
            previous_customer_group=before.customer_group if before else None,
        ),
    )


def _evaluate_tier(
    session: Session, customer_id: int, now: datetime, config: Config | None
) -> None:
    if config is None:
        return
    account = session.get(Account, customer_id, populate_existing=True)
    if account is None or (not config.tiers and account.tier_code is None):
        return
    qualifying = qualifying_points(session, customer_id, now=now)
    tier = config.tier_for(qualifying)
    if (tier.code if tier else None) != account.tier_code:
        _set_tier(session, customer_id, account.tier_code, tier, qualifying, now, config)


def reevaluate_tiers(
    session: Session, *, now: datetime | None = None, config: Config | None = None
) -> int:
    """Bring every account's tier up to date (new thresholds, points aged out); how many
    changed. Set-based: one grouped sum over the window, updates only where a tier moves."""
    at = now or utcnow()
    config = config or get_config(session)
    if config is None:
        return 0
    since = rules.add_months(at, -TIER_WINDOW_MONTHS)
    sums = dict(
        session.execute(
            select(Entry.customer_id, func.sum(Entry.points))
            .where(Entry.kind.in_(QUALIFYING), Entry.created_at > since)
            .group_by(Entry.customer_id)
        ).all()
    )
    candidates = session.execute(select(Account.customer_id, Account.tier_code)).all()
    changed = 0
    for customer_id, current in candidates:
        qualifying = max(0, int(sums.get(customer_id) or 0))
        tier = config.tier_for(qualifying)
        if (tier.code if tier else None) != current:
            _set_tier(session, customer_id, current, tier, qualifying, at, config)
            changed += 1
    return changed


def tier_of(session: Session, customer_id: int) -> TierInfo | None:
    """The customer's tier (pricing and promotions target ``customer_group``)."""
    code = session.scalar(select(Account.tier_code).where(Account.customer_id == customer_id))
    if code is None:
        return None
    tier = session.get(Tier, code)
    return None if tier is None else _tier_info(tier)


def tier_groups(session: Session, customer_id: int | None) -> frozenset[str]:
    """The customer groups the customer's tier puts them in (to merge with
    ``customers.service.customer_groups`` when pricing or promotions match on groups)."""
    if customer_id is None:
        return frozenset()
    group = session.scalar(
        select(Tier.customer_group)
        .join(Account, Account.tier_code == Tier.code)
        .where(Account.customer_id == customer_id)
    )
    return frozenset({group}) if group else frozenset()


def pricing_groups(session: Session, customer_id: int | None) -> frozenset[str]:
    """Every group prices and promotions may target for the customer: the profile's own
    groups and the one its loyalty tier stands for."""
    if customer_id is None:
        return frozenset()
    return customers.customer_groups(session, customer_id) | tier_groups(session, customer_id)
