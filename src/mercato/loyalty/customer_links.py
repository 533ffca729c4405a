"""Points follow a customer merge; what loyalty exports and erases about a person.

**Merge.** B's ledger entries, lots and order points move to A, so A's history is the
person's whole history (tier qualification counts B's earnings too) and each balance is
still the sum of its entries: A's balance is recomputed from its entries and B's becomes
zero. If one side owed points (a negative balance after a return of spent points), the
debt is paid from the other side's oldest lots, as a later credit would have paid it.
Undo moves exactly those rows back and recomputes both balances the same way; points A
spent after the merge stay spent by A.

**Erasure** keeps the ledger (amounts and dates, no personal data) under the customer id.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from mercato.customers.timeline import TimelineEntry
from mercato.db import utcnow
from mercato.loyalty import service
from mercato.loyalty.models import Account, Entry, Lot, OrderPoints
from mercato.merges import (
    CustomerMerged,
    CustomerMergeUndone,
    merge_ids,
    move_rows,
    restore_rows,
    table_of,
)
from mercato.personal_data import DomainPrivacy, Subject, record

_MOVED: tuple[Any, ...] = (Entry, Lot, OrderPoints)


def _lock_accounts(session: Session, ids: list[int]) -> None:
    now = utcnow()
    for customer_id in sorted(ids):
        service._ensure_account(session, customer_id, now)
    session.execute(
        select(Account.customer_id)
        .where(Account.customer_id.in_(sorted(ids)))
        .order_by(Account.customer_id)
        .with_for_update()
    ).all()


def _rebalance(session: Session, customer_id: int) -> None:
    """Balance = sum of entries; lots hold exactly the positive balance (oldest consumed)."""
    balance = int(
        session.scalar(
            select(func.coalesce(func.sum(Entry.points), 0)).where(Entry.customer_id == customer_id)
        )
        or 0
    )
    session.execute(
        update(Account)
        .where(Account.customer_id == customer_id)
        .values(balance=balance, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    in_lots = int(
        session.scalar(
            select(func.coalesce(func.sum(Lot.remaining), 0)).where(Lot.customer_id == customer_id)
        )
        or 0
    )
    excess = in_lots - max(balance, 0)
    if excess > 0:
        service._consume_lots(session, customer_id, excess)


def on_merged(session: Session, event: CustomerMerged) -> None:
    merge_id, from_id, into_id = merge_ids(event)
    _lock_accounts(session, [from_id, into_id])
    for model in _MOVED:
        move_rows(session, table_of(model), merge_id, from_id, into_id)
    for customer_id in (into_id, from_id):
        _rebalance(session, customer_id)
    service._evaluate_tier(session, into_id, utcnow(), service.get_config(session))


def on_merge_undone(session: Session, event: CustomerMergeUndone) -> None:
    merge_id, from_id, into_id = merge_ids(event)
    _lock_accounts(session, [from_id, into_id])
    for model in _MOVED:
        restore_rows(session, table_of(model), merge_id)
    config = service.get_config(session)
    for customer_id in (into_id, from_id):
        _rebalance(session, customer_id)
        service._evaluate_tier(session, customer_id, utcnow(), config)



_POINTS = {
    "earn": "earned",
    "redeem": "spent",
    "refund": "given back",
    "reverse": "taken back (return)",
    "expire": "expired",
    "adjust": "adjusted",
}


def timeline_entries(
    session: Session, customer_id: int, since: datetime | None, limit: int
) -> list[TimelineEntry]:
    query = select(Entry).where(Entry.customer_id == customer_id)
    if since is not None:
        query = query.where(Entry.created_at >= since)
    rows = session.scalars(query.order_by(Entry.created_at.desc()).limit(limit))
    return [
        TimelineEntry(
            at=e.created_at,
            kind="points",
            channel_id=e.channel_id,
            summary=(
                f"{e.points:+d} points {_POINTS.get(e.kind, e.kind)}, balance {e.balance_after}"
            ),
            ref_type=e.reference_type,
            ref_id=e.reference_id,
            data={"kind": e.kind, "points": e.points, "order_id": e.order_id},
        )
        for e in rows
    ]


def _export(session: Session, subject: Subject) -> dict[str, Any]:
    ids = subject.customer_ids
    accounts = session.scalars(select(Account).where(Account.customer_id.in_(ids)))
    entries = session.scalars(select(Entry).where(Entry.customer_id.in_(ids)).order_by(Entry.id))
    orders = session.scalars(
        select(OrderPoints).where(OrderPoints.customer_id.in_(ids)).order_by(OrderPoints.order_id)
    )
    return {
        "accounts": [record(a) for a in accounts],
        "entries": [record(e) for e in entries],
        "orders": [record(o) for o in orders],
    }


PRIVACY = DomainPrivacy("loyalty", export=_export)
