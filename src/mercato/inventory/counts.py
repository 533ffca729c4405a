"""Cycle counts: on hand is set to what staff counted; each difference is a ``count``
movement. A count below what orders have reserved is refused (those units are promised).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from mercato.auth.service import audit
from mercato.db import utcnow
from mercato.errors import Conflict, ValidationProblem
from mercato.inventory.ledger import (
    MAX_QUANTITY,
    Context,
    Guard,
    Reason,
    change,
    check_location,
    check_variants,
    ensure_rows,
)
from mercato.inventory.models import StockCount, StockCountLine, StockLevel


def post_count(
    session: Session, ctx: Context, location_id: int, counted: Sequence[tuple[int, int]]
) -> tuple[StockCount, list[StockCountLine]]:
    """Set on hand to what was counted; each difference becomes a ``count`` movement."""
    check_location(session, ctx.actor, location_id, "body.location_id")
    variant_ids = _check_counted(session, counted)
    ensure_rows(session, [(v, location_id) for v in variant_ids])
    count = StockCount(location_id=location_id, note=ctx.note, created_at=utcnow())
    session.add(count)
    session.flush()
    sub = Context(ctx.actor, None, "count", str(count.id), ctx.note)
    levels = _locked_levels(session, location_id, variant_ids)
    lines = [
        _count_line(session, sub, count, levels[variant_id], qty)
        for variant_id, qty in sorted(counted)
    ]
    session.add_all(lines)
    session.flush()
    audit(
        session,
        ctx.actor,
        "stock.counted",
        "count",
        count.id,
        {
            "location_id": location_id,
            "differences": {str(x.variant_id): x.counted - x.expected for x in lines},
        },
    )
    return count, lines


def _check_counted(session: Session, counted: Sequence[tuple[int, int]]) -> list[int]:
    """The variants counted: at least one, each once, known, counted 0 to MAX_QUANTITY."""
    if not counted:
        raise ValidationProblem.field("body.lines", "at least one line")
    variant_ids = [v for v, _ in counted]
    if len(set(variant_ids)) != len(variant_ids):
        raise ValidationProblem.field("body.lines", "a variant is listed twice")
    check_variants(session, variant_ids, "body.lines")
    for i, (_, qty) in enumerate(counted):
        if qty < 0 or qty > MAX_QUANTITY:
            raise ValidationProblem.field(f"body.lines[{i}].counted", f"0 to {MAX_QUANTITY}")
    return variant_ids


def _locked_levels(
    session: Session, location_id: int, variant_ids: Sequence[int]
) -> dict[int, StockLevel]:
    """The counted rows, locked FOR UPDATE and read afresh: nothing moves while counting."""
    return {
        lvl.variant_id: lvl
        for lvl in session.scalars(
            select(StockLevel)
            .where(StockLevel.location_id == location_id, StockLevel.variant_id.in_(variant_ids))
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    }


def _count_line(
    session: Session, sub: Context, count: StockCount, level: StockLevel, qty: int
) -> StockCountLine:
    """Book the difference between ``qty`` counted and the row's on hand."""
    variant_id = level.variant_id
    if qty < level.reserved:
        raise Conflict(
            f"variant {variant_id}: counted {qty} but {level.reserved} are reserved for "
            "orders; release or re-route those reservations first",
            code="count-below-reserved",
            extra={"variant_id": variant_id, "reserved": level.reserved},
        )
    expected = level.on_hand
    delta = qty - expected
    if delta:
        change(
            session,
            sub,
            variant_id,
            level.location_id,
            Reason.COUNT,
            on_hand_delta=delta,
            guard=Guard.PHYSICAL,
        )
    return StockCountLine(count_id=count.id, variant_id=variant_id, expected=expected, counted=qty)
