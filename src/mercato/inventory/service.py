"""The stock ledger: every change of stock is one conditional UPDATE plus one movement.

Invariants, for every (variant, location):

* ``on_hand`` = sum of ``on_hand_delta`` and ``reserved`` = sum of ``reserved_delta`` of
  its movements (``verify`` proves it);
* ``0 <= reserved <= on_hand`` (also CHECK constraints in the schema);
* a hold or sale never takes more than on_hand - reserved - safety_stock.

The guards live in the WHERE clause of the UPDATE, so two processes racing for the last
unit cannot both win: the database serialises the row and re-checks the condition.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Select, Table, and_, bindparam, case, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.auth.service import audit
from mercato.catalog import service as catalog
from mercato.db import utcnow
from mercato.errors import Conflict, FieldError, NotFound, UnprocessableState, ValidationProblem
from mercato.events import publish, publish_many
from mercato.inventory.models import (
    PurchaseOrder,
    PurchaseOrderLine,
    Reservation,
    StockCount,
    StockCountLine,
    StockLevel,
    StockMovement,
    Transfer,
    TransferLine,
)
from mercato.locations import service as locations
from mercato.pagination import Page, decode_id_cursor, decode_key_cursor, page_of

DEFAULT_HOLD_TTL = timedelta(minutes=15)
# A hold re-plans this often when concurrent buyers take the units it had planned on.
HOLD_ATTEMPTS = 5
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


# Reasons staff may post directly as adjustments (the others come from their own flows).
MANUAL_REASONS = frozenset(
    {Reason.RECEIPT, Reason.SALE, Reason.RETURN, Reason.ADJUSTMENT, Reason.DAMAGE}
)


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


@dataclass(frozen=True)
class HoldLine:
    variant_id: int
    quantity: int
    location_id: int | None = None


@dataclass
class _Pending:
    """Events of one transaction, published together (one stock.changed per row touched)."""

    rows: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)


# --- the one primitive that changes stock ---------------------------------------------------


def _ensure_rows(session: Session, keys: Iterable[tuple[int, int]]) -> None:
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
        _publish_change(session, snapshot, reason, 0, 0)
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
    _publish_change(session, snapshot, reason, on_hand_delta, reserved_delta)


def _change_event(
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


def _publish_change(
    session: Session, snap: LevelSnapshot, reason: Reason, on_hand_delta: int, reserved_delta: int
) -> None:
    data = _change_event(snap, reason, on_hand_delta, reserved_delta)
    key = f"{snap.variant_id}:{snap.location_id}"
    publish(session, "stock.changed", data, aggregate_type="stock", aggregate_id=key)
    threshold = snap.low_stock_threshold
    if threshold is not None:
        before = max(
            0,
            (snap.on_hand - on_hand_delta) - (snap.reserved - reserved_delta) - snap.safety_stock,
        )
        if before >= threshold > snap.available:
            publish(
                session,
                "stock.low",
                {**data, "threshold": threshold},
                aggregate_type="stock",
                aggregate_id=key,
            )


def _level(session: Session, variant_id: int, location_id: int) -> StockLevel | None:
    return session.get(StockLevel, (variant_id, location_id), populate_existing=True)


def _shortage(
    session: Session, variant_id: int, location_id: int, wanted: int
) -> InsufficientStock:
    level = _level(session, variant_id, location_id)
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


# --- adjustments (receipts, damage, manual sales and returns) ------------------------------


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
        check_quantity(line.quantity, f"body.lines[{i}].quantity", allow_negative=True)
        if line.reason not in MANUAL_REASONS:
            raise ValidationProblem.field(
                f"body.lines[{i}].reason", f"use one of {sorted(r.value for r in MANUAL_REASONS)}"
            )
        if line.reason in (Reason.RECEIPT, Reason.RETURN) and line.quantity < 0:
            raise ValidationProblem.field(f"body.lines[{i}].quantity", "a receipt adds stock")
        if line.reason in (Reason.SALE, Reason.DAMAGE) and line.quantity > 0:
            raise ValidationProblem.field(
                f"body.lines[{i}].quantity", f"a {line.reason} removes stock"
            )
    _ensure_rows(session, {(line.variant_id, location_id) for line in lines})
    results = []
    for line in sorted(lines, key=lambda x: x.variant_id):
        guard = Guard.UNRESERVED if line.reason is Reason.SALE else Guard.PHYSICAL
        if line.reason is Reason.ADJUSTMENT or line.reason is Reason.DAMAGE:
            guard = Guard.UNRESERVED
        snap = change(
            session,
            ctx,
            line.variant_id,
            location_id,
            line.reason,
            on_hand_delta=line.quantity,
            guard=guard,
        )
        if snap is None:
            raise _shortage(session, line.variant_id, location_id, -line.quantity)
        results.append(snap)
    return results


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
    _ensure_rows(session, [(v, location_id) for v in totals])
    now = utcnow()
    table = StockLevel.__table__
    assert isinstance(table, Table)
    session.connection().execute(
        update(table)
        .where(table.c.variant_id == bindparam("v"), table.c.location_id == location_id)
        .values(on_hand=table.c.on_hand + bindparam("q"), updated_at=now),
        [{"v": v, "q": q} for v, q in sorted(totals.items())],
    )
    session.execute(
        insert(StockMovement),
        [
            {
                "variant_id": v,
                "location_id": location_id,
                "reason": Reason.RECEIPT.value,
                "on_hand_delta": q,
                "reserved_delta": 0,
                "actor_type": ctx.actor.kind,
                "actor_id": None if ctx.actor.id is None else str(ctx.actor.id),
                "channel_id": ctx.channel_id,
                "reference_type": ctx.reference_type,
                "reference_id": ctx.reference_id,
                "note": ctx.note,
                "created_at": now,
            }
            for v, q in sorted(totals.items())
        ],
    )
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
        events.append(
            (
                _change_event(snap, Reason.RECEIPT, totals[variant_id], 0),
                f"{variant_id}:{location_id}",
            )
        )
    publish_many(session, "stock.changed", events, aggregate_type="stock")
    return len(totals)


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
    _ensure_rows(session, [(variant_id, location_id)])
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
    level = _level(session, variant_id, location_id)
    assert level is not None
    snap = _snapshot(level)
    audit(
        session,
        actor,
        "stock.policy_set",
        "stock",
        f"{variant_id}:{location_id}",
        {k: v for k, v in values.items() if k != "updated_at"},
    )
    _publish_change(session, snap, Reason.ADJUSTMENT, 0, 0)
    return snap


def _snapshot(level: StockLevel) -> LevelSnapshot:
    return LevelSnapshot(
        level.variant_id,
        level.location_id,
        level.on_hand,
        level.reserved,
        level.safety_stock,
        level.incoming,
        level.low_stock_threshold,
    )


# --- reservations ------------------------------------------------------------------------


def _aggregate(lines: Sequence[HoldLine]) -> dict[tuple[int, int | None], int]:
    """Lines of one variant (and location) are summed before anything is held."""
    total: dict[tuple[int, int | None], int] = defaultdict(int)
    for line in lines:
        total[(line.variant_id, line.location_id)] += line.quantity
    return dict(sorted(total.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0)))


def hold(
    session: Session,
    ctx: Context,
    lines: Sequence[HoldLine],
    *,
    candidate_locations: Sequence[int] = (),
    ttl: timedelta | None = DEFAULT_HOLD_TTL,
    allow_split: bool = True,
    status: ReservationStatus = ReservationStatus.HELD,
) -> list[Reservation]:
    """Hold stock for every line or for none (raises InsufficientStock, caller rolls back).

    A line with a location holds there; a line without one is sourced from
    ``candidate_locations`` in order (the channel's priority): the first location that has
    all of it, else split across them in order when ``allow_split``.

    Whatever the number of lines it costs a fixed number of statements: one read of the
    rows involved, one conditional UPDATE of all the rows chosen (every guard is in its
    WHERE clause, so no row can go below what is free whatever happened since the read),
    one INSERT of the ledger rows, one of the reservations. Nothing is locked before the
    UPDATE, so buyers of the same item at different locations do not wait on each other;
    if a buyer took planned units meanwhile, the UPDATE is undone (a savepoint) and the
    hold plans again on fresh figures.
    """
    for i, line in enumerate(lines):
        check_quantity(line.quantity, f"body.lines[{i}].quantity")
    wanted = _aggregate(lines)
    if not wanted:
        return []
    for _attempt in range(HOLD_ATTEMPTS):
        plan, short = _plan_holds(session, wanted, candidate_locations, allow_split)
        if short and expire_holds(session, variant_ids=[v for v, _ in short]):
            plan, short = _plan_holds(session, wanted, candidate_locations, allow_split)
        if short:
            (variant_id, location_id), missing = next(iter(short.items()))
            free = missing[1]
            where = f" at location {location_id}" if location_id is not None else ""
            raise InsufficientStock(
                f"variant {variant_id}{where}: {missing[0]} wanted, {free} available",
                extra={
                    "variant_id": variant_id,
                    "location_id": location_id,
                    "requested": missing[0],
                    "available": free,
                },
            )
        # Another buyer may take units between the read and the update: the update's
        # guards refuse them, the savepoint undoes the rows it did take, and the plan is
        # made again on fresh figures.
        with session.begin_nested() as savepoint:
            if _apply_holds(session, ctx, plan):
                break
            savepoint.rollback()
    else:
        raise InsufficientStock(
            "the stock kept changing while holding; try again",
            extra={"variant_ids": sorted({v for v, _ in wanted})},
        )
    now = utcnow()
    expires = None if ttl is None or status is not ReservationStatus.HELD else now + ttl
    rows = [
        {
            "variant_id": variant_id,
            "location_id": location_id,
            "quantity": quantity,
            "status": status.value,
            "channel_id": ctx.channel_id,
            "reference_type": ctx.reference_type,
            "reference_id": ctx.reference_id,
            "expires_at": expires,
            "created_at": now,
            "updated_at": now,
        }
        for (variant_id, location_id), quantity in plan.items()
    ]
    # One multi-row INSERT (the ORM would send one per row on SQLite to keep RETURNING
    # in order; the caller needs the rows, not their order).
    made = list(
        session.scalars(
            insert(Reservation)
            .values(rows)
            .returning(Reservation)
            .execution_options(populate_existing=True)
        ).all()
    )
    return made


def _plan_holds(
    session: Session,
    wanted: dict[tuple[int, int | None], int],
    candidates: Sequence[int],
    allow_split: bool,
) -> tuple[dict[tuple[int, int], int], dict[tuple[int, int | None], tuple[int, int]]]:
    """Where each unit comes from, read under lock; and what cannot be had (wanted, free)."""
    variants = sorted({v for v, _ in wanted})
    places = sorted({loc for _, loc in wanted if loc is not None} | set(candidates))
    free: dict[tuple[int, int], int] = {}
    if places:
        rows = session.execute(
            select(StockLevel.variant_id, StockLevel.location_id, _FREE)
            .where(StockLevel.variant_id.in_(variants), StockLevel.location_id.in_(places))
            .order_by(StockLevel.variant_id, StockLevel.location_id)
        ).all()
        free = {(v, loc): max(0, int(n)) for v, loc, n in rows}
    plan: dict[tuple[int, int], int] = defaultdict(int)
    short: dict[tuple[int, int | None], tuple[int, int]] = {}
    # Fixed locations first: they have no alternative.
    for (variant_id, location_id), quantity in sorted(
        wanted.items(), key=lambda kv: (kv[0][1] is None, kv[0][0], kv[0][1] or 0)
    ):
        if location_id is not None:
            have = free.get((variant_id, location_id), 0)
            if have < quantity:
                short[(variant_id, location_id)] = (quantity, have)
                continue
            free[(variant_id, location_id)] = have - quantity
            plan[(variant_id, location_id)] += quantity
            continue
        pieces = _source(variant_id, quantity, candidates, free, allow_split)
        if pieces is None:
            total = sum(free.get((variant_id, c), 0) for c in candidates)
            short[(variant_id, None)] = (quantity, total)
            continue
        for loc, qty in pieces:
            free[(variant_id, loc)] -= qty
            plan[(variant_id, loc)] += qty
    return dict(plan), short


def _source(
    variant_id: int,
    quantity: int,
    candidates: Sequence[int],
    free: dict[tuple[int, int], int],
    allow_split: bool,
) -> list[tuple[int, int]] | None:
    for loc in candidates:
        if free.get((variant_id, loc), 0) >= quantity:
            return [(loc, quantity)]
    if not allow_split:
        return None
    pieces: list[tuple[int, int]] = []
    left = quantity
    for loc in candidates:
        take = min(left, free.get((variant_id, loc), 0))
        if take > 0:
            pieces.append((loc, take))
            left -= take
        if left == 0:
            return pieces
    return None


def _apply_holds(session: Session, ctx: Context, plan: dict[tuple[int, int], int]) -> bool:
    pairs = sorted(plan.items())
    match = [
        and_(StockLevel.variant_id == v, StockLevel.location_id == loc) for (v, loc), _ in pairs
    ]
    amount = case(*[(m, q) for m, (_, q) in zip(match, pairs, strict=True)], else_=0)
    guard = or_(*[and_(m, q <= _FREE) for m, (_, q) in zip(match, pairs, strict=True)])
    rows = session.execute(
        update(StockLevel)
        .where(guard)
        .values(reserved=StockLevel.reserved + amount, updated_at=utcnow())
        .returning(
            StockLevel.variant_id,
            StockLevel.location_id,
            StockLevel.on_hand,
            StockLevel.reserved,
            StockLevel.safety_stock,
            StockLevel.incoming,
            StockLevel.low_stock_threshold,
        )
        .execution_options(synchronize_session=False)
    ).all()
    if len(rows) != len(pairs):
        return False
    now = utcnow()
    session.execute(
        insert(StockMovement),
        [
            {
                "variant_id": v,
                "location_id": loc,
                "reason": Reason.RESERVATION.value,
                "on_hand_delta": 0,
                "reserved_delta": plan[(v, loc)],
                "actor_type": ctx.actor.kind,
                "actor_id": None if ctx.actor.id is None else str(ctx.actor.id),
                "channel_id": ctx.channel_id,
                "reference_type": ctx.reference_type,
                "reference_id": ctx.reference_id,
                "note": ctx.note,
                "created_at": now,
            }
            for (v, loc), _ in pairs
        ],
    )
    for v, loc, on_hand, reserved, safety, incoming, threshold in rows:
        snap = LevelSnapshot(v, loc, on_hand, reserved, safety, incoming, threshold)
        _publish_change(session, snap, Reason.RESERVATION, 0, plan[(v, loc)])
    return True


def _transition(
    session: Session, ids: Sequence[int], from_statuses: Sequence[str], values: dict[str, Any]
) -> list[Reservation]:
    if not ids:
        return []
    return list(
        session.scalars(
            update(Reservation)
            .where(Reservation.id.in_(list(ids)), Reservation.status.in_(list(from_statuses)))
            .values({**values, "updated_at": utcnow()})
            .returning(Reservation)
            .execution_options(populate_existing=True, synchronize_session=False)
        ).all()
    )


def release(
    session: Session,
    ctx: Context,
    reservation_ids: Sequence[int],
    status: ReservationStatus = ReservationStatus.RELEASED,
) -> list[Reservation]:
    """Give held or allocated units back; reservations already closed are left alone."""
    released = _transition(session, reservation_ids, ACTIVE_RESERVATION, {"status": status.value})
    for r in sorted(released, key=lambda r: (r.variant_id, r.location_id)):
        snap = change(
            session,
            ctx,
            r.variant_id,
            r.location_id,
            Reason.RELEASE,
            reserved_delta=-r.quantity,
            guard=Guard.PHYSICAL,
        )
        if snap is None:  # the schema's checks make this unreachable; fail loudly if not
            raise Conflict(f"reservation {r.id} does not match its stock row")
    return released


def release_quantity(
    session: Session, ctx: Context, reservation_id: int, quantity: int
) -> Reservation:
    """Give back part of a reservation (a line cancelled or sent elsewhere); all of it
    releases the reservation."""
    reservation = get_reservation(session, reservation_id)
    check_quantity(quantity, "body.quantity")
    if reservation.status not in ACTIVE_RESERVATION:
        raise UnprocessableState(
            f"reservation {reservation_id} is {reservation.status}", code="reservation-closed"
        )
    if quantity > reservation.quantity:
        raise ValidationProblem.field("body.quantity", f"only {reservation.quantity} reserved")
    if quantity == reservation.quantity:
        return release(session, ctx, [reservation_id])[0]
    if not _shrink(session, reservation_id, quantity):
        raise UnprocessableState(
            f"reservation {reservation_id} changed meanwhile", code="reservation-closed"
        )
    snap = change(
        session,
        ctx,
        reservation.variant_id,
        reservation.location_id,
        Reason.RELEASE,
        reserved_delta=-quantity,
        guard=Guard.PHYSICAL,
    )
    if snap is None:
        raise Conflict(f"reservation {reservation_id} does not match its stock row")
    return get_reservation(session, reservation_id)


def active_reservations_for(
    session: Session, reference_type: str, reference_id: str
) -> list[Reservation]:
    return list(
        session.scalars(
            select(Reservation)
            .where(
                Reservation.reference_type == reference_type,
                Reservation.reference_id == reference_id,
                Reservation.status.in_(ACTIVE_RESERVATION),
            )
            .order_by(Reservation.id)
            .execution_options(populate_existing=True)
        )
    )


def allocate(
    session: Session,
    ctx: Context,
    reservation_ids: Sequence[int],
    reference_type: str,
    reference_id: str,
) -> list[Reservation]:
    """Turn cart holds into order allocations: they stop expiring."""
    allocated = _transition(
        session,
        reservation_ids,
        (ReservationStatus.HELD.value,),
        {
            "status": ReservationStatus.ALLOCATED.value,
            "expires_at": None,
            "reference_type": reference_type,
            "reference_id": reference_id,
        },
    )
    if len(allocated) != len(set(reservation_ids)):
        raise UnprocessableState("some reservations are no longer held", code="reservation-closed")
    return allocated


def fulfil(
    session: Session, ctx: Context, reservation_id: int, quantity: int | None = None
) -> Reservation:
    """Ship or hand over reserved units: on hand and reserved both go down (a sale)."""
    reservation = get_reservation(session, reservation_id)
    qty = reservation.quantity if quantity is None else quantity
    check_quantity(qty, "body.quantity")
    if reservation.status not in ACTIVE_RESERVATION:
        raise UnprocessableState(
            f"reservation {reservation_id} is {reservation.status}", code="reservation-closed"
        )
    if qty > reservation.quantity:
        raise ValidationProblem.field("body.quantity", f"only {reservation.quantity} reserved")
    if qty == reservation.quantity:
        done = _transition(
            session,
            [reservation_id],
            ACTIVE_RESERVATION,
            {"status": ReservationStatus.FULFILLED.value},
        )
    else:
        done = _shrink(session, reservation_id, qty)
    if not done:
        raise UnprocessableState(
            f"reservation {reservation_id} changed meanwhile", code="reservation-closed"
        )
    snap = change(
        session,
        ctx,
        reservation.variant_id,
        reservation.location_id,
        Reason.SALE,
        on_hand_delta=-qty,
        reserved_delta=-qty,
        guard=Guard.PHYSICAL,
    )
    if snap is None:
        raise Conflict(f"reservation {reservation_id} does not match its stock row")
    return done[0]


def _shrink(session: Session, reservation_id: int, qty: int) -> list[Reservation]:
    ids = (
        session.execute(
            update(Reservation)
            .where(
                Reservation.id == reservation_id,
                Reservation.status.in_(ACTIVE_RESERVATION),
                Reservation.quantity > qty,
            )
            .values(quantity=Reservation.quantity - qty, updated_at=utcnow())
            .returning(Reservation.id)
        )
        .scalars()
        .all()
    )
    return [get_reservation(session, i) for i in ids]


def expire_holds(
    session: Session,
    *,
    now: datetime | None = None,
    variant_id: int | None = None,
    variant_ids: Sequence[int] | None = None,
    location_id: int | None = None,
    limit: int = 1000,
) -> int:
    """Release held units whose time is up; returns how many reservations expired."""
    query = select(Reservation.id).where(
        Reservation.status == ReservationStatus.HELD.value,
        Reservation.expires_at < (now or utcnow()),
    )
    if variant_id is not None:
        query = query.where(Reservation.variant_id == variant_id)
    if variant_ids is not None:
        query = query.where(Reservation.variant_id.in_(sorted(set(variant_ids))))
    if location_id is not None:
        query = query.where(Reservation.location_id == location_id)
    ids = list(session.scalars(query.order_by(Reservation.id).limit(limit)))
    if not ids:
        return 0
    system = Context(
        actor=Principal.system("hold-expiry"), reference_type="reservation", note="hold expired"
    )
    return len(release(session, system, ids, status=ReservationStatus.EXPIRED))


def get_reservation(session: Session, reservation_id: int) -> Reservation:
    reservation = session.get(Reservation, reservation_id, populate_existing=True)
    if reservation is None:
        raise NotFound(f"reservation {reservation_id} not found")
    return reservation


def reservations_for(session: Session, reference_type: str, reference_id: str) -> list[Reservation]:
    return list(
        session.scalars(
            select(Reservation)
            .where(
                Reservation.reference_type == reference_type,
                Reservation.reference_id == reference_id,
            )
            .order_by(Reservation.id)
        )
    )


# --- availability --------------------------------------------------------------------------

_FREE = StockLevel.on_hand - StockLevel.reserved - StockLevel.safety_stock


# One statement per variant set; the location filter runs in Python because a channel may
# sell from hundreds of locations while a variant is stocked at a few of them: binding a
# 500-id IN list costs more than skipping the handful of rows outside the channel.
_FREE_ROWS = select(StockLevel.variant_id, StockLevel.location_id, _FREE).where(
    StockLevel.variant_id.in_(bindparam("variants", expanding=True)), _FREE > 0
)


def availability_by_location(
    session: Session, variant_ids: Iterable[int], location_ids: Iterable[int]
) -> dict[int, dict[int, int]]:
    """variant -> location -> available units (> 0 only)."""
    variants = sorted(set(variant_ids))
    places = location_ids if isinstance(location_ids, frozenset) else frozenset(location_ids)
    if not variants or not places:
        return {}
    found: dict[int, dict[int, int]] = defaultdict(dict)
    for variant_id, location_id, free in session.execute(_FREE_ROWS, {"variants": variants}):
        if location_id in places:
            found[variant_id][location_id] = int(free)
    return dict(found)


def availability(
    session: Session, variant_ids: Iterable[int], location_ids: Iterable[int]
) -> dict[int, int]:
    """Available to promise per variant, summed over ``location_ids`` (0 when none)."""
    variants = sorted(set(variant_ids))
    places = location_ids if isinstance(location_ids, frozenset) else frozenset(location_ids)
    result = dict.fromkeys(variants, 0)
    if not variants or not places:
        return result
    for variant_id, location_id, free in session.execute(_FREE_ROWS, {"variants": variants}):
        if location_id in places:
            result[variant_id] += int(free)
    return result


@dataclass(frozen=True)
class NearbyStock:
    location_id: int
    code: str
    name: str
    type: str
    distance_km: float | None
    can_pickup: bool
    can_ship_from_store: bool
    available: dict[int, int]  # variant -> units


def nearby_stock(
    session: Session,
    variant_ids: Sequence[int],
    location_ids: Iterable[int],
    latitude: float | None,
    longitude: float | None,
    *,
    radius_km: float | None = None,
    limit: int = 20,
) -> list[NearbyStock]:
    """Locations holding any of the variants, nearest first when coordinates are given."""
    by_location: dict[int, dict[int, int]] = defaultdict(dict)
    for variant_id, places in availability_by_location(session, variant_ids, location_ids).items():
        for location_id, free in places.items():
            by_location[location_id][variant_id] = free
    places_found = [p for p in locations.get_locations(session, list(by_location)) if p.active]
    ranked: list[tuple[float | None, Any]] = []
    if latitude is not None and longitude is not None:
        ranked = [(d, p) for p, d in locations.nearest(places_found, latitude, longitude)]
        if radius_km is not None:
            ranked = [(d, p) for d, p in ranked if d is not None and d <= radius_km]
    else:
        ranked = [(None, p) for p in places_found]
    return [
        NearbyStock(
            location_id=p.id,
            code=p.code,
            name=p.name,
            type=p.type,
            distance_km=None if d is None else round(d, 3),
            can_pickup=p.can_pickup,
            can_ship_from_store=p.can_ship_from_store,
            available=dict(by_location[p.id]),
        )
        for d, p in ranked[:limit]
    ]


# --- reads for staff ------------------------------------------------------------------------


def list_levels(
    session: Session,
    *,
    variant_id: int | None = None,
    location_id: int | None = None,
    location_ids: frozenset[int] | None = None,
    low_only: bool = False,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[StockLevel]:
    query: Select[Any] = select(StockLevel).order_by(StockLevel.variant_id, StockLevel.location_id)
    if variant_id is not None:
        query = query.where(StockLevel.variant_id == variant_id)
    if location_id is not None:
        query = query.where(StockLevel.location_id == location_id)
    if location_ids is not None:
        query = query.where(StockLevel.location_id.in_(sorted(location_ids)))
    if low_only:
        query = query.where(
            StockLevel.low_stock_threshold.is_not(None), StockLevel.low_stock_threshold > _FREE
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


def get_level(session: Session, variant_id: int, location_id: int) -> LevelSnapshot:
    level = _level(session, variant_id, location_id)
    if level is None:
        return LevelSnapshot(variant_id, location_id, 0, 0, 0, 0, None)
    return _snapshot(level)


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


# --- transfers ----------------------------------------------------------------------------


def create_transfer(
    session: Session,
    ctx: Context,
    from_location_id: int,
    to_location_id: int,
    lines: Sequence[tuple[int, int]],
    *,
    ship_now: bool = False,
) -> Transfer:
    if from_location_id == to_location_id:
        raise ValidationProblem.field("body.to_location_id", "must differ from from_location_id")
    check_location(session, ctx.actor, from_location_id, "body.from_location_id")
    if not locations.exists(session, to_location_id):
        raise ValidationProblem.field("body.to_location_id", f"unknown location {to_location_id}")
    _check_lines(session, lines)
    transfer = Transfer(
        from_location_id=from_location_id,
        to_location_id=to_location_id,
        status="draft",
        note=ctx.note,
        created_at=utcnow(),
    )
    session.add(transfer)
    session.flush()
    session.add_all(
        TransferLine(transfer_id=transfer.id, variant_id=v, quantity=q, received=0)
        for v, q in lines
    )
    session.flush()
    audit(
        session,
        ctx.actor,
        "transfer.created",
        "transfer",
        transfer.id,
        {"from": from_location_id, "to": to_location_id, "lines": [list(x) for x in lines]},
    )
    if ship_now:
        ship_transfer(session, ctx, transfer.id)
    return transfer


def _check_lines(session: Session, lines: Sequence[tuple[int, int]]) -> None:
    if not lines:
        raise ValidationProblem.field("body.lines", "at least one line")
    variant_ids = [v for v, _ in lines]
    if len(set(variant_ids)) != len(variant_ids):
        raise ValidationProblem.field("body.lines", "a variant is listed twice")
    check_variants(session, variant_ids, "body.lines")
    for i, (_, qty) in enumerate(lines):
        check_quantity(qty, f"body.lines[{i}].quantity")


def get_transfer(session: Session, transfer_id: int) -> Transfer:
    transfer = session.get(Transfer, transfer_id, populate_existing=True)
    if transfer is None:
        raise NotFound(f"transfer {transfer_id} not found")
    return transfer


def transfer_lines(session: Session, transfer_id: int) -> list[TransferLine]:
    return list(
        session.scalars(
            select(TransferLine)
            .where(TransferLine.transfer_id == transfer_id)
            .order_by(TransferLine.variant_id)
        )
    )


def _claim_status(
    session: Session, model: Any, obj_id: int, frm: Sequence[str], to: str, **values: Any
) -> bool:
    """Move a document from one status to the next exactly once (concurrent calls: one wins)."""
    done = session.execute(
        update(model)
        .where(model.id == obj_id, model.status.in_(list(frm)))
        .values(status=to, **values)
    )
    return bool(getattr(done, "rowcount", 0))


def ship_transfer(session: Session, ctx: Context, transfer_id: int) -> Transfer:
    transfer = get_transfer(session, transfer_id)
    ctx.actor.require_location(transfer.from_location_id)
    if not _claim_status(session, Transfer, transfer_id, ["draft"], "shipped", shipped_at=utcnow()):
        raise UnprocessableState(f"transfer {transfer_id} is {transfer.status}, not draft")
    lines = transfer_lines(session, transfer_id)
    sub = Context(ctx.actor, ctx.channel_id, "transfer", str(transfer_id), ctx.note)
    _ensure_rows(session, [(line.variant_id, transfer.to_location_id) for line in lines])
    for line in lines:
        snap = change(
            session,
            sub,
            line.variant_id,
            transfer.from_location_id,
            Reason.TRANSFER_OUT,
            on_hand_delta=-line.quantity,
            guard=Guard.UNRESERVED,
        )
        if snap is None:
            raise _shortage(session, line.variant_id, transfer.from_location_id, line.quantity)
        change(
            session,
            sub,
            line.variant_id,
            transfer.to_location_id,
            Reason.TRANSFER_IN,
            incoming_delta=line.quantity,
        )
    publish(
        session,
        "transfer.shipped",
        {"transfer_id": transfer_id},
        aggregate_type="transfer",
        aggregate_id=transfer_id,
    )
    return get_transfer(session, transfer_id)


def receive_transfer(
    session: Session, ctx: Context, transfer_id: int, received: dict[int, int] | None
) -> tuple[Transfer, list[dict[str, int]]]:
    """Receive shipped units; anything short of what was shipped is reported as discrepancy."""
    transfer = get_transfer(session, transfer_id)
    ctx.actor.require_location(transfer.to_location_id)
    lines = transfer_lines(session, transfer_id)
    by_variant = {line.variant_id: line for line in lines}
    counts = (
        received if received is not None else {v: line.quantity for v, line in by_variant.items()}
    )
    for variant_id, qty in counts.items():
        if variant_id not in by_variant:
            raise ValidationProblem.field(
                "body.lines", f"variant {variant_id} is not on the transfer"
            )
        if qty < 0 or qty > by_variant[variant_id].quantity:
            raise ValidationProblem.field(
                "body.lines", f"variant {variant_id}: 0 to {by_variant[variant_id].quantity}"
            )
    if not _claim_status(
        session, Transfer, transfer_id, ["shipped"], "received", received_at=utcnow()
    ):
        raise UnprocessableState(f"transfer {transfer_id} is {transfer.status}, not shipped")
    sub = Context(ctx.actor, ctx.channel_id, "transfer", str(transfer_id), ctx.note)
    discrepancies = []
    for line in lines:
        got = counts.get(line.variant_id, 0)
        line.received = got
        if got:
            change(
                session,
                sub,
                line.variant_id,
                transfer.to_location_id,
                Reason.TRANSFER_IN,
                on_hand_delta=got,
                incoming_delta=-line.quantity,
                guard=Guard.PHYSICAL,
            )
        else:
            change(
                session,
                sub,
                line.variant_id,
                transfer.to_location_id,
                Reason.TRANSFER_IN,
                incoming_delta=-line.quantity,
            )
        if got != line.quantity:
            discrepancies.append(
                {
                    "variant_id": line.variant_id,
                    "shipped": line.quantity,
                    "received": got,
                    "missing": line.quantity - got,
                }
            )
    session.flush()
    audit(
        session,
        ctx.actor,
        "transfer.received",
        "transfer",
        transfer_id,
        {"discrepancies": discrepancies},
    )
    publish(
        session,
        "transfer.received",
        {"transfer_id": transfer_id, "discrepancies": discrepancies},
        aggregate_type="transfer",
        aggregate_id=transfer_id,
    )
    return get_transfer(session, transfer_id), discrepancies


def list_transfers(
    session: Session, *, location_ids: frozenset[int] | None, cursor: str | None, limit: int
) -> Page[Transfer]:
    query = select(Transfer).order_by(Transfer.id.desc())
    if location_ids is not None:
        ids = sorted(location_ids)
        query = query.where(
            or_(Transfer.from_location_id.in_(ids), Transfer.to_location_id.in_(ids))
        )
    after = decode_id_cursor(cursor)
    if after is not None:
        query = query.where(Transfer.id < after)
    return page_of(list(session.scalars(query.limit(limit + 1))), limit, key=lambda t: t.id)


# --- purchase orders and receiving --------------------------------------------------------


def create_purchase_order(
    session: Session,
    ctx: Context,
    reference: str,
    supplier: str,
    location_id: int,
    lines: Sequence[tuple[int, int]],
    expected_at: datetime | None,
) -> PurchaseOrder:
    check_location(session, ctx.actor, location_id, "body.location_id")
    _check_lines(session, lines)
    if session.scalar(select(PurchaseOrder.id).where(PurchaseOrder.reference == reference)):
        raise Conflict(f"purchase order {reference} exists", code="duplicate-reference")
    po = PurchaseOrder(
        reference=reference,
        supplier=supplier,
        location_id=location_id,
        status="open",
        expected_at=expected_at,
        created_at=utcnow(),
    )
    session.add(po)
    session.flush()
    session.add_all(
        PurchaseOrderLine(purchase_order_id=po.id, variant_id=v, quantity=q, received=0)
        for v, q in lines
    )
    _ensure_rows(session, [(v, location_id) for v, _ in lines])
    sub = Context(ctx.actor, None, "purchase_order", str(po.id))
    for v, q in lines:
        change(session, sub, v, location_id, Reason.RECEIPT, incoming_delta=q)
    audit(
        session,
        ctx.actor,
        "purchase_order.created",
        "purchase_order",
        po.id,
        {"reference": reference, "lines": [list(x) for x in lines]},
    )
    return po


def get_purchase_order(session: Session, po_id: int) -> PurchaseOrder:
    po = session.get(PurchaseOrder, po_id, populate_existing=True)
    if po is None:
        raise NotFound(f"purchase order {po_id} not found")
    return po


def purchase_order_lines(session: Session, po_id: int) -> list[PurchaseOrderLine]:
    return list(
        session.scalars(
            select(PurchaseOrderLine)
            .where(PurchaseOrderLine.purchase_order_id == po_id)
            .order_by(PurchaseOrderLine.variant_id)
        )
    )


def receive_purchase_order(
    session: Session, ctx: Context, po_id: int, received: dict[int, int]
) -> PurchaseOrder:
    po = get_purchase_order(session, po_id)
    ctx.actor.require_location(po.location_id)
    if po.status not in ("open", "partially_received"):
        raise UnprocessableState(f"purchase order {po_id} is {po.status}")
    lines = {line.variant_id: line for line in purchase_order_lines(session, po_id)}
    for i, (variant_id, qty) in enumerate(received.items()):
        if variant_id not in lines:
            raise ValidationProblem.field(
                f"body.lines[{i}].variant_id", f"variant {variant_id} is not on the purchase order"
            )
        check_quantity(qty, f"body.lines[{i}].quantity")
        remaining = lines[variant_id].quantity - lines[variant_id].received
        if qty > remaining:
            raise ValidationProblem.field(
                f"body.lines[{i}].quantity", f"only {remaining} still expected"
            )
    sub = Context(ctx.actor, None, "purchase_order", str(po_id), ctx.note)
    for variant_id, qty in sorted(received.items()):
        done = session.execute(
            update(PurchaseOrderLine)
            .where(
                PurchaseOrderLine.purchase_order_id == po_id,
                PurchaseOrderLine.variant_id == variant_id,
                PurchaseOrderLine.received + qty <= PurchaseOrderLine.quantity,
            )
            .values(received=PurchaseOrderLine.received + qty)
        )
        if not getattr(done, "rowcount", 0):
            raise Conflict(f"variant {variant_id} was received meanwhile; reload the order")
        change(
            session,
            sub,
            variant_id,
            po.location_id,
            Reason.RECEIPT,
            on_hand_delta=qty,
            incoming_delta=-qty,
            guard=Guard.PHYSICAL,
        )
    complete = all(line.quantity <= line.received for line in purchase_order_lines(session, po_id))
    po.status = "received" if complete else "partially_received"
    session.flush()
    audit(
        session,
        ctx.actor,
        "purchase_order.received",
        "purchase_order",
        po_id,
        {"lines": {str(k): v for k, v in received.items()}},
    )
    return po


def cancel_purchase_order(session: Session, ctx: Context, po_id: int) -> PurchaseOrder:
    po = get_purchase_order(session, po_id)
    ctx.actor.require_location(po.location_id)
    if not _claim_status(
        session, PurchaseOrder, po_id, ["open", "partially_received"], "cancelled"
    ):
        raise UnprocessableState(f"purchase order {po_id} is {po.status}")
    sub = Context(ctx.actor, None, "purchase_order", str(po_id), "cancelled")
    for line in purchase_order_lines(session, po_id):
        outstanding = line.quantity - line.received
        if outstanding:
            change(
                session,
                sub,
                line.variant_id,
                po.location_id,
                Reason.RECEIPT,
                incoming_delta=-outstanding,
            )
    audit(session, ctx.actor, "purchase_order.cancelled", "purchase_order", po_id)
    return get_purchase_order(session, po_id)


# --- cycle counts -----------------------------------------------------------------------------


def post_count(
    session: Session, ctx: Context, location_id: int, counted: Sequence[tuple[int, int]]
) -> tuple[StockCount, list[StockCountLine]]:
    """Set on hand to what was counted; each difference becomes a ``count`` movement."""
    check_location(session, ctx.actor, location_id, "body.location_id")
    if not counted:
        raise ValidationProblem.field("body.lines", "at least one line")
    variant_ids = [v for v, _ in counted]
    if len(set(variant_ids)) != len(variant_ids):
        raise ValidationProblem.field("body.lines", "a variant is listed twice")
    check_variants(session, variant_ids, "body.lines")
    for i, (_, qty) in enumerate(counted):
        if qty < 0 or qty > MAX_QUANTITY:
            raise ValidationProblem.field(f"body.lines[{i}].counted", f"0 to {MAX_QUANTITY}")
    _ensure_rows(session, [(v, location_id) for v in variant_ids])
    count = StockCount(location_id=location_id, note=ctx.note, created_at=utcnow())
    session.add(count)
    session.flush()
    sub = Context(ctx.actor, None, "count", str(count.id), ctx.note)
    lines = []
    levels = {
        lvl.variant_id: lvl
        for lvl in session.scalars(
            select(StockLevel)
            .where(StockLevel.location_id == location_id, StockLevel.variant_id.in_(variant_ids))
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    }
    for variant_id, qty in sorted(counted):
        level = levels[variant_id]
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
                location_id,
                Reason.COUNT,
                on_hand_delta=delta,
                guard=Guard.PHYSICAL,
            )
        lines.append(
            StockCountLine(count_id=count.id, variant_id=variant_id, expected=expected, counted=qty)
        )
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
    ledger = (
        select(
            StockMovement.variant_id,
            StockMovement.location_id,
            func.sum(StockMovement.on_hand_delta).label("on_hand"),
            func.sum(StockMovement.reserved_delta).label("reserved"),
        )
        .group_by(StockMovement.variant_id, StockMovement.location_id)
        .subquery()
    )
    held = (
        select(
            Reservation.variant_id,
            Reservation.location_id,
            func.sum(Reservation.quantity).label("quantity"),
        )
        .where(Reservation.status.in_(ACTIVE_RESERVATION))
        .group_by(Reservation.variant_id, Reservation.location_id)
        .subquery()
    )
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
    orphans = session.execute(
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
    bad += [Mismatch(v, loc, 0, -1, 0, -1, 0) for v, loc in orphans]
    return len(rows), bad
