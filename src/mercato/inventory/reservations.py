"""Reservations: holds (carts, checkout), allocations (orders), fulfilment and release.

A reservation raises the row's ``reserved``; its units then cannot be sold to anyone else.
Holds expire by themselves (:func:`expire_holds`); allocations do not. Every status move of
a reservation is one conditional UPDATE, so of two racing calls only one moves it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, insert, or_, select, update
from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.db import get_or_404, utcnow
from mercato.errors import Conflict, UnprocessableState, ValidationProblem
from mercato.inventory.ledger import (
    ACTIVE_RESERVATION,
    FREE_TO_SELL,
    Context,
    Guard,
    InsufficientStock,
    LevelSnapshot,
    Reason,
    ReservationStatus,
    change,
    check_quantity,
    movement_row,
    publish_change,
)
from mercato.inventory.models import Reservation, StockLevel, StockMovement

DEFAULT_HOLD_TTL = timedelta(minutes=15)
# A hold re-plans this often when concurrent buyers take the units it had planned on.
HOLD_ATTEMPTS = 5


@dataclass(frozen=True)
class HoldLine:
    variant_id: int
    quantity: int
    location_id: int | None = None


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
    plan = _reserve(session, ctx, wanted, candidate_locations, allow_split)
    return _insert_reservations(session, ctx, plan, ttl, status)


def _reserve(
    session: Session,
    ctx: Context,
    wanted: dict[tuple[int, int | None], int],
    candidates: Sequence[int],
    allow_split: bool,
) -> dict[tuple[int, int], int]:
    """Raise the reserved units of the rows chosen; the plan that was applied."""
    for _attempt in range(HOLD_ATTEMPTS):
        plan = _plan_or_refuse(session, wanted, candidates, allow_split)
        # Another buyer may take units between the read and the update: the update's
        # guards refuse them, the savepoint undoes the rows it did take, and the plan is
        # made again on fresh figures.
        with session.begin_nested() as savepoint:
            if _apply_holds(session, ctx, plan):
                return plan
            savepoint.rollback()
    raise InsufficientStock(
        "the stock kept changing while holding; try again",
        extra={"variant_ids": sorted({v for v, _ in wanted})},
    )


def _plan_or_refuse(
    session: Session,
    wanted: dict[tuple[int, int | None], int],
    candidates: Sequence[int],
    allow_split: bool,
) -> dict[tuple[int, int], int]:
    """A plan for every unit wanted; expired holds give their units back first when some
    are missing; still short is a 409 naming the first line that cannot be had."""
    plan, short = _plan_holds(session, wanted, candidates, allow_split)
    if short and expire_holds(session, variant_ids=[v for v, _ in short]):
        plan, short = _plan_holds(session, wanted, candidates, allow_split)
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
    return plan


def _insert_reservations(
    session: Session,
    ctx: Context,
    plan: dict[tuple[int, int], int],
    ttl: timedelta | None,
    status: ReservationStatus,
) -> list[Reservation]:
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
            select(StockLevel.variant_id, StockLevel.location_id, FREE_TO_SELL)
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
    guard = or_(*[and_(m, q <= FREE_TO_SELL) for m, (_, q) in zip(match, pairs, strict=True)])
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
            movement_row(ctx, v, loc, Reason.RESERVATION, 0, plan[(v, loc)], now)
            for (v, loc), _ in pairs
        ],
    )
    for v, loc, on_hand, reserved, safety, incoming, threshold in rows:
        snap = LevelSnapshot(v, loc, on_hand, reserved, safety, incoming, threshold)
        publish_change(session, snap, Reason.RESERVATION, 0, plan[(v, loc)])
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
        # The schema's checks make a refusal unreachable; it fails loudly if not.
        _unreserve(session, ctx, r, r.quantity, Reason.RELEASE)
    return released


def release_quantity(
    session: Session, ctx: Context, reservation_id: int, quantity: int
) -> Reservation:
    """Give back part of a reservation (a line cancelled or sent elsewhere); all of it
    releases the reservation."""
    reservation = get_reservation(session, reservation_id)
    _check_taking(reservation, quantity)
    if quantity == reservation.quantity:
        return release(session, ctx, [reservation_id])[0]
    if not _shrink(session, reservation_id, quantity):
        raise UnprocessableState(
            f"reservation {reservation_id} changed meanwhile", code="reservation-closed"
        )
    _unreserve(session, ctx, reservation, quantity, Reason.RELEASE)
    return get_reservation(session, reservation_id)


def _check_taking(reservation: Reservation, quantity: int) -> None:
    """``quantity`` units may leave the reservation: it is open and holds that many."""
    check_quantity(quantity, "body.quantity")
    if reservation.status not in ACTIVE_RESERVATION:
        raise UnprocessableState(
            f"reservation {reservation.id} is {reservation.status}", code="reservation-closed"
        )
    if quantity > reservation.quantity:
        raise ValidationProblem.field("body.quantity", f"only {reservation.quantity} reserved")


def _unreserve(
    session: Session, ctx: Context, reservation: Reservation, quantity: int, reason: Reason
) -> None:
    """Lower the row's reserved units by ``quantity`` (a sale lowers on hand as well)."""
    snap = change(
        session,
        ctx,
        reservation.variant_id,
        reservation.location_id,
        reason,
        on_hand_delta=-quantity if reason is Reason.SALE else 0,
        reserved_delta=-quantity,
        guard=Guard.PHYSICAL,
    )
    if snap is None:
        raise Conflict(f"reservation {reservation.id} does not match its stock row")


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
    _check_taking(reservation, qty)
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
    _unreserve(session, ctx, reservation, qty, Reason.SALE)
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
    return get_or_404(
        session, Reservation, reservation_id, f"reservation {reservation_id}", fresh=True
    )


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
