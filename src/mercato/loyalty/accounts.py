"""Reading a customer's points (balance, pending, tier, what expires soon, the ledger)
and the proof that every balance matches its ledger and lots."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mercato.db import utcnow
from mercato.errors import ValidationProblem
from mercato.loyalty._common import OrderPointsStatus, _require_customer
from mercato.loyalty.config import TierInfo, get_config
from mercato.loyalty.models import (
    PROGRAMME_ID,
    Account,
    CurrencyRule,
    Entry,
    Lot,
    OrderPoints,
    Programme,
)
from mercato.loyalty.tiers import qualifying_points
from mercato.pagination import Page, decode_cursor, page_of

HISTORY_LENGTH = 20


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
