"""Derived figures of a profile, kept current from order events.

Every placed order becomes a *fact* (order id, profile, channel, store, currency, total,
when); ``customer_figures`` holds per profile and currency the order count and lifetime
value of the facts not cancelled. Figures are **net of refunds**: money refunded to the
customer's payments (``payment.refunded``: returns, cancelled lines, refunds made at the
provider) and returns refunded as store credit (``return.refunded``) lower the fact's
total and the lifetime value, never below zero; the order still counts as an order. A
refund of a cancelled order changes nothing (the cancellation took its whole value out).

Each change of a fact (placed, cancelled, moved by a merge or its undo) is one statement
on that fact row that also returns what changed (a refund locks the fact row), and the
matching delta is added to the figures with an atomic ``count = count + :n`` upsert:
figures are never read, computed in Python and written back. Events are deduplicated on
their id, and an order is counted once whatever the events say (its fact is keyed by the
order id).

**RFM** (computed when read, since recency moves with the clock):

* recency, days since the last purchase: <=30 -> 5, <=90 -> 4, <=180 -> 3, <=365 -> 2, else 1;
* frequency, orders not cancelled: >=10 -> 5, >=5 -> 4, >=3 -> 3, 2 -> 2, 1 -> 1;
* monetary, the lifetime value in the profile's main currency (the one it ordered in
  most) ranked among every profile with orders in that currency, by quintile of its
  mid-rank: bottom fifth -> 1 ... top fifth -> 5 (amounts in different currencies are
  never compared).

Segments, first rule that matches: ``champions`` R>=4, F>=4, M>=4; ``loyal`` R>=3, F>=4;
``new`` R=5, F=1; ``promising`` R>=4, F<=3; ``need_attention`` R=3, F<=3;
``at_risk`` R<=2 and (F>=3 or M>=4); ``hibernating`` R=2; ``lost`` R=1.
A profile with no order has no RFM scores and the segment ``prospect``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session

from mercato.customers import profiles
from mercato.customers.models import CustomerFigures, CustomerOrderFact, CustomerSeenEvent
from mercato.db import utcnow
from mercato.money import quantize
from mercato.orders.event_types import OrderCancelled, OrderCustomerLinked, OrderFacts
from mercato.payments.event_types import PaymentRefunded
from mercato.returns.event_types import ReturnRefunded

RECENCY_DAYS = (30, 90, 180, 365)
FREQUENCY_ORDERS = (10, 5, 3, 2)
PROSPECT = "prospect"


def claim_event(session: Session, event_id: str) -> bool:
    """True the first time an event is seen; False for a redelivery."""
    inserted = session.execute(
        profiles.insert_for(session, CustomerSeenEvent)
        .values(event_id=event_id, seen_at=utcnow())
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(CustomerSeenEvent.event_id)
    ).scalar_one_or_none()
    return inserted is not None


def add_to_figures(
    session: Session, customer_id: int, currency: str, orders: int, amount: Decimal
) -> None:
    """Atomic delta: concurrent events for one profile all count."""
    stmt = profiles.insert_for(session, CustomerFigures).values(
        customer_id=customer_id, currency=currency, order_count=orders, lifetime_value=amount
    )
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=["customer_id", "currency"],
            set_={
                "order_count": CustomerFigures.order_count + stmt.excluded.order_count,
                "lifetime_value": CustomerFigures.lifetime_value + stmt.excluded.lifetime_value,
            },
        )
    )


def apply_moves(session: Session, moves: Iterable[tuple[int, int, Any]]) -> None:
    """Apply (from, to, fact row) moves: each live fact's order leaves one profile's figures
    and joins the other's."""
    deltas: dict[tuple[int, str], tuple[int, Decimal]] = {}
    for source, target, fact in moves:
        if fact.cancelled_at is not None:
            continue
        for customer_id, sign in ((source, -1), (target, 1)):
            count, value = deltas.get((customer_id, fact.currency), (0, Decimal(0)))
            deltas[(customer_id, fact.currency)] = (count + sign, value + sign * fact.grand_total)
    for (customer_id, currency), (count, value) in sorted(deltas.items()):
        add_to_figures(session, customer_id, currency, count, value)


def move_facts(
    session: Session, source: int, target: int, order_ids: list[int] | None = None
) -> list[int]:
    """Re-point facts from one profile to another (all of them, or these orders)."""
    query = update(CustomerOrderFact).where(CustomerOrderFact.customer_id == source)
    if order_ids is not None:
        if not order_ids:
            return []
        query = query.where(CustomerOrderFact.order_id.in_(order_ids))
    rows = session.execute(
        query.values(customer_id=target).returning(
            CustomerOrderFact.order_id,
            CustomerOrderFact.currency,
            CustomerOrderFact.grand_total,
            CustomerOrderFact.cancelled_at,
        )
    ).all()
    apply_moves(session, [(source, target, row) for row in rows])
    return sorted(row.order_id for row in rows)


