"""What the day looks like: sales figures per channel and per country, and the orders that
need someone (on hold, in fraud review, not routed, late to ship).

Amounts are summed per currency and never across currencies: Mercato keeps no reporting
currency, and an exchange rate picked for a dashboard would make figures nobody can
reconcile with the payments.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from mercato.db import utcnow
from mercato.orders.models import Order
from mercato.orders.state import OrderStatus

# Orders that count as sales: paid for and not cancelled.
NOT_SALES = (
    OrderStatus.PENDING_PAYMENT.value,
    OrderStatus.PAYMENT_FAILED.value,
    OrderStatus.CANCELLED.value,
)
# An order confirmed this long ago and still not allocated was not routed (routing runs
# seconds after confirmation).
UNROUTED_AFTER = timedelta(minutes=15)
# An order allocated this long ago and still not shipped is late.
LATE_TO_SHIP_AFTER = timedelta(hours=48)
UNKNOWN_COUNTRY = "-"


@dataclass(frozen=True)
class SalesFigure:
    """Sales of one channel (``key`` its id) or one country (``key`` its code) in one
    currency."""

    key: str
    currency: str
    orders: int
    revenue: Decimal

    @property
    def average(self) -> Decimal:
        return self.revenue / self.orders if self.orders else Decimal(0)


@dataclass(frozen=True)
class SalesSummary:
    since: datetime
    by_channel: list[SalesFigure]
    by_country: list[SalesFigure]

    def totals(self) -> list[SalesFigure]:
        """All channels together, per currency."""
        sums: dict[str, tuple[int, Decimal]] = {}
        for x in self.by_channel:
            n, amount = sums.get(x.currency, (0, Decimal(0)))
            sums[x.currency] = (n + x.orders, amount + x.revenue)
        return [SalesFigure("all", c, n, a) for c, (n, a) in sorted(sums.items())]


def _sales(since: datetime, scope: ColumnElement[bool] | None) -> list[ColumnElement[bool]]:
    conditions = [Order.placed_at >= since, Order.status.not_in(NOT_SALES)]
    if scope is not None:
        conditions.append(scope)
    return conditions


def sales_summary(
    session: Session, since: datetime, *, scope: ColumnElement[bool] | None = None
) -> SalesSummary:
    """Revenue (grand totals), orders and average order value since ``since``, per channel
    and per shipping country, each per currency."""
    where = _sales(since, scope)
    # Grouped on an expression, not the column: otherwise SQLite walks the (channel,
    # status) index of every order to group, instead of the period's by placed_at.
    channel = func.coalesce(Order.channel_id, 0)
    by_channel = [
        SalesFigure(str(channel_id), currency, int(count), Decimal(total or 0))
        for channel_id, currency, count, total in session.execute(
            select(channel, Order.currency, func.count(), func.sum(Order.grand_total))
            .where(*where)
            .group_by(channel, Order.currency)
        )
    ]
    # Orders keep their shipping country in the clear; only orders stored before it was
    # kept (no ship_country) need their encrypted address read.
    countries: dict[tuple[str, str], tuple[int, Decimal]] = defaultdict(lambda: (0, Decimal(0)))
    for country, currency, count, total in session.execute(
        select(Order.ship_country, Order.currency, func.count(), func.sum(Order.grand_total))
        .where(*where, Order.ship_country.is_not(None))
        .group_by(Order.ship_country, Order.currency)
    ):
        countries[(str(country), currency)] = (int(count), Decimal(total or 0))
    for currency, total, address in session.execute(
        select(Order.currency, Order.grand_total, Order.shipping_address).where(
            *where, Order.ship_country.is_(None)
        )
    ):
        country = (address or {}).get("country") or UNKNOWN_COUNTRY
        n, amount = countries[(str(country), currency)]
        countries[(str(country), currency)] = (n + 1, amount + Decimal(total))
    by_country = [
        SalesFigure(country, currency, n, amount)
        for (country, currency), (n, amount) in sorted(countries.items())
    ]
    by_channel.sort(key=lambda x: (x.key, x.currency))
    return SalesSummary(since, by_channel, by_country)


@dataclass(frozen=True)
class Attention:
    """One list of orders needing someone: the first few and how many there are."""

    kind: str  # on_hold | fraud_review | unrouted | late_to_ship
    count: int  # at most COUNT_CAP
    orders: list[Order]

    @property
    def capped(self) -> bool:
        """More than ``COUNT_CAP`` orders: shown as "1,000+" (a list that long needs the
        order list's filters, and counting all of it would slow the home page down)."""
        return self.count >= COUNT_CAP


COUNT_CAP = 1_000


def needing_attention(
    session: Session,
    *,
    scope: ColumnElement[bool] | None = None,
    limit: int = 5,
    now: datetime | None = None,
) -> list[Attention]:
    """Orders on hold, in fraud review, confirmed but not routed, allocated but not shipped
    in time: oldest first, ``limit`` of each."""
    moment = now or utcnow()
    open_statuses = [
        s.value
        for s in (
            OrderStatus.PLACED,
            OrderStatus.FRAUD_REVIEW,
            OrderStatus.CONFIRMED,
            OrderStatus.ALLOCATED,
            OrderStatus.PARTIALLY_FULFILLED,
        )
    ]
    lists: dict[str, list[ColumnElement[bool]]] = {
        "on_hold": [Order.on_hold.is_(True), Order.status.in_(open_statuses)],
        "fraud_review": [Order.status == OrderStatus.FRAUD_REVIEW.value],
        "unrouted": [
            Order.status == OrderStatus.CONFIRMED.value,
            Order.updated_at < moment - UNROUTED_AFTER,
        ],
        "late_to_ship": [
            Order.status.in_([OrderStatus.ALLOCATED.value, OrderStatus.PARTIALLY_FULFILLED.value]),
            Order.placed_at < moment - LATE_TO_SHIP_AFTER,
        ],
    }
    found = []
    for kind, conditions in lists.items():
        if scope is not None:
            conditions = [*conditions, scope]
        counted = select(Order.id).where(*conditions).limit(COUNT_CAP).subquery()
        count = session.scalar(select(func.count()).select_from(counted))
        rows = session.scalars(select(Order).where(*conditions).order_by(Order.id).limit(limit))
        found.append(Attention(kind, int(count or 0), list(rows)))
    return found
