"""Stock levels: adjustments (receipts, damage, manual sales and returns), bulk receipts,
the per-row policy (safety stock, low-stock threshold), and the reads staff use.

Every change goes through the ledger's one primitive (:func:`mercato.inventory.ledger.change`)
or, for bulk receipts, through set-based statements that write the same movements and events.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, Table, and_, bindparam, insert, or_, select, update
from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.auth.service import audit
from mercato.db import utcnow
from mercato.errors import ValidationProblem
from mercato.events import publish_many
from mercato.inventory.ledger import (
    FREE_TO_SELL,
    Context,
    Guard,
    LevelSnapshot,
    Reason,
    change,
    change_event,
    check_location,
    check_quantity,
    check_variants,
    ensure_rows,
    level_row,
    movement_row,
    publish_change,
    shortage,
    snapshot_of,
)
from mercato.inventory.models import StockLevel, StockMovement
from mercato.pagination import Page, decode_id_cursor, decode_key_cursor, page_of

# Reasons staff may post directly as adjustments (the others come from their own flows).
MANUAL_REASONS = frozenset(
    {Reason.RECEIPT, Reason.SALE, Reason.RETURN, Reason.ADJUSTMENT, Reason.DAMAGE}
)


@dataclass(frozen=True)
class AdjustmentLine:
    variant_id: int
    quantity: int  # signed change of on hand
    reason: Reason


def adjust(
    session: Session, ctx: Context, location_id: int, lines: Sequence[AdjustmentLine]
) -> list[LevelSnapshot]:
    """Post signed on-hand changes at one location, all or nothing."""
    check_location(session, ctx.actor, location_id, "body.location_id")
    check_variants(session, [line.variant_id for line in lines], "body.lines")
    for i, line in enumerate(lines):
        _check_adjustment(i, line)
    ensure_rows(session, {(line.variant_id, location_id) for line in lines})
    results = []
    for line in sorted(lines, key=lambda x: x.variant_id):
        snap = change(
            session,
            ctx,
            line.variant_id,
            location_id,
            line.reason,
            on_hand_delta=line.quantity,
            guard=_adjustment_guard(line.reason),
        )
        if snap is None:
            raise shortage(session, line.variant_id, location_id, -line.quantity)
        results.append(snap)
    return results


def _check_adjustment(i: int, line: AdjustmentLine) -> None:
    check_quantity(line.quantity, f"body.lines[{i}].quantity", allow_negative=True)
    if line.reason not in MANUAL_REASONS:
        raise ValidationProblem.field(
            f"body.lines[{i}].reason", f"use one of {sorted(r.value for r in MANUAL_REASONS)}"
        )
    if line.reason in (Reason.RECEIPT, Reason.RETURN) and line.quantity < 0:
        raise ValidationProblem.field(f"body.lines[{i}].quantity", "a receipt adds stock")
    if line.reason in (Reason.SALE, Reason.DAMAGE) and line.quantity > 0:
        raise ValidationProblem.field(f"body.lines[{i}].quantity", f"a {line.reason} removes stock")


def _adjustment_guard(reason: Reason) -> Guard:
    """A sale, an adjustment or damage may take only units nobody reserved; receipts and
    returns only add."""
    guard = Guard.UNRESERVED if reason is Reason.SALE else Guard.PHYSICAL
    if reason is Reason.ADJUSTMENT or reason is Reason.DAMAGE:
        guard = Guard.UNRESERVED
    return guard


def receive_bulk(
    session: Session, ctx: Context, location_id: int, lines: Sequence[tuple[int, int]]
) -> int:
    """Add stock for many variants at one location in a few set-based statements.

    For initial loads and ERP stock imports: receipts only (quantities > 0), so no guard
    is needed; each row still gets its movement and its ``stock.changed`` event.
    """
    check_location(session, ctx.actor, location_id, "body.location_id")
    totals: dict[int, int] = defaultdict(int)
    for i, (variant_id, qty) in enumerate(lines):
        check_quantity(qty, f"body.lines[{i}].quantity")
        totals[variant_id] += qty
    check_variants(session, sorted(totals), "body.lines")
    ensure_rows(session, [(v, location_id) for v in totals])
    now = utcnow()
    _add_on_hand(session, location_id, totals, now)
    session.execute(
        insert(StockMovement),
        [
            movement_row(ctx, v, location_id, Reason.RECEIPT, q, 0, now)
            for v, q in sorted(totals.items())
        ],
    )
    _publish_receipts(session, location_id, totals)
    return len(totals)


def _add_on_hand(session: Session, location_id: int, totals: dict[int, int], now: datetime) -> None:
    """One executemany UPDATE: no guard, receipts only add."""
    table = StockLevel.__table__
    assert isinstance(table, Table)
    session.connection().execute(
        update(table)
        .where(table.c.variant_id == bindparam("v"), table.c.location_id == location_id)
        .values(on_hand=table.c.on_hand + bindparam("q"), updated_at=now),
        [{"v": v, "q": q} for v, q in sorted(totals.items())],
    )


def _publish_receipts(session: Session, location_id: int, totals: dict[int, int]) -> None:
    rows = session.execute(
        select(
            StockLevel.variant_id,
            StockLevel.on_hand,
            StockLevel.reserved,
            StockLevel.safety_stock,
            StockLevel.incoming,
            StockLevel.low_stock_threshold,
        ).where(StockLevel.location_id == location_id, StockLevel.variant_id.in_(sorted(totals)))
    ).all()
    events = []
    for variant_id, on_hand, reserved, safety, incoming, threshold in rows:
        snap = LevelSnapshot(
            variant_id, location_id, on_hand, reserved, safety, incoming, threshold
        )
        events.append(change_event(snap, Reason.RECEIPT, totals[variant_id], 0))
    publish_many(session, events)


def set_policy(
    session: Session,
    actor: Principal,
    variant_id: int,
    location_id: int,
    *,
    safety_stock: int | None,
    low_stock_threshold: int | None,
    clear_threshold: bool = False,
) -> LevelSnapshot:
    check_location(session, actor, location_id, "path.location_id")
    check_variants(session, [variant_id], "path")
    ensure_rows(session, [(variant_id, location_id)])
    values: dict[str, Any] = {"updated_at": utcnow()}
    if safety_stock is not None:
        values["safety_stock"] = safety_stock
    if low_stock_threshold is not None or clear_threshold:
        values["low_stock_threshold"] = low_stock_threshold
    session.execute(
        update(StockLevel)
        .where(StockLevel.variant_id == variant_id, StockLevel.location_id == location_id)
        .values(values)
    )
    level = level_row(session, variant_id, location_id)
    assert level is not None
    snap = snapshot_of(level)
    audit(
        session,
        actor,
        "stock.policy_set",
        "stock",
        f"{variant_id}:{location_id}",
        {k: v for k, v in values.items() if k != "updated_at"},
    )
    publish_change(session, snap, Reason.ADJUSTMENT, 0, 0)
    return snap


# --- reads for staff ------------------------------------------------------------------------


def list_levels(
    session: Session,
    *,
    variant_id: int | None = None,
    variant_ids: Sequence[int] | None = None,
    location_id: int | None = None,
    location_ids: frozenset[int] | None = None,
    low_only: bool = False,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[StockLevel]:
    query: Select[Any] = select(StockLevel).order_by(StockLevel.variant_id, StockLevel.location_id)
    if variant_id is not None:
        query = query.where(StockLevel.variant_id == variant_id)
    if variant_ids is not None:
        query = query.where(StockLevel.variant_id.in_(sorted(set(variant_ids))))
    if location_id is not None:
        query = query.where(StockLevel.location_id == location_id)
    if location_ids is not None:
        query = query.where(StockLevel.location_id.in_(sorted(location_ids)))
    if low_only:
        query = query.where(
            StockLevel.low_stock_threshold.is_not(None),
            StockLevel.low_stock_threshold > FREE_TO_SELL,
        )
    after = decode_key_cursor(cursor, 2)
    if after is not None:
        v, loc = after
        query = query.where(
            or_(
                StockLevel.variant_id > v,
                and_(StockLevel.variant_id == v, StockLevel.location_id > loc),
            )
        )
    rows: list[StockLevel] = list(session.scalars(query.limit(limit + 1)))
    return page_of(rows, limit, key=lambda r: [r.variant_id, r.location_id])


def stocked_variants(
    session: Session,
    *,
    variant_ids: Sequence[int] | None = None,
    location_ids: frozenset[int] | None = None,
    low_only: bool = False,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[int]:
    """Variants with a stock row at ``location_ids`` (None: anywhere), by id: the rows of a
    variants x locations grid, paged by variant so that a row never splits across pages."""
    query: Select[Any] = select(StockLevel.variant_id).distinct().order_by(StockLevel.variant_id)
    if variant_ids is not None:
        query = query.where(StockLevel.variant_id.in_(sorted(set(variant_ids))))
    if location_ids is not None:
        query = query.where(StockLevel.location_id.in_(sorted(location_ids)))
    if low_only:
        query = query.where(
            StockLevel.low_stock_threshold.is_not(None),
            StockLevel.low_stock_threshold > FREE_TO_SELL,
        )
    after = decode_id_cursor(cursor)
    if after is not None:
        query = query.where(StockLevel.variant_id > after)
    rows = [int(v) for v in session.scalars(query.limit(limit + 1))]
    return page_of(rows, limit, key=lambda v: v)


def get_level(session: Session, variant_id: int, location_id: int) -> LevelSnapshot:
    level = level_row(session, variant_id, location_id)
    if level is None:
        return LevelSnapshot(variant_id, location_id, 0, 0, 0, 0, None)
    return snapshot_of(level)


def list_movements(
    session: Session,
    *,
    variant_id: int | None = None,
    location_id: int | None = None,
    reason: str | None = None,
    reference_type: str | None = None,
    reference_id: str | None = None,
    location_ids: frozenset[int] | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[StockMovement]:
    """Newest first; ``location_ids`` (None: all) limits them to a store user's locations."""
    query = select(StockMovement).order_by(StockMovement.id.desc())
    if variant_id is not None:
        query = query.where(StockMovement.variant_id == variant_id)
    if location_id is not None:
        query = query.where(StockMovement.location_id == location_id)
    if location_ids is not None:
        query = query.where(StockMovement.location_id.in_(sorted(location_ids)))
    if reason:
        query = query.where(StockMovement.reason == reason)
    if reference_type:
        query = query.where(StockMovement.reference_type == reference_type)
    if reference_id:
        query = query.where(StockMovement.reference_id == reference_id)
    after = decode_id_cursor(cursor)
    if after is not None:
        query = query.where(StockMovement.id < after)
    return page_of(list(session.scalars(query.limit(limit + 1))), limit, key=lambda m: m.id)