def on_order_linked(session: Session, event: OrderCustomerLinked) -> None:
    """A guest order attached to a profile counts from then on, as bought when it was."""
    if not event.bought or event.status == "cancelled":
        return
    _count_order(session, event, event.placed_at)


def on_order_placed(session: Session, event: OrderFacts) -> None:
    _count_order(session, event, None)


def _count_order(session: Session, event: OrderFacts, placed_at: datetime | None) -> None:
    if event.customer_id is None or not claim_event(session, event.envelope.id):
        return
    # The lock orders this insert with merges of the same profile (see profiles.lock_root).
    root = profiles.lock_root(session, event.customer_id)
    if root is None:
        return
    total = event.grand_total
    inserted = session.execute(
        profiles.insert_for(session, CustomerOrderFact)
        .values(
            order_id=event.order_id,
            customer_id=root,
            channel_id=event.channel_id,
            store_location_id=event.store_location_id,
            currency=event.currency,
            grand_total=total,
            placed_at=placed_at or event.envelope.time,
            cancelled_at=None,
        )
        .on_conflict_do_nothing(index_elements=["order_id"])
        .returning(CustomerOrderFact.order_id)
    ).scalar_one_or_none()
    if inserted is not None:
        add_to_figures(session, root, event.currency, 1, total)


def on_order_cancelled(session: Session, event: OrderCancelled) -> None:
    if not claim_event(session, event.envelope.id):
        return
    row = session.execute(
        update(CustomerOrderFact)
        .where(
            CustomerOrderFact.order_id == event.order_id, CustomerOrderFact.cancelled_at.is_(None)
        )
        .values(cancelled_at=event.envelope.time)
        .returning(
            CustomerOrderFact.customer_id,
            CustomerOrderFact.currency,
            CustomerOrderFact.grand_total,
            CustomerOrderFact.placed_at,
        )
    ).one_or_none()
    if row is not None:
        if row.placed_at is not None:
            add_to_figures(session, row.customer_id, row.currency, -1, -row.grand_total)
        return
    _remember_cancelled(session, event)


def on_payment_refunded(session: Session, event: PaymentRefunded) -> None:
    """Money went back to a payment of an order: its value leaves the figures."""
    if event.order_id is None:
        return
    if not claim_event(session, event.envelope.id):
        return
    _net_refund(session, event.order_id, event.refunded)


def on_return_refunded(session: Session, event: ReturnRefunded) -> None:
    """A return refunded as store credit (refunds to payments arrive as payment.refunded)."""
    if event.refund_method != "store_credit":
        return
    if not claim_event(session, event.envelope.id):
        return
    _net_refund(session, event.order_id, event.refunded_total)


def _net_refund(session: Session, order_id: int, amount: Decimal) -> None:
    if amount <= 0:
        return
    fact = session.scalar(
        select(CustomerOrderFact)
        .where(CustomerOrderFact.order_id == order_id, CustomerOrderFact.cancelled_at.is_(None))
        .with_for_update()
    )
    if fact is None or fact.placed_at is None:
        return
    taken = min(amount, fact.grand_total)
    if taken <= 0:
        return
    session.execute(
        update(CustomerOrderFact)
        .where(CustomerOrderFact.order_id == order_id)
        .values(grand_total=CustomerOrderFact.grand_total - taken)
        .execution_options(synchronize_session=False)
    )
    add_to_figures(session, fact.customer_id, fact.currency, 0, -taken)


def _remember_cancelled(session: Session, event: OrderCancelled) -> None:
    """A cancellation seen before (or without) its placement: a later ``order.placed``
    redelivered out of order must then not count the order."""
    if event.customer_id is None:
        return
    root = profiles.root_id(session, event.customer_id)
    if root is None:
        return
    session.execute(
        profiles.insert_for(session, CustomerOrderFact)
        .values(
            order_id=event.order_id,
            customer_id=root,
            channel_id=event.channel_id,
            currency=event.currency,
            grand_total=event.grand_total,
            placed_at=None,
            cancelled_at=event.envelope.time,
        )
        .on_conflict_do_nothing(index_elements=["order_id"])
    )


@dataclass(frozen=True)
class CurrencyFigures:
    currency: str
    order_count: int
    lifetime_value: Decimal
    average_order_value: Decimal


