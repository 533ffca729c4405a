"""Following a customer merge in a domain's own tables, and undoing it exactly.

When staff merge profile B into A, the customers domain publishes ``customer.merged``
(``into``, ``from``, ``merge_id``); each domain that keeps a customer id (orders, carts,
payments, support cases, points, consents) re-points its own rows from B to A in its
subscriber with :func:`move_rows`, which records which rows moved under the merge id. On
``customer.merge_undone`` :func:`restore_rows` moves exactly those rows back, and none
that were created for A after the merge. Both are idempotent per (merge, table), so a
redelivered event changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Column, String, Table, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from mercato.db import Base, BigId, JSONType, UTCDateTime, utcnow
from mercato.event_types import DomainEvent, json_key
from mercato.manifest import Subscription


@dataclass(frozen=True, kw_only=True)
class MergeFacts(DomainEvent):
    AGGREGATE = "customer"
    KEY = "into_id"

    into_id: int = field(metadata=json_key("into"))
    from_id: int = field(metadata=json_key("from"))
    merge_id: str


@dataclass(frozen=True, kw_only=True)
class CustomerMerged(MergeFacts):
    """Staff merged profile ``from`` into ``into``: every domain re-points its rows."""

    TYPE = "customer.merged"


@dataclass(frozen=True, kw_only=True)
class CustomerMergeUndone(MergeFacts):
    """A merge was undone: exactly the rows it moved go back to ``from``."""

    TYPE = "customer.merge_undone"


class MergeMove(Base):
    """The rows of one table a merge re-pointed, so that undo moves exactly them back."""

    __tablename__ = "customer_merge_moves"

    merge_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    table_name: Mapped[str] = mapped_column(String(60), primary_key=True)
    from_id: Mapped[int] = mapped_column(BigId)
    into_id: Mapped[int] = mapped_column(BigId)
    row_ids: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    moved_at: Mapped[Any] = mapped_column(UTCDateTime, default=utcnow)
    restored_at: Mapped[Any] = mapped_column(UTCDateTime, nullable=True)


def merge_ids(event: MergeFacts) -> tuple[str, int, int]:
    """(merge id, from id, into id) of a ``customer.merged`` / ``merge_undone`` event."""
    return event.merge_id, event.from_id, event.into_id


def _key(table: Table) -> Column[Any]:
    (key,) = table.primary_key.columns
    return key


def move_rows(
    session: Session,
    table: Table,
    merge_id: str,
    from_id: int,
    into_id: int,
    column: str = "customer_id",
) -> int:
    """Re-point ``table`` rows of ``from_id`` to ``into_id``; how many moved."""
    if session.get(MergeMove, (merge_id, table.name)) is not None:
        return 0
    key, owner = _key(table), table.c[column]
    ids = list(session.scalars(select(key).where(owner == from_id).with_for_update()))
    if ids:
        session.execute(update(table).where(key.in_(ids)).values({column: into_id}))
    session.add(
        MergeMove(
            merge_id=merge_id,
            table_name=table.name,
            from_id=from_id,
            into_id=into_id,
            row_ids=ids,
        )
    )
    session.flush()
    return len(ids)


def restore_rows(session: Session, table: Table, merge_id: str, column: str = "customer_id") -> int:
    """Move back the rows a merge moved (those still on the merged-into profile)."""
    move = session.get(MergeMove, (merge_id, table.name), with_for_update=True)
    if move is None or move.restored_at is not None:
        return 0
    key, owner = _key(table), table.c[column]
    restored = 0
    for start in range(0, len(move.row_ids), 500):
        chunk = move.row_ids[start : start + 500]
        result = session.execute(
            update(table)
            .where(key.in_(chunk), owner == move.into_id)
            .values({column: move.from_id})
        )
        restored += int(getattr(result, "rowcount", 0) or 0)
    move.restored_at = utcnow()
    return restored


def moved_rows(session: Session, merge_id: str, table: Table) -> list[Any]:
    move = session.get(MergeMove, (merge_id, table.name))
    return [] if move is None else list(move.row_ids)


def table_of(model: Any) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


def follow_merges(
    domain: str, models: Sequence[Any], column: str = "customer_id"
) -> list[Subscription]:
    """``domain``'s subscriptions to merges: its ``models``' rows follow the merged
    profile, and go back on undo."""
    tables = [table_of(m) for m in models]

    def merged(session: Session, event: CustomerMerged) -> None:
        merge_id, from_id, into_id = merge_ids(event)
        for table in tables:
            move_rows(session, table, merge_id, from_id, into_id, column)

    def undone(session: Session, event: CustomerMergeUndone) -> None:
        merge_id, _, _ = merge_ids(event)
        for table in tables:
            restore_rows(session, table, merge_id, column)

    # Stable, distinct subscriber names (the dispatcher records which ones succeeded).
    merged.__qualname__ = f"follow_merges.{domain}.merged"
    undone.__qualname__ = f"follow_merges.{domain}.undone"
    return [Subscription(CustomerMerged, merged), Subscription(CustomerMergeUndone, undone)]
