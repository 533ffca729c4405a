"""Returns follow a customer merge; what returns export and erase about a person.

Erasure keeps every return, line, inspection result and settlement (refunds must still
reconcile with payments) and drops the free text the person or staff wrote about it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from mercato.customers.timeline import TimelineEntry
from mercato.personal_data import Blocker, DomainPrivacy, Subject, record
from mercato.returns.models import Return, ReturnLine, ReturnSettlement, ReturnTransition
from mercato.returns.state import ReturnStatus


def timeline_entries(
    session: Session, customer_id: int, since: datetime | None, limit: int
) -> list[TimelineEntry]:
    query = select(Return).where(Return.customer_id == customer_id)
    if since is not None:
        query = query.where(Return.created_at >= since)
    rows = session.scalars(query.order_by(Return.created_at.desc()).limit(limit))
    return [
        TimelineEntry(
            at=r.created_at,
            kind="return",
            channel_id=r.origin_channel_id or r.channel_id,
            summary=f"Return {r.number} of order {r.order_number}: {r.status}"
            + (f", {r.refunded_total.normalize():f} {r.currency} back" if r.refunded_total else ""),
            ref_type="return",
            ref_id=str(r.id),
            data={"number": r.number, "status": r.status, "order_number": r.order_number},
        )
        for r in rows
    ]


def _returns(session: Session, subject: Subject) -> list[Return]:
    return list(
        session.scalars(
            select(Return).where(Return.customer_id.in_(subject.customer_ids)).order_by(Return.id)
        )
    )


def _grouped(rows: Any) -> dict[int, list[dict[str, Any]]]:
    grouped: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(row.return_id, []).append(record(row))
    return grouped


def _export(session: Session, subject: Subject) -> list[dict[str, Any]]:
    returns = _returns(session, subject)
    ids = [r.id for r in returns]
    if not ids:
        return []
    lines = _grouped(
        session.scalars(
            select(ReturnLine).where(ReturnLine.return_id.in_(ids)).order_by(ReturnLine.id)
        )
    )
    moves = _grouped(
        session.scalars(
            select(ReturnTransition)
            .where(ReturnTransition.return_id.in_(ids))
            .order_by(ReturnTransition.id)
        )
    )
    settlements = _grouped(
        session.scalars(
            select(ReturnSettlement)
            .where(ReturnSettlement.return_id.in_(ids))
            .order_by(ReturnSettlement.id)
        )
    )
    return [
        {
            **record(r),
            "lines": lines.get(r.id, []),
            "transitions": moves.get(r.id, []),
            "settlements": settlements.get(r.id, []),
        }
        for r in returns
    ]


def _erase(session: Session, subject: Subject) -> int:
    returns = _returns(session, subject)
    ids = [r.id for r in returns]
    for ret in returns:
        ret.note = None
    if ids:
        for line in session.scalars(select(ReturnLine).where(ReturnLine.return_id.in_(ids))):
            line.note = None
    return len(returns)


# Returns that need nothing more from the person.
SETTLED = frozenset(
    {ReturnStatus.REFUNDED, ReturnStatus.CLOSED, ReturnStatus.REJECTED, ReturnStatus.CANCELLED}
)


def _returns_in_progress(session: Session, subject: Subject) -> list[Blocker]:
    """Returns still on their way or waiting for their refund or exchange (guest orders'
    included): the parcel back, the refund and any replacement need the person's details."""
    query = select(Return).where(
        or_(
            Return.customer_id.in_(subject.customer_ids),
            Return.order_id.in_(sorted(subject.order_ids)),
        )
    )
    return [
        Blocker("return", r.id, r.number, r.status, "in progress: refund or close it first")
        for r in session.scalars(query.order_by(Return.id))
        if ReturnStatus(r.status) not in SETTLED
    ]


PRIVACY = DomainPrivacy("returns", export=_export, erase=_erase, blocks=_returns_in_progress)
