"""Loyalty: one programme, a points account per customer, its ledger, tiers and expiry.

**The ledger.** Every change of a balance is one UPDATE of the account row that returns the
new balance, plus one ledger entry carrying it (earn, redeem, refund, reverse, expire,
adjust). So for every account ``balance`` = the sum of its entries; :func:`verify` proves
it. A redemption is the conditional ``UPDATE ... WHERE balance >= :points``: two
redemptions racing for the last points cannot both win, the database serialises the row
and re-checks the condition. Only a return of points already spent can take a balance
below zero (the debt is paid back by the next points earned); nothing can spend it.

**Expiry, first in first out.** Credits make *lots* that expire ``expiry_months`` after
they were earned; every debit consumes the lots that expire first. The balance UPDATE
comes first in every change and locks the account row until commit, so the lot
bookkeeping that follows is serialised per customer (on SQLite the whole write
transaction is). For every account the lots' ``remaining`` add up to the balance when it
is positive, to zero otherwise (:func:`verify` checks this too).

**Earning.** When an order is placed its points are computed and shown as *pending*; they
are granted once, when the order is fulfilled (delivered or picked up count too), and
taken back in proportion when it is returned. The rules (currency rate, category
multipliers, tier multiplier, campaigns) are in :mod:`mercato.loyalty.rules`; the part of
an order paid with points earns nothing.

**Tiers** follow the *qualifying points* of the last 12 months (points earned minus
points reversed, so a returned order does not keep its tier), re-evaluated whenever they
change and by the periodic job (so a tier is lost once its points age out).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from sqlalchemy import case, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.auth.service import audit
from mercato.catalog import service as catalog
from mercato.customers import service as customers
from mercato.db import utcnow
from mercato.errors import Conflict, FieldError, NotFound, ValidationProblem
from mercato.events import publish
from mercato.loyalty import grants, rules
from mercato.loyalty.models import (
    PROGRAMME_ID,
    Account,
    Campaign,
    CategoryMultiplier,
    CurrencyRule,
    Entry,
    Lot,
    OrderPoints,
    ProcessedEvent,
    Programme,
    Tier,
)
from mercato.loyalty.schemas import MAX_POINTS, CampaignIn, ProgrammeIn
from mercato.money import check_precision
from mercato.orders import service as orders
from mercato.pagination import Page, decode_cursor, page_of
from mercato.payments import service as payments

if TYPE_CHECKING:
    from mercato.orders.models import Order

log = logging.getLogger(__name__)

SYSTEM = Principal.system("loyalty")
TENDER_METHOD = "loyalty_points"
TIER_WINDOW_MONTHS = 12
TIER_WINDOW = "rolling_12_months"
HISTORY_LENGTH = 20


class Kind(StrEnum):
    EARN = "earn"  # points of a fulfilled order (or another purchase)
    REDEEM = "redeem"  # spent as a tender
    REFUND = "refund"  # a points tender refunded: the points come back
    REVERSE = "reverse"  # an order's points taken back after a return
    EXPIRE = "expire"
    ADJUST = "adjust"  # staff correction or goodwill


QUALIFYING = (Kind.EARN.value, Kind.REVERSE.value)


class OrderPointsStatus(StrEnum):
    PENDING = "pending"
    GRANTED = "granted"
    CANCELLED = "cancelled"


class InsufficientPoints(Conflict):
    code = "insufficient-points"
    title = "Not enough points"


# --- the programme --------------------------------------------------------------------------


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


def _check_programme(session: Session, body: ProgrammeIn) -> None:
    errors: list[FieldError] = []
    seen: set[str] = set()
    for i, rule in enumerate(body.currencies):
        at = f"body.currencies[{i}]"
        if rule.currency in seen:
            errors.append(FieldError(f"{at}.currency", "each currency once"))
        seen.add(rule.currency)
        for name in ("earn_amount", "point_value"):
            value = getattr(rule, name)
            try:
                if value is not None:
                    check_precision(value, rule.currency)
            except ValueError as exc:
                errors.append(FieldError(f"{at}.{name}", str(exc)))
    categories = [m.category_id for m in body.category_multipliers]
    for i, category_id in enumerate(categories):
        if categories.index(category_id) != i:
            errors.append(FieldError(f"body.category_multipliers[{i}]", "each category once"))
        elif not _category_exists(session, category_id):
            errors.append(
                FieldError(
                    f"body.category_multipliers[{i}].category_id",
                    f"unknown category {category_id}",
                )
            )
    for name in ("code", "threshold"):
        values = [getattr(t, name) for t in body.tiers]
        for i, value in enumerate(values):
            if values.index(value) != i:
                errors.append(FieldError(f"body.tiers[{i}].{name}", f"each tier {name} once"))
    if errors:
        raise ValidationProblem(errors[0]["reason"], errors=errors)


def _category_exists(session: Session, category_id: int) -> bool:
    try:
        catalog.get_category(session, category_id)
    except NotFound:
        return False
    return True


def configure(
    session: Session, actor: Principal, body: ProgrammeIn, *, now: datetime | None = None
) -> Config:
    """Replace the programme's settings, rates, multipliers and tiers (campaigns stay).

    Tiers are re-evaluated for every account at once, so new thresholds apply today.
    """
    _check_programme(session, body)
    at = now or utcnow()
    values = {
        "name": body.name,
        "active": body.active,
        "expiry_months": body.expiry_months,
        "expiring_soon_days": body.expiring_soon_days,
        "updated_at": at,
    }
    maker = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    # The upsert locks the programme row first: two edits replace the rules one after the
    # other instead of interleaving their deletes and inserts.
    session.execute(
        maker(Programme)
        .values(id=PROGRAMME_ID, **values)
        .on_conflict_do_update(index_elements=["id"], set_=values)
    )
    for table in (CurrencyRule, CategoryMultiplier, Tier):
        session.execute(delete(table))
    rows: list[Any] = [CurrencyRule(**r.model_dump()) for r in body.currencies]
    rows += [CategoryMultiplier(**m.model_dump()) for m in body.category_multipliers]
    rows += [Tier(**t.model_dump()) for t in body.tiers]
    session.add_all(rows)
    session.flush()
    audit(
        session,
        actor,
        "loyalty.programme_updated",
        "loyalty_programme",
        PROGRAMME_ID,
        body.model_dump(mode="json"),
    )
    config = require_config(session)
    reevaluate_tiers(session, now=at, config=config)
    return config


def list_campaigns(session: Session) -> list[Campaign]:
    return list(session.scalars(select(Campaign).order_by(Campaign.starts_at, Campaign.id)))


def _check_campaign(body: CampaignIn) -> None:
    if body.ends_at <= body.starts_at:
        raise ValidationProblem.field("body.ends_at", "must be after starts_at")
    if body.multiplier == 1 and body.bonus_points == 0:
        raise ValidationProblem.field(
            "body.multiplier", "a campaign needs a multiplier above 1 or bonus points"
        )


def create_campaign(session: Session, actor: Principal, body: CampaignIn) -> Campaign:
    _check_campaign(body)
    campaign = Campaign(**body.model_dump(), created_at=utcnow())
    session.add(campaign)
    session.flush()
    audit(
        session,
        actor,
        "loyalty.campaign_created",
        "loyalty_campaign",
        campaign.id,
        body.model_dump(mode="json"),
    )
    return campaign


def replace_campaign(
    session: Session, actor: Principal, campaign_id: int, body: CampaignIn
) -> Campaign:
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise NotFound(f"campaign {campaign_id} not found")
    _check_campaign(body)
    for name, value in body.model_dump().items():
        setattr(campaign, name, value)
    session.flush()
    audit(
        session,
        actor,
        "loyalty.campaign_updated",
        "loyalty_campaign",
        campaign.id,
        body.model_dump(mode="json"),
    )
    return campaign


# --- the one primitive that changes a balance ---------------------------------------------


@dataclass(frozen=True)
class Posting:
    """One change of one balance and what it is for (written on its entry)."""

    customer_id: int
    kind: Kind
    points: int  # signed
    reference_type: str | None = None
    reference_id: str | None = None
    order_id: int | None = None
    channel_id: int | None = None
    reason: str | None = None


def _ensure_account(session: Session, customer_id: int, now: datetime) -> None:
    maker = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(
        maker(Account)
        .values(customer_id=customer_id, balance=0, created_at=now, updated_at=now)
        .on_conflict_do_nothing(index_elements=["customer_id"])
    )


def _post(
    session: Session,
    actor: Principal,
    posting: Posting,
    *,
    now: datetime,
    guarded: bool = False,
    expires_at: datetime | None = None,
) -> Entry | None:
    """Apply one posting; None (nothing written) when ``guarded`` and the balance is short.

    The UPDATE comes first: it locks the account row, which serialises the lot changes
    that follow for this customer.
    """
    statement = update(Account).where(Account.customer_id == posting.customer_id)
    if guarded:
        statement = statement.where(Account.balance >= -posting.points)
    else:
        _ensure_account(session, posting.customer_id, now)
    balance = session.scalar(
        statement.values(balance=Account.balance + posting.points, updated_at=now)
        .returning(Account.balance)
        .execution_options(synchronize_session=False)
    )
    if balance is None:
        return None
    entry = Entry(
        customer_id=posting.customer_id,
        kind=posting.kind.value,
        points=posting.points,
        balance_after=balance,
        reference_type=posting.reference_type,
        reference_id=posting.reference_id,
        order_id=posting.order_id,
        channel_id=posting.channel_id,
        actor_type=actor.kind,
        actor_id=None if actor.id is None else str(actor.id),
        reason=posting.reason,
        created_at=now,
    )
    session.add(entry)
    session.flush()
    if posting.points > 0:
        _add_lot(session, entry, posting.order_id, now, expires_at)
    else:
        _consume_lots(session, posting.customer_id, -posting.points, posting.order_id)
    return entry


def _add_lot(
    session: Session,
    entry: Entry,
    order_id: int | None,
    now: datetime,
    expires_at: datetime | None,
) -> None:
    # A negative balance before this credit was a debt: it is paid back first.
    remaining = max(0, min(entry.points, entry.balance_after))
    session.execute(
        insert(Lot).values(
            customer_id=entry.customer_id,
            entry_id=entry.id,
            order_id=order_id,
            points=entry.points,
            remaining=remaining,
            earned_at=now,
            expires_at=expires_at,
        )
    )


def _consume_lots(
    session: Session, customer_id: int, points: int, order_id: int | None = None
) -> None:
    """Take ``points`` from the lots that expire first (an order's own lots first when given)."""
    first = [Lot.expires_at.is_(None), Lot.expires_at, Lot.id]  # never-expiring lots last
    if order_id is not None:
        first.insert(0, case((Lot.order_id == order_id, 0), else_=1))
    lots = session.execute(
        select(Lot.id, Lot.remaining)
        .where(Lot.customer_id == customer_id, Lot.remaining > 0)
        .order_by(*first)
    ).all()
    changes = []
    left = points
    for lot_id, remaining in lots:
        if left <= 0:
            break
        taken = min(left, remaining)
        changes.append({"id": lot_id, "remaining": remaining - taken})
        left -= taken
    if changes:
        session.execute(update(Lot), changes)


def _event(session: Session, type_: str, entry: Entry, **extra: Any) -> None:
    publish(
        session,
        type_,
        {
            "customer_id": entry.customer_id,
            "entry_id": entry.id,
            "kind": entry.kind,
            "points": entry.points,
            "balance": entry.balance_after,
            "reference_type": entry.reference_type,
            "reference_id": entry.reference_id,
            "order_id": entry.order_id,
            "channel_id": entry.channel_id,
            **extra,
        },
        aggregate_type="loyalty_account",
        aggregate_id=entry.customer_id,
    )


def check_points(points: int, field: str, *, allow_negative: bool = False) -> None:
    if points == 0 or (points < 0 and not allow_negative) or abs(points) > MAX_POINTS:
        expected = "a non-zero whole number" if allow_negative else "a positive whole number"
        raise ValidationProblem.field(field, f"{expected} of points up to {MAX_POINTS}")


def _require_customer(session: Session, customer_id: int) -> None:
    customers.get_customer(session, customer_id)


def _shortage(session: Session, customer_id: int, points: int, field: str) -> InsufficientPoints:
    account = session.get(Account, customer_id, populate_existing=True)
    balance = 0 if account is None else account.balance
    return InsufficientPoints(
        f"{field}: {points} points asked, the customer has {max(0, balance)}",
        extra={"requested": points, "available": max(0, balance)},
    )


# --- use cases: earn, redeem, refund, reverse, adjust ---------------------------------------


def earn(
    session: Session,
    actor: Principal,
    customer_id: int,
    points: int,
    *,
    reference_type: str,
    reference_id: str | None,
    order_id: int | None = None,
    channel_id: int | None = None,
    reason: str | None = None,
    now: datetime | None = None,
) -> Entry:
    """Credit points for a purchase (they count towards tiers and expire as configured)."""
    check_points(points, "points")
    _require_customer(session, customer_id)
    posting = Posting(
        customer_id, Kind.EARN, points, reference_type, reference_id, order_id, channel_id, reason
    )
    return _earn(session, actor, posting, now or utcnow(), get_config(session))


def _earn(
    session: Session, actor: Principal, posting: Posting, at: datetime, config: Config | None
) -> Entry:
    expires = config.expires_at(at) if config else None
    entry = _post(session, actor, posting, now=at, expires_at=expires)
    assert entry is not None  # an unguarded credit always applies
    _event(session, "loyalty.points_earned", entry, expires_at=_iso(expires))
    _evaluate_tier(session, posting.customer_id, at, config)
    return entry


def redeem(
    session: Session,
    actor: Principal,
    customer_id: int,
    points: int,
    *,
    reference_type: str,
    reference_id: str | None,
    channel_id: int | None = None,
    field: str = "body.points",
    now: datetime | None = None,
) -> Entry:
    """Spend points: one conditional UPDATE; 409 ``insufficient-points`` when short."""
    check_points(points, field)
    at = now or utcnow()
    posting = Posting(
        customer_id, Kind.REDEEM, -points, reference_type, reference_id, None, channel_id
    )
    entry = _post(session, actor, posting, now=at, guarded=True)
    if entry is None:
        _require_customer(session, customer_id)
        raise _shortage(session, customer_id, points, field)
    _event(session, "loyalty.points_redeemed", entry)
    return entry


def refund_points(
    session: Session,
    actor: Principal,
    customer_id: int,
    points: int,
    *,
    reference_type: str,
    reference_id: str | None,
    now: datetime | None = None,
) -> Entry:
    """Give back points of a redemption that was refunded or voided.

    They make a new lot with a full expiry period: the shopper did not get to use them.
    """
    check_points(points, "points")
    at = now or utcnow()
    config = get_config(session)
    posting = Posting(customer_id, Kind.REFUND, points, reference_type, reference_id)
    entry = _post(
        session, actor, posting, now=at, expires_at=config.expires_at(at) if config else None
    )
    assert entry is not None
    _event(session, "loyalty.points_refunded", entry)
    return entry


def adjust(
    session: Session,
    actor: Principal,
    customer_id: int,
    points: int,
    reason: str,
    *,
    reference: str | None = None,
    now: datetime | None = None,
) -> Entry:
    """A staff correction or goodwill gesture (audited, with its reason). A debit never
    overdraws; a credit is money, granted within the actor's limits (``loyalty.grants``)."""
    check_points(points, "body.points", allow_negative=True)
    _require_customer(session, customer_id)
    at = now or utcnow()
    if points > 0:
        grants.check_grant(session, actor, points, at)
    config = get_config(session)
    posting = Posting(customer_id, Kind.ADJUST, points, "adjustment", reference, None, None, reason)
    expires = config.expires_at(at) if config and points > 0 else None
    entry = _post(session, actor, posting, now=at, guarded=points < 0, expires_at=expires)
    if entry is None:
        raise _shortage(session, customer_id, -points, "body.points")
    audit(
        session,
        actor,
        "loyalty.points_adjusted",
        "loyalty_account",
        customer_id,
        {"points": points, "balance": entry.balance_after, "reference": reference},
        note=reason,
    )
    _event(session, "loyalty.points_adjusted", entry)
    return entry


def _reverse(
    session: Session, row: OrderPoints, points: int, now: datetime, config: Config | None
) -> Entry:
    posting = Posting(
        row.customer_id,
        Kind.REVERSE,
        -points,
        "order",
        row.number,
        row.order_id,
        row.channel_id,
        "returned",
    )
    entry = _post(session, SYSTEM, posting, now=now)
    assert entry is not None
    _event(session, "loyalty.points_reversed", entry)
    _evaluate_tier(session, row.customer_id, now, config)
    return entry


# --- expiry ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpiryRun:
    accounts: int
    points: int


def expire_points(session: Session, *, now: datetime | None = None) -> ExpiryRun:
    """Expire every lot whose time has come. Safe in several processes at once: each account
    is locked before its lots are read, so a lot is expired once."""
    at = now or utcnow()
    due = session.scalars(
        select(Lot.customer_id)
        .where(Lot.expires_at <= at, Lot.remaining > 0)
        .distinct()
        .order_by(Lot.customer_id)
    ).all()
    accounts = points = 0
    for customer_id in due:
        expired = _expire_account(session, customer_id, at)
        if expired:
            accounts += 1
            points += expired
    return ExpiryRun(accounts, points)


def _expire_account(session: Session, customer_id: int, now: datetime) -> int:
    session.execute(
        update(Account)
        .where(Account.customer_id == customer_id)
        .values(updated_at=now)
        .execution_options(synchronize_session=False)
    )
    due = int(
        session.scalar(
            select(func.coalesce(func.sum(Lot.remaining), 0)).where(
                Lot.customer_id == customer_id, Lot.expires_at <= now, Lot.remaining > 0
            )
        )
        or 0
    )
    if due <= 0:
        return 0
    # The due lots expire first, so the FIFO debit consumes exactly them.
    posting = Posting(customer_id, Kind.EXPIRE, -due, "expiry", None, reason="points expired")
    entry = _post(session, SYSTEM, posting, now=now)
    assert entry is not None
    _event(session, "loyalty.points_expired", entry)
    return due


# --- tiers -----------------------------------------------------------------------------------


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
        "loyalty.tier_changed",
        {
            "customer_id": customer_id,
            "from": previous,
            "to": code,
            "qualifying_points": qualifying,
            "customer_group": tier.customer_group if tier else None,
            "previous_customer_group": before.customer_group if before else None,
        },
        aggregate_type="loyalty_account",
        aggregate_id=customer_id,
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


# --- orders: pending, granted once, reversed on return --------------------------------------


@dataclass(frozen=True)
class ReturnedLine:
    """A returned line as the returns domain reports it once refunded."""

    variant_id: int
    quantity: int
    # The money (or store credit) that went back for it; None when not reported, in which
    # case the returned units count instead.
    amount: Decimal | None


def _first_order(session: Session, customer_id: int, order_id: int, now: datetime) -> bool:
    """Claim the first-order bonus for this order (once per customer, race-free)."""
    _ensure_account(session, customer_id, now)
    claimed = session.scalar(
        update(Account)
        .where(
            Account.customer_id == customer_id,
            Account.first_order_id.is_(None) | (Account.first_order_id == order_id),
        )
        .values(first_order_id=order_id)
        .returning(Account.customer_id)
        .execution_options(synchronize_session=False)
    )
    return claimed is not None


def _paid_with_points(session: Session, number: str) -> Decimal:
    spent = (
        p.amount
        for p in payments.payments_for_reference(session, number)
        if p.method == TENDER_METHOD and p.captured_minor > 0
    )
    return sum(spent, Decimal(0))


def _earn_lines(
    session: Session, order_id: int, config: Config
) -> list[tuple[rules.EarnLine, Decimal]]:
    """Per variant: what earns points (net of discounts and cancelled units) and what was paid."""
    lines = orders.order_lines(session, order_id)
    infos = catalog.variant_infos(session, {x.variant_id for x in lines})
    quantity: dict[int, int] = defaultdict(int)
    amount: dict[int, Decimal] = defaultdict(Decimal)
    paid: dict[int, Decimal] = defaultdict(Decimal)
    for line in lines:
        kept = max(0, line.quantity - line.cancelled_quantity)
        if kept == 0 or line.quantity <= 0:
            continue
        share = Decimal(kept) / Decimal(line.quantity)
        quantity[line.variant_id] += kept
        amount[line.variant_id] += (line.subtotal - line.discount) * share
        paid[line.variant_id] += line.total * share
    result = []
    for variant_id in sorted(quantity):
        info = infos.get(variant_id)
        categories = info.category_ids if info else frozenset()
        multiplier = max(
            (config.multipliers[c] for c in categories if c in config.multipliers),
            default=rules.ONE,
        )
        earn_line = rules.EarnLine(variant_id, quantity[variant_id], amount[variant_id], multiplier)
        result.append((earn_line, paid[variant_id]))
    return result


def _plan(session: Session, config: Config, order: Order, now: datetime) -> OrderPoints | None:
    currency = config.currencies.get(order.currency)
    if currency is None or currency.earn_points == 0 or order.customer_id is None:
        return None
    lines = _earn_lines(session, order.id, config)
    if not lines:
        return None
    grand_total = Decimal(order.grand_total)
    by_points = _paid_with_points(session, order.number)
    # The part of the order paid with points earns none.
    factor = (grand_total - by_points) / grand_total if grand_total > 0 else Decimal(0)
    factor = min(Decimal(1), max(Decimal(0), factor))
    earn_lines = [
        rules.EarnLine(x.variant_id, x.quantity, x.amount * factor, x.multiplier) for x, _ in lines
    ]
    placed_at = order.placed_at or order.created_at
    first = _first_order(session, order.customer_id, order.id, now)
    campaign_multiplier, bonus = rules.campaign_effect(
        config.campaigns, placed_at, first_order=first
    )
    tier = tier_of(session, order.customer_id)
    multiplier = campaign_multiplier * (tier.earn_multiplier if tier else rules.ONE)
    earned = rules.earn_points(earn_lines, currency.rate, multiplier=multiplier, bonus_points=bonus)
    return OrderPoints(
        order_id=order.id,
        customer_id=order.customer_id,
        number=order.number,
        channel_id=order.channel_id,
        currency=order.currency,
        status=OrderPointsStatus.PENDING.value,
        points=earned.points,
        bonus_points=earned.bonus_points,
        lines=[
            {
                "variant_id": x.variant_id,
                "quantity": x.quantity,
                "paid": str(paid),
                "weight": str(Decimal(w.numerator) / Decimal(w.denominator)),
            }
            for (x, paid), w in zip(lines, earned.weights, strict=True)
        ],
        returned={},
        granted_points=0,
        reversed_points=0,
        placed_at=placed_at,
    )


def _order_row(session: Session, order_id: int, *, lock: bool = False) -> OrderPoints | None:
    query = select(OrderPoints).where(OrderPoints.order_id == order_id)
    if lock:
        query = query.with_for_update()
    return session.scalars(query.execution_options(populate_existing=True)).one_or_none()


def order_placed(
    session: Session, order_id: int, *, now: datetime | None = None
) -> OrderPoints | None:
    """Compute an order's points and show them as pending (idempotent per order)."""
    existing = _order_row(session, order_id)
    if existing is not None:
        return existing
    return _place(session, get_config(session), order_id, now or utcnow())


def _place(
    session: Session, config: Config | None, order_id: int, now: datetime
) -> OrderPoints | None:
    if config is None or not config.active:
        return None
    try:
        order = orders.get_order(session, order_id)
    except NotFound:
        log.warning("loyalty: order %s of an order event does not exist", order_id)
        return None
    row = _plan(session, config, order, now)
    if row is None:
        return None
    values = {c.key: getattr(row, c.key) for c in OrderPoints.__table__.columns}
    maker = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(
        maker(OrderPoints).values(values).on_conflict_do_nothing(index_elements=["order_id"])
    )
    return _order_row(session, order_id)


def order_cancelled(session: Session, order_id: int) -> None:
    """Pending points of a cancelled order disappear; its first-order bonus is freed."""
    row = session.scalar(
        update(OrderPoints)
        .where(
            OrderPoints.order_id == order_id, OrderPoints.status == OrderPointsStatus.PENDING.value
        )
        .values(status=OrderPointsStatus.CANCELLED.value)
        .returning(OrderPoints.customer_id)
        .execution_options(synchronize_session=False)
    )
    if row is not None:
        session.execute(
            update(Account)
            .where(Account.customer_id == row, Account.first_order_id == order_id)
            .values(first_order_id=None)
            .execution_options(synchronize_session=False)
        )


def grant_order(session: Session, order_id: int, *, now: datetime | None = None) -> Entry | None:
    """Grant an order's points once (fulfilled, delivered and picked up all call this)."""
    at = now or utcnow()
    config = get_config(session)
    row = _order_row(session, order_id) or _place(session, config, order_id, at)
    if row is None:
        return None
    granted = session.scalar(
        update(OrderPoints)
        .where(
            OrderPoints.order_id == order_id,
            OrderPoints.status == OrderPointsStatus.PENDING.value,
        )
        .values(
            status=OrderPointsStatus.GRANTED.value,
            granted_points=OrderPoints.points,
            granted_at=at,
        )
        .returning(OrderPoints.points)
        .execution_options(synchronize_session=False)
    )
    if granted is None:
        return None  # granted before (another fulfilment event) or cancelled
    entry = None
    if granted > 0:
        posting = Posting(
            row.customer_id, Kind.EARN, granted, "order", row.number, order_id, row.channel_id
        )
        entry = _earn(session, SYSTEM, posting, at, config)
    locked = _order_row(session, order_id, lock=True)
    assert locked is not None
    _apply_returns(session, locked, at, config)  # a return recorded before the grant
    return entry


def _first_time(session: Session, event_id: str, now: datetime) -> bool:
    maker = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    inserted = session.scalar(
        maker(ProcessedEvent)
        .values(event_id=event_id, processed_at=now)
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(ProcessedEvent.event_id)
    )
    return inserted is not None


def order_returned(
    session: Session,
    event_id: str,
    order_id: int,
    lines: Sequence[ReturnedLine],
    *,
    now: datetime | None = None,
) -> Entry | None:
    """Take back the returned share of an order's points (once per event)."""
    at = now or utcnow()
    if not _first_time(session, event_id, at):
        return None
    row = _order_row(session, order_id, lock=True)
    if row is None or row.status == OrderPointsStatus.CANCELLED.value:
        return None
    returned = {k: dict(v) for k, v in (row.returned or {}).items()}
    for line in lines:
        seen = returned.setdefault(str(line.variant_id), {"units": 0, "amount": "0"})
        if line.amount is None:
            seen["units"] = int(seen["units"]) + max(0, line.quantity)
        else:
            seen["amount"] = str(Decimal(seen["amount"]) + max(Decimal(0), line.amount))
    row.returned = returned
    session.flush()
    return _apply_returns(session, row, at, get_config(session))


def _returned_fraction(line: dict[str, Any], returned: dict[str, Any]) -> Fraction:
    """The share of a line given back: points follow the money refunded for it (an exchange
    refunds nothing and keeps its points; a restocking fee keeps its share)."""
    seen = returned.get(str(line["variant_id"]))
    if not seen:
        return Fraction(0)
    units = int(line["quantity"])
    by_units = Fraction(int(seen["units"]), units) if units else Fraction(0)
    paid = Decimal(line["paid"])
    by_amount = Fraction(Decimal(seen["amount"])) / Fraction(paid) if paid > 0 else Fraction(0)
    return min(Fraction(1), by_units + by_amount)


def _apply_returns(
    session: Session, row: OrderPoints, now: datetime, config: Config | None
) -> Entry | None:
    """Reverse what the returns so far call for, minus what was reversed already."""
    if row.status != OrderPointsStatus.GRANTED.value or not row.returned:
        return None
    weights = [Fraction(Decimal(x["weight"])) for x in row.lines]
    fractions = [_returned_fraction(x, row.returned) for x in row.lines]
    target = rules.reversal_target(row.granted_points, weights, fractions)
    due = target - row.reversed_points
    if due <= 0:
        return None
    row.reversed_points = target
    session.flush()
    return _reverse(session, row, due, now, config)


# --- reading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpiringLot:
    expires_at: datetime
    points: int


@dataclass(frozen=True)
class AccountView:
    customer_id: int
    balance: int
    pending: int
    tier: TierInfo | None
    qualifying_points: int
    next_tier: TierInfo | None
    expiring_days: int
    expiring: list[ExpiringLot]

    @property
    def expiring_points(self) -> int:
        return sum(x.points for x in self.expiring)


def pending_points(session: Session, customer_id: int) -> int:
    return int(
        session.scalar(
            select(func.coalesce(func.sum(OrderPoints.points), 0)).where(
                OrderPoints.customer_id == customer_id,
                OrderPoints.status == OrderPointsStatus.PENDING.value,
            )
        )
        or 0
    )


def balance_of(session: Session, customer_id: int) -> int:
    return int(
        session.scalar(select(Account.balance).where(Account.customer_id == customer_id)) or 0
    )


def expiring_lots(session: Session, customer_id: int, before: datetime) -> list[ExpiringLot]:
    rows = session.execute(
        select(Lot.expires_at, func.sum(Lot.remaining))
        .where(Lot.customer_id == customer_id, Lot.remaining > 0, Lot.expires_at <= before)
        .group_by(Lot.expires_at)
        .order_by(Lot.expires_at)
    ).all()
    return [ExpiringLot(at, int(points)) for at, points in rows if at is not None]


def account_view(session: Session, customer_id: int, *, now: datetime | None = None) -> AccountView:
    """Balance, pending points, tier and what expires soon (404 for an unknown customer)."""
    _require_customer(session, customer_id)
    at = now or utcnow()
    config = get_config(session)
    days = config.expiring_soon_days if config else 30
    account = session.get(Account, customer_id, populate_existing=True)
    qualifying = qualifying_points(session, customer_id, now=at)
    tier = config.tier(account.tier_code) if config and account else None
    higher = [
        t
        for t in (config.tiers if config else ())
        if t.threshold > (tier.threshold if tier else -1)
    ]
    return AccountView(
        customer_id=customer_id,
        balance=account.balance if account else 0,
        pending=pending_points(session, customer_id),
        tier=tier,
        qualifying_points=qualifying,
        next_tier=higher[0] if higher else None,
        expiring_days=days,
        expiring=expiring_lots(session, customer_id, at + timedelta(days=days)),
    )


def entries(
    session: Session,
    customer_id: int,
    *,
    kind: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[Entry]:
    """The customer's ledger, newest first."""
    query = select(Entry).where(Entry.customer_id == customer_id).order_by(Entry.id.desc())
    if kind is not None:
        query = query.where(Entry.kind == kind)
    after = decode_cursor(cursor)
    if after is not None:
        if not isinstance(after, int) or isinstance(after, bool):
            raise ValidationProblem.field("query.cursor", "not a cursor returned by this API")
        query = query.where(Entry.id < after)
    rows = list(session.scalars(query.limit(limit + 1)))
    return page_of(rows, limit, key=lambda e: e.id)


def redemption_value(session: Session, currency: str) -> Decimal | None:
    """What one point pays in ``currency`` (None: points are not redeemable in it)."""
    programme = session.get(Programme, PROGRAMME_ID)
    if programme is None or not programme.active:
        return None
    rule = session.get(CurrencyRule, currency.upper())
    return None if rule is None else rule.point_value


# --- proof -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mismatch:
    customer_id: int
    balance: int
    ledger: int
    lots: int


def verify(session: Session) -> list[Mismatch]:
    """Every account against its ledger (balance = sum of entries) and its lots (remaining
    points = the positive balance); ledger entries without an account count too."""
    ledger = dict(
        session.execute(
            select(Entry.customer_id, func.sum(Entry.points)).group_by(Entry.customer_id)
        ).all()
    )
    lots = dict(
        session.execute(
            select(Lot.customer_id, func.sum(Lot.remaining)).group_by(Lot.customer_id)
        ).all()
    )
    balances = dict(session.execute(select(Account.customer_id, Account.balance)).all())
    bad = []
    for customer_id in sorted(set(ledger) | set(lots) | set(balances)):
        balance = int(balances.get(customer_id, 0))
        total = int(ledger.get(customer_id) or 0)
        remaining = int(lots.get(customer_id) or 0)
        if balance != total or remaining != max(0, balance):
            bad.append(Mismatch(customer_id, balance, total, remaining))
    return bad


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
