"""The stock ledger: every change of stock is one conditional UPDATE plus one movement.

Invariants, for every (variant, location):

* ``on_hand`` = sum of ``on_hand_delta`` and ``reserved`` = sum of ``reserved_delta`` of
  its movements (``verify`` proves it);
* ``0 <= reserved <= on_hand`` (also CHECK constraints in the schema);
* a hold or sale never takes more than on_hand - reserved - safety_stock.

The guards live in the WHERE clause of the UPDATE, so two processes racing for the last
unit cannot both win: the database serialises the row and re-checks the condition.

This module holds that one primitive (:func:`change`), the types every stock use case
shares, the validation of every entry point, and the verification of the invariants.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Subquery, and_, case, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.catalog import service as catalog
from mercato.db import utcnow
from mercato.errors import Conflict, FieldError, ValidationProblem
from mercato.events import publish
from mercato.inventory.event_types import StockChanged, StockLow
from mercato.inventory.models import Reservation, StockLevel, StockMovement
from mercato.locations import service as locations

MAX_QUANTITY = 1_000_000


class Reason(StrEnum):
    RECEIPT = "receipt"
    SALE = "sale"
    RETURN = "return"
    ADJUSTMENT = "adjustment"
    COUNT = "count"
    TRANSFER_OUT = "transfer_out"
    TRANSFER_IN = "transfer_in"
    DAMAGE = "damage"
    RESERVATION = "reservation"
    RELEASE = "release"


# The API document names this enum after its module (another Reason exists); it keeps the
# name of the public face it has always been reached through.
Reason.__module__ = "mercato.inventory.service"


class Guard(StrEnum):
    """How much of the stock a decrease may take."""

    AVAILABLE = "available"  # on_hand - reserved - safety_stock (online sales, holds)
    UNRESERVED = "unreserved"  # on_hand - reserved (a store sale of the unit in hand)
    PHYSICAL = "physical"  # on_hand (fulfilling units that are already reserved)


class ReservationStatus(StrEnum):
    HELD = "held"
    ALLOCATED = "allocated"
    FULFILLED = "fulfilled"
    RELEASED = "released"
    EXPIRED = "expired"


ACTIVE_RESERVATION = (ReservationStatus.HELD.value, ReservationStatus.ALLOCATED.value)


class InsufficientStock(Conflict):
    code = "insufficient-stock"
    title = "Not enough stock"


@dataclass(frozen=True)
class Context:
    """Who moves stock, through which channel, for what (written on every movement)."""

    actor: Principal
    channel_id: int | None = None
    reference_type: str | None = None
    reference_id: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class LevelSnapshot:
    variant_id: int
    location_id: int
    on_hand: int
    reserved: int
    safety_stock: int
    incoming: int
    low_stock_threshold: int | None

    @property
    def available(self) -> int:
        return max(0, self.on_hand - self.reserved - self.safety_stock)


@dataclass
class _Pending:
    """Events of one transaction, published together (one stock.changed per row touched)."""

    rows: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)


# What a row can still give: on hand, less what is reserved and the safety stock.
FREE_TO_SELL = StockLevel.on_hand - StockLevel.reserved - StockLevel.safety_stock


# --- the one primitive that changes stock ---------------------------------------------------


def ensure_rows(session: Session, keys: Iterable[tuple[int, int]]) -> None:
    values = [
        {
            "variant_id": v,
            "location_id": loc,
            "on_hand": 0,
            "reserved": 0,
            "safety_stock": 0,
            "incoming": 0,
            "updated_at": utcnow(),
        }
        for v, loc in keys
    ]
    if not values:
        return
    dialect = session.get_bind().dialect.name
    maker = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = maker(StockLevel).on_conflict_do_nothing(index_elements=["variant_id", "location_id"])
    # executemany: one cached statement, batched by the driver, however many rows.
    session.connection().execute(stmt, values)


def _guard_condition(guard: Guard, on_hand_delta: int, reserved_delta: int) -> Any:
    new_on_hand = StockLevel.on_hand + on_hand_delta
    new_reserved = StockLevel.reserved + reserved_delta
    base = and_(new_on_hand >= 0, new_reserved >= 0, new_reserved <= new_on_hand)
    consumes = on_hand_delta - reserved_delta < 0  # the change shrinks what is free to sell
    if not consumes or guard is Guard.PHYSICAL:
        return base
    if guard is Guard.UNRESERVED:
        return and_(base, new_on_hand - new_reserved >= 0)
    return and_(base, new_on_hand - new_reserved - StockLevel.safety_stock >= 0)


def change(
    session: Session,
    ctx: Context,
    variant_id: int,
    location_id: int,
    reason: Reason,
    *,
    on_hand_delta: int = 0,
    reserved_delta: int = 0,
    guard: Guard = Guard.AVAILABLE,
    incoming_delta: int = 0,
) -> LevelSnapshot | None:
    """Apply one change if the guard holds; None (nothing written) when it does not."""
    condition = _guard_condition(guard, on_hand_delta, reserved_delta)
    values: dict[str, Any] = {
        "on_hand": StockLevel.on_hand + on_hand_delta,
        "reserved": StockLevel.reserved + reserved_delta,
        "updated_at": utcnow(),
    }
    if incoming_delta:
        # Over-receipts or cancelled transfers never drive incoming below zero.
        values["incoming"] = case(
            (StockLevel.incoming + incoming_delta < 0, 0),
            else_=StockLevel.incoming + incoming_delta,
        )
    row = session.execute(
        update(StockLevel)
        .where(StockLevel.variant_id == variant_id, StockLevel.location_id == location_id)
        .where(condition)
        .values(values)
        .returning(
            StockLevel.on_hand,
            StockLevel.reserved,
            StockLevel.safety_stock,
            StockLevel.incoming,
            StockLevel.low_stock_threshold,
        )
    ).one_or_none()
    if row is None:
        return None
    snapshot = LevelSnapshot(variant_id, location_id, *row)
    if on_hand_delta or reserved_delta:
        _record(session, ctx, snapshot, reason, on_hand_delta, reserved_delta)
    else:
        publish_change(session, snapshot, reason, 0, 0)
    return snapshot


def _record(
    session: Session,
    ctx: Context,
    snapshot: LevelSnapshot,
    reason: Reason,
    on_hand_delta: int,
    reserved_delta: int,
) -> None:
    session.execute(
        insert(StockMovement).values(
            variant_id=snapshot.variant_id,
            location_id=snapshot.location_id,
            reason=reason.value,
            on_hand_delta=on_hand_delta,
            reserved_delta=reserved_delta,
            actor_type=ctx.actor.kind,
            actor_id=None if ctx.actor.id is None else str(ctx.actor.id),
            channel_id=ctx.channel_id,
            reference_type=ctx.reference_type,
            reference_id=ctx.reference_id,
            note=ctx.note,
            created_at=utcnow(),
        )
    )
    publish_change(session, snapshot, reason, on_hand_delta, reserved_delta)


def movement_row(
    ctx: Context,
    variant_id: int,
    location_id: int,
    reason: Reason,
    on_hand_delta: int,
    reserved_delta: int,
    created_at: datetime,
) -> dict[str, Any]:
    """One ledger row, for the set-based writers that insert many at once."""
    return {
        "variant_id": variant_id,
        "location_id": location_id,
        "reason": reason.value,
        "on_hand_delta": on_hand_delta,
        "reserved_delta": reserved_delta,
        "actor_type": ctx.actor.kind,
        "actor_id": None if ctx.actor.id is None else str(ctx.actor.id),
        "channel_id": ctx.channel_id,
        "reference_type": ctx.reference_type,
        "reference_id": ctx.reference_id,
        "note": ctx.note,
        "created_at": created_at,
    }


def _level_facts(
    snap: LevelSnapshot, reason: Reason, on_hand_delta: int, reserved_delta: int
) -> dict[str, Any]:
    return {
        "variant_id": snap.variant_id,
        "location_id": snap.location_id,
        "on_hand": snap.on_hand,
        "reserved": snap.reserved,
        "safety_stock": snap.safety_stock,
        "available": snap.available,
        "incoming": snap.incoming,
        "reason": reason.value,
        "on_hand_delta": on_hand_delta,
        "reserved_delta": reserved_delta,
    }


def change_event(
    snap: LevelSnapshot, reason: Reason, on_hand_delta: int, reserved_delta: int
) -> StockChanged:
    return StockChanged(**_level_facts(snap, reason, on_hand_delta, reserved_delta))


def publish_change(
    session: Session, snap: LevelSnapshot, reason: Reason, on_hand_delta: int, reserved_delta: int
) -> None:
    facts = _level_facts(snap, reason, on_hand_delta, reserved_delta)
    publish(session, StockChanged(**facts))
    threshold = snap.low_stock_threshold
    if threshold is not None:
        before = max(
            0,
            (snap.on_hand - on_hand_delta) - (snap.reserved - reserved_delta) - snap.safety_stock,
        )
        if before >= threshold > snap.available:
            publish(session, StockLow(**facts, threshold=threshold))


def level_row(session: Session, variant_id: int, location_id: int) -> StockLevel | None:
    return session.get(StockLevel, (variant_id, location_id), populate_existing=True)


def shortage(session: Session, variant_id: int, location_id: int, wanted: int) -> InsufficientStock:
    level = level_row(session, variant_id, location_id)
    have = 0 if level is None else max(0, level.on_hand - level.reserved - level.safety_stock)
    return InsufficientStock(
        f"variant {variant_id} at location {location_id}: {wanted} wanted, {have} available",
        extra={
            "variant_id": variant_id,
            "location_id": location_id,
            "requested": wanted,
            "available": have,
        },
    )


def snapshot_of(level: StockLevel) -> LevelSnapshot:
    return LevelSnapshot(
        level.variant_id,
        level.location_id,
        level.on_hand,
        level.reserved,
        level.safety_stock,
        level.incoming,
        level.low_stock_threshold,
    )


# --- validation shared by every entry point -------------------------------------------------


def check_quantity(quantity: int, field_name: str, *, allow_negative: bool = False) -> None:
    if quantity == 0 or (quantity < 0 and not allow_negative) or abs(quantity) > MAX_QUANTITY:
        expected = "a non-zero whole number" if allow_negative else "a positive whole number"
        raise ValidationProblem.field(field_name, f"{expected} up to {MAX_QUANTITY}")


def check_variants(session: Session, variant_ids: Sequence[int], field_name: str) -> None:
    known = catalog.variant_infos(session, variant_ids)
    errors = [
        FieldError(f"{field_name}[{i}].variant_id", f"unknown variant {v}")
        for i, v in enumerate(variant_ids)
        if v not in known
    ]
    if errors:
        raise ValidationProblem(errors[0]["reason"], errors=errors)


def check_location(session: Session, actor: Principal, location_id: int, field_name: str) -> None:
    if not locations.exists(session, location_id):
        raise ValidationProblem.field(field_name, f"unknown location {location_id}")
    actor.require_location(location_id)


def check_lines(session: Session, lines: Sequence[tuple[int, int]]) -> None:
    if not lines:
        raise ValidationProblem.field("body.lines", "at least one line")
    variant_ids = [v for v, _ in lines]
    if len(set(variant_ids)) != len(variant_ids):
        raise ValidationProblem.field("body.lines", "a variant is listed twice")
    check_variants(session, variant_ids, "body.lines")
    for i, (_, qty) in enumerate(lines):
        check_quantity(qty, f"body.lines[{i}].quantity")


# --- documents (transfers, purchase orders) ---------------------------------------------------


def claim_status(
    session: Session, model: Any, obj_id: int, frm: Sequence[str], to: str, **values: Any
) -> bool:
    """Move a document from one status to the next exactly once (concurrent calls: one wins)."""
    done = session.execute(
        update(model)
        .where(model.id == obj_id, model.status.in_(list(frm)))
        .values(status=to, **values)
    )
    return bool(getattr(done, "rowcount", 0))


# --- verification -------------------------------------------------------------------------


@dataclass(frozen=True)
class Mismatch:
    variant_id: int
    location_id: int
    on_hand: int
    ledger_on_hand: int
    reserved: int
    ledger_reserved: int
    active_reservations: int


def verify(session: Session) -> tuple[int, list[Mismatch]]:
    """Every stock row against the sum of its movements and its open reservations."""
    ledger = _ledger_sums()
    held = _held_sums()
    rows = session.execute(
        select(
            StockLevel.variant_id,
            StockLevel.location_id,
            StockLevel.on_hand,
            func.coalesce(ledger.c.on_hand, 0),
            StockLevel.reserved,
            func.coalesce(ledger.c.reserved, 0),
            func.coalesce(held.c.quantity, 0),
        )
        .outerjoin(
            ledger,
            and_(
                ledger.c.variant_id == StockLevel.variant_id,
                ledger.c.location_id == StockLevel.location_id,
            ),
        )
        .outerjoin(
            held,
            and_(
                held.c.variant_id == StockLevel.variant_id,
                held.c.location_id == StockLevel.location_id,
            ),
        )
    ).all()
    bad = [
        Mismatch(v, loc, int(oh), int(loh), int(r), int(lr), int(h))
        for v, loc, oh, loh, r, lr, h in rows
        if int(oh) != int(loh)
        or int(r) != int(lr)
        or int(r) != int(h)
        or not 0 <= int(r) <= int(oh)
    ]
    bad += [Mismatch(v, loc, 0, -1, 0, -1, 0) for v, loc in _orphans(session, ledger)]
    return len(rows), bad


def _ledger_sums() -> Subquery:
    """On hand and reserved per (variant, location) as the movements add them up."""
    return (
        select(
            StockMovement.variant_id,
            StockMovement.location_id,
            func.sum(StockMovement.on_hand_delta).label("on_hand"),
            func.sum(StockMovement.reserved_delta).label("reserved"),
        )
        .group_by(StockMovement.variant_id, StockMovement.location_id)
        .subquery()
    )


def _held_sums() -> Subquery:
    """Units of the open reservations per (variant, location)."""
    return (
        select(
            Reservation.variant_id,
            Reservation.location_id,
            func.sum(Reservation.quantity).label("quantity"),
        )
        .where(Reservation.status.in_(ACTIVE_RESERVATION))
        .group_by(Reservation.variant_id, Reservation.location_id)
        .subquery()
    )


def _orphans(session: Session, ledger: Subquery) -> list[tuple[int, int]]:
    """(variant, location) pairs with movements but no stock row."""
    rows = session.execute(
        select(ledger.c.variant_id, ledger.c.location_id)
        .outerjoin(
            StockLevel,
            and_(
                ledger.c.variant_id == StockLevel.variant_id,
                ledger.c.location_id == StockLevel.location_id,
            ),
        )
        .where(StockLevel.variant_id.is_(None))
    ).all()
    return [(v, loc) for v, loc in rows]
