"""An order's points: pending when placed, granted once, reversed on return.

When an order is placed its points are computed and shown as *pending*; they are granted
once, when the order is fulfilled (delivered or picked up count too), and taken back in
proportion when it is returned. The rules (currency rate, category multipliers, tier
multiplier, campaigns) are in :mod:`mercato.loyalty.rules`; the part of an order paid with
points earns nothing.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from mercato.catalog import service as catalog
from mercato.db import utcnow
from mercato.errors import NotFound
from mercato.loyalty import rules
from mercato.loyalty._common import SYSTEM, TENDER_METHOD, Kind, OrderPointsStatus
from mercato.loyalty.config import Config, get_config
from mercato.loyalty.ledger import Posting, _earn, _ensure_account, _reverse
from mercato.loyalty.models import Account, Entry, OrderPoints, ProcessedEvent
from mercato.loyalty.tiers import tier_of
from mercato.orders import service as orders
from mercato.payments import service as payments

if TYPE_CHECKING:
    from mercato.orders.models import Order

log = logging.getLogger(__name__)


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