@dataclass(frozen=True)
class Rfm:
    recency: int
    frequency: int
    monetary: int


@dataclass(frozen=True)
class Figures:
    order_count: int
    by_currency: list[CurrencyFigures]
    first_purchase_at: datetime | None
    last_purchase_at: datetime | None
    favourite_channel_id: int | None
    favourite_store_id: int | None
    rfm: Rfm | None
    segment: str


def recency_score(days: int) -> int:
    for score, limit in zip((5, 4, 3, 2), RECENCY_DAYS, strict=True):
        if days <= limit:
            return score
    return 1


def frequency_score(orders: int) -> int:
    for score, least in zip((5, 4, 3, 2), FREQUENCY_ORDERS, strict=True):
        if orders >= least:
            return score
    return 1


def monetary_score(lower: int, equal: int, total: int) -> int:
    """Quintile of the mid-rank: ``lower`` profiles below, ``equal`` tied (self included)."""
    if total <= 0:
        return 1
    return min(5, 1 + (5 * (2 * lower + equal)) // (2 * total))


def segment(rfm: Rfm | None) -> str:
    if rfm is None:
        return PROSPECT
    r, f, m = rfm.recency, rfm.frequency, rfm.monetary
    if r >= 4 and f >= 4 and m >= 4:
        return "champions"
    if r >= 3 and f >= 4:
        return "loyal"
    if r == 5 and f == 1:
        return "new"
    if r >= 4:
        return "promising"
    if r == 3:
        return "need_attention"
    if f >= 3 or m >= 4:
        return "at_risk"
    return "hibernating" if r == 2 else "lost"


def _by_currency(session: Session, customer_id: int) -> list[CurrencyFigures]:
    rows = session.scalars(
        select(CustomerFigures)
        .where(CustomerFigures.customer_id == customer_id, CustomerFigures.order_count > 0)
        .order_by(CustomerFigures.order_count.desc(), CustomerFigures.currency)
    ).all()
    return [
        CurrencyFigures(
            currency=row.currency,
            order_count=row.order_count,
            lifetime_value=quantize(row.lifetime_value, row.currency),
            average_order_value=quantize(row.lifetime_value / row.order_count, row.currency),
        )
        for row in rows
    ]


def _favourite(session: Session, customer_id: int, column: Any) -> int | None:
    found = session.execute(
        select(column, func.count().label("n"))
        .where(
            CustomerOrderFact.customer_id == customer_id,
            CustomerOrderFact.cancelled_at.is_(None),
            column.is_not(None),
        )
        .group_by(column)
        .order_by(func.count().desc(), column)
        .limit(1)
    ).first()
    return None if found is None else int(found[0])


def _monetary(session: Session, main: CurrencyFigures) -> int:
    value = main.lifetime_value
    counts = session.execute(
        select(
            func.count(),
            func.sum(case((CustomerFigures.lifetime_value < value, 1), else_=0)),
            func.sum(case((CustomerFigures.lifetime_value == value, 1), else_=0)),
        ).where(CustomerFigures.currency == main.currency, CustomerFigures.order_count > 0)
    ).one()
    total, lower, equal = (int(x or 0) for x in counts)
    return monetary_score(lower, max(equal, 1), max(total, 1))


def figures_of(session: Session, customer_id: int, now: datetime | None = None) -> Figures:
    by_currency = _by_currency(session, customer_id)
    first, last = session.execute(
        select(func.min(CustomerOrderFact.placed_at), func.max(CustomerOrderFact.placed_at)).where(
            CustomerOrderFact.customer_id == customer_id,
            CustomerOrderFact.cancelled_at.is_(None),
        )
    ).one()
    count = sum(c.order_count for c in by_currency)
    rfm = None
    if by_currency and last is not None:
        last = _aware(last)
        days = max(0, ((now or utcnow()) - last).days)
        rfm = Rfm(recency_score(days), frequency_score(count), _monetary(session, by_currency[0]))
    return Figures(
        order_count=count,
        by_currency=by_currency,
        first_purchase_at=None if first is None else _aware(first),
        last_purchase_at=last,
        favourite_channel_id=_favourite(session, customer_id, CustomerOrderFact.channel_id),
        favourite_store_id=_favourite(session, customer_id, CustomerOrderFact.store_location_id),
        rfm=rfm,
        segment=segment(rfm),
    )


def _aware(value: datetime) -> datetime:
    # MIN/MAX over a UTC column come back as the driver's raw value, naive on SQLite.
    from datetime import UTC

    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
