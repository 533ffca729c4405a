from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Query
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from mercato.auth.permissions import Permission
from mercato.auth.principal import Principal
from mercato.channels import service as channels
from mercato.deps import DbSession, IdempotencyKey, Pagination, require
from mercato.errors import ValidationProblem
from mercato.idempotency import Idempotent, scope_for
from mercato.input_checks import id_list
from mercato.inventory import service
from mercato.inventory.models import PurchaseOrder, Reservation, StockLevel, Transfer
from mercato.inventory.schemas import (
    AdjustmentIn,
    AllocateIn,
    AvailabilityOut,
    CountIn,
    CountLineOut,
    CountOut,
    Discrepancy,
    FulfilIn,
    LevelOut,
    LevelPage,
    LocationStockOut,
    MovementOut,
    PolicyIn,
    PurchaseOrderIn,
    PurchaseOrderLineOut,
    PurchaseOrderOut,
    PurchaseReceiptIn,
    ReceiveIn,
    ReservationIn,
    ReservationOut,
    ReservationsOut,
    TransferIn,
    TransferLineOut,
    TransferOut,
    TransferPage,
    VariantAvailabilityOut,
)
from mercato.locations import service as locations
from mercato.routing import router
from mercato.schemas import PageOut

api = router("/v1/inventory", tags=["inventory"])

Reader = Annotated[Principal, Depends(require(Permission.INVENTORY_READ))]
Writer = Annotated[Principal, Depends(require(Permission.INVENTORY_WRITE))]


def level_out(level: StockLevel | service.LevelSnapshot) -> LevelOut:
    return LevelOut(
        variant_id=level.variant_id,
        location_id=level.location_id,
        on_hand=level.on_hand,
        reserved=level.reserved,
        safety_stock=level.safety_stock,
        available=max(0, level.on_hand - level.reserved - level.safety_stock),
        incoming=level.incoming,
        low_stock_threshold=level.low_stock_threshold,
    )


def transfer_out(
    session: Session, transfer: Transfer, discrepancies: list[dict[str, int]] | None = None
) -> TransferOut:
    return TransferOut(
        id=transfer.id,
        from_location_id=transfer.from_location_id,
        to_location_id=transfer.to_location_id,
        status=transfer.status,
        note=transfer.note,
        created_at=transfer.created_at,
        shipped_at=transfer.shipped_at,
        received_at=transfer.received_at,
        lines=[
            TransferLineOut.model_validate(x) for x in service.transfer_lines(session, transfer.id)
        ],
        discrepancies=[Discrepancy(**d) for d in discrepancies or []],
    )


def purchase_order_out(session: Session, po: PurchaseOrder) -> PurchaseOrderOut:
    return PurchaseOrderOut(
        id=po.id,
        reference=po.reference,
        supplier=po.supplier,
        location_id=po.location_id,
        status=po.status,
        expected_at=po.expected_at,
        created_at=po.created_at,
        lines=[
            PurchaseOrderLineOut.model_validate(x)
            for x in service.purchase_order_lines(session, po.id)
        ],
    )


def reservations_out(reservations: list[Reservation]) -> ReservationsOut:
    return ReservationsOut(reservations=[ReservationOut.model_validate(r) for r in reservations])


def _scoped_filter(principal: Principal, location_id: int | None) -> None:
    """A list filtered to one location: store staff may only name one of theirs."""
    if location_id is not None:
        principal.require_location(location_id)


def _require_any_location(principal: Principal, *location_ids: int) -> None:
    """Store staff read a document (transfer) only when one of its ends is theirs.

    The answer is the 403 writes give, so an id outside the caller's stores reads the
    same whether it names a transfer or nothing.
    """
    if not any(principal.can_access_location(x) for x in location_ids):
        principal.require_location(location_ids[0])


# --- levels and movements -----------------------------------------------------------------


@api.get("/levels", response_model=LevelPage)
def list_levels(
    session: DbSession,
    page: Pagination,
    principal: Reader,
    variant_id: int | None = None,
    location_id: int | None = None,
    low_stock: bool = False,
) -> LevelPage:
    cursor, limit = page
    _scoped_filter(principal, location_id)
    result = service.list_levels(
        session,
        variant_id=variant_id,
        location_id=location_id,
        location_ids=principal.location_ids,
        low_only=low_stock,
        cursor=cursor,
        limit=limit,
    )
    return LevelPage(items=[level_out(x) for x in result.items], next_cursor=result.next_cursor)


@api.get("/levels/{variant_id}/{location_id}", response_model=LevelOut)
def get_level(variant_id: int, location_id: int, session: DbSession, principal: Reader) -> LevelOut:
    principal.require_location(location_id)
    return level_out(service.get_level(session, variant_id, location_id))


@api.patch("/levels/{variant_id}/{location_id}", response_model=LevelOut)
def set_policy(
    variant_id: int, location_id: int, body: PolicyIn, session: DbSession, principal: Writer
) -> LevelOut:
    sent = body.model_fields_set
    snap = service.set_policy(
        session,
        principal,
        variant_id,
        location_id,
        safety_stock=body.safety_stock,
        low_stock_threshold=body.low_stock_threshold,
        clear_threshold="low_stock_threshold" in sent and body.low_stock_threshold is None,
    )
    return level_out(snap)


@api.get("/movements", response_model=PageOut[MovementOut])
def list_movements(
    session: DbSession,
    page: Pagination,
    principal: Reader,
    variant_id: int | None = None,
    location_id: int | None = None,
    reason: service.Reason | None = None,
    reference_type: Annotated[str | None, Query(max_length=30)] = None,
    reference_id: Annotated[str | None, Query(max_length=64)] = None,
) -> PageOut[MovementOut]:
    cursor, limit = page
    _scoped_filter(principal, location_id)
    result = service.list_movements(
        session,
        variant_id=variant_id,
        location_id=location_id,
        location_ids=principal.location_ids,
        reason=reason.value if reason else None,
        reference_type=reference_type,
        reference_id=reference_id,
        cursor=cursor,
        limit=limit,
    )
    return PageOut(
        items=[MovementOut.model_validate(m) for m in result.items], next_cursor=result.next_cursor
    )


@api.post("/adjustments", response_model=list[LevelOut], status_code=201)
def post_adjustment(
    body: AdjustmentIn, session: DbSession, principal: Writer, key: IdempotencyKey
) -> JSONResponse:
    """Receipts, damage, manual sales and returns at one location (all lines or none)."""

    def run() -> list[LevelOut]:
        if body.channel_id is not None and not channels.exists(session, body.channel_id):
            raise ValidationProblem.field("body.channel_id", f"unknown channel {body.channel_id}")
        ctx = service.Context(principal, body.channel_id, "adjustment", body.reference, body.note)
        lines = [service.AdjustmentLine(x.variant_id, x.quantity, x.reason) for x in body.lines]
        return [level_out(s) for s in service.adjust(session, ctx, body.location_id, lines)]

    return Idempotent(session, scope_for("inventory.adjust", principal), key, body).run(run)


# --- reservations -------------------------------------------------------------------------


@api.post("/reservations", response_model=ReservationsOut, status_code=201)
def create_reservation(
    body: ReservationIn, session: DbSession, principal: Writer, key: IdempotencyKey
) -> JSONResponse:
    """Hold stock for a cart, a checkout or a staff order (all lines or none)."""

    def run() -> ReservationsOut:
        candidates: list[int] = []
        if body.channel_id is not None:
            candidates = list(channels.context_for_channel(session, body.channel_id).location_order)
        elif any(line.location_id is None for line in body.lines):
            raise ValidationProblem.field(
                "body.channel_id", "needed when a line has no location_id"
            )
        for i, line in enumerate(body.lines):
            if line.location_id is not None:
                service.check_location(
                    session, principal, line.location_id, f"body.lines[{i}].location_id"
                )
        service.check_variants(session, [line.variant_id for line in body.lines], "body.lines")
        candidates = [c for c in candidates if principal.can_access_location(c)]
        ctx = service.Context(principal, body.channel_id, body.reference_type, body.reference_id)
        held = service.hold(
            session,
            ctx,
            [service.HoldLine(x.variant_id, x.quantity, x.location_id) for x in body.lines],
            candidate_locations=candidates,
            ttl=timedelta(seconds=body.ttl_seconds),
            allow_split=body.allow_split,
        )
        return reservations_out(held)

    return Idempotent(session, scope_for("inventory.hold", principal), key, body).run(run)


@api.get("/reservations/{reservation_id}", response_model=ReservationOut)
def get_reservation(reservation_id: int, session: DbSession, principal: Reader) -> ReservationOut:
    reservation = service.get_reservation(session, reservation_id)
    principal.require_location(reservation.location_id)
    return ReservationOut.model_validate(reservation)


def _reservation_ctx(
    session: Session, principal: Principal, reservation_id: int
) -> service.Context:
    reservation = service.get_reservation(session, reservation_id)
    principal.require_location(reservation.location_id)
    return service.Context(principal, reservation.channel_id, "reservation", str(reservation_id))


@api.post("/reservations/{reservation_id}/release", response_model=ReservationOut)
def release_reservation(
    reservation_id: int, session: DbSession, principal: Writer
) -> ReservationOut:
    ctx = _reservation_ctx(session, principal, reservation_id)
    service.release(session, ctx, [reservation_id])
    return ReservationOut.model_validate(service.get_reservation(session, reservation_id))


@api.post("/reservations/{reservation_id}/allocate", response_model=ReservationOut)
def allocate_reservation(
    reservation_id: int, body: AllocateIn, session: DbSession, principal: Writer
) -> ReservationOut:
    ctx = _reservation_ctx(session, principal, reservation_id)
    service.allocate(session, ctx, [reservation_id], body.reference_type, body.reference_id)
    return ReservationOut.model_validate(service.get_reservation(session, reservation_id))


@api.post("/reservations/{reservation_id}/fulfil", response_model=ReservationOut)
def fulfil_reservation(
    reservation_id: int,
    body: FulfilIn,
    session: DbSession,
    principal: Writer,
    key: IdempotencyKey,
) -> JSONResponse:
    """Convert reserved units into a sale (shipped or handed over)."""

    def run() -> ReservationOut:
        ctx = _reservation_ctx(session, principal, reservation_id)
        return ReservationOut.model_validate(
            service.fulfil(session, ctx, reservation_id, body.quantity)
        )

    scope = scope_for(f"inventory.fulfil.{reservation_id}", principal)
    return Idempotent(session, scope, key, body).run(run, status_code=200)


# --- transfers ----------------------------------------------------------------------------


@api.post("/transfers", response_model=TransferOut, status_code=201)
def create_transfer(
    body: TransferIn, session: DbSession, principal: Writer, key: IdempotencyKey
) -> JSONResponse:
    def run() -> TransferOut:
        ctx = service.Context(principal, note=body.note)
        transfer = service.create_transfer(
            session,
            ctx,
            body.from_location_id,
            body.to_location_id,
            [(x.variant_id, x.quantity) for x in body.lines],
            ship_now=body.ship,
        )
        return transfer_out(session, service.get_transfer(session, transfer.id))

    return Idempotent(session, scope_for("inventory.transfer", principal), key, body).run(run)


@api.get("/transfers", response_model=TransferPage)
def list_transfers(session: DbSession, page: Pagination, principal: Reader) -> TransferPage:
    cursor, limit = page
    result = service.list_transfers(
        session, location_ids=principal.location_ids, cursor=cursor, limit=limit
    )
    return TransferPage(
        items=[transfer_out(session, t) for t in result.items], next_cursor=result.next_cursor
    )


@api.get("/transfers/{transfer_id}", response_model=TransferOut)
def get_transfer(transfer_id: int, session: DbSession, principal: Reader) -> TransferOut:
    transfer = service.get_transfer(session, transfer_id)
    _require_any_location(principal, transfer.from_location_id, transfer.to_location_id)
    return transfer_out(session, transfer)


@api.post("/transfers/{transfer_id}/ship", response_model=TransferOut)
def ship_transfer(transfer_id: int, session: DbSession, principal: Writer) -> TransferOut:
    transfer = service.ship_transfer(session, service.Context(principal), transfer_id)
    return transfer_out(session, transfer)


@api.post("/transfers/{transfer_id}/receive", response_model=TransferOut)
def receive_transfer(
    transfer_id: int, body: ReceiveIn, session: DbSession, principal: Writer
) -> TransferOut:
    received = None if body.lines is None else {x.variant_id: x.quantity for x in body.lines}
    if body.lines is not None and len(received or {}) != len(body.lines):
        raise ValidationProblem.field("body.lines", "a variant is listed twice")
    ctx = service.Context(principal, note=body.note)
    transfer, discrepancies = service.receive_transfer(session, ctx, transfer_id, received)
    return transfer_out(session, transfer, discrepancies)


# --- purchase orders ------------------------------------------------------------------------


@api.post("/purchase-orders", response_model=PurchaseOrderOut, status_code=201)
def create_purchase_order(
    body: PurchaseOrderIn, session: DbSession, principal: Writer
) -> PurchaseOrderOut:
    po = service.create_purchase_order(
        session,
        service.Context(principal),
        body.reference,
        body.supplier,
        body.location_id,
        [(x.variant_id, x.quantity) for x in body.lines],
        body.expected_at,
    )
    return purchase_order_out(session, po)


@api.get("/purchase-orders", response_model=PageOut[PurchaseOrderOut])
def list_purchase_orders(
    session: DbSession,
    page: Pagination,
    principal: Reader,
    location_id: int | None = None,
    status: Annotated[
        str | None, Query(pattern="^(open|partially_received|received|cancelled)$")
    ] = None,
) -> PageOut[PurchaseOrderOut]:
    """Purchase orders, newest first (store staff see their own locations only)."""
    cursor, limit = page
    places = principal.location_ids
    if location_id is not None:
        principal.require_location(location_id)
        places = frozenset({location_id})
    result = service.list_purchase_orders(
        session,
        location_ids=places,
        statuses=[status] if status else None,
        cursor=cursor,
        limit=limit,
    )
    return PageOut(
        items=[purchase_order_out(session, po) for po in result.items],
        next_cursor=result.next_cursor,
    )


@api.get("/purchase-orders/{po_id}", response_model=PurchaseOrderOut)
def get_purchase_order(po_id: int, session: DbSession, principal: Reader) -> PurchaseOrderOut:
    po = service.get_purchase_order(session, po_id)
    principal.require_location(po.location_id)
    return purchase_order_out(session, po)


@api.post("/purchase-orders/{po_id}/receipts", response_model=PurchaseOrderOut, status_code=201)
def receive_purchase_order(
    po_id: int,
    body: PurchaseReceiptIn,
    session: DbSession,
    principal: Writer,
    key: IdempotencyKey,
) -> JSONResponse:
    """Receive goods against a purchase order (a partial delivery leaves it open)."""

    def run() -> PurchaseOrderOut:
        received = {x.variant_id: x.quantity for x in body.lines}
        if len(received) != len(body.lines):
            raise ValidationProblem.field("body.lines", "a variant is listed twice")
        ctx = service.Context(principal, note=body.note)
        return purchase_order_out(
            session, service.receive_purchase_order(session, ctx, po_id, received)
        )

    return Idempotent(session, scope_for(f"inventory.po.{po_id}", principal), key, body).run(run)


@api.post("/purchase-orders/{po_id}/cancel", response_model=PurchaseOrderOut)
def cancel_purchase_order(po_id: int, session: DbSession, principal: Writer) -> PurchaseOrderOut:
    return purchase_order_out(
        session, service.cancel_purchase_order(session, service.Context(principal), po_id)
    )


# --- counts --------------------------------------------------------------------------------


@api.post("/counts", response_model=CountOut, status_code=201)
def post_count(
    body: CountIn, session: DbSession, principal: Writer, key: IdempotencyKey
) -> JSONResponse:
    """Post a cycle count: on hand becomes what was counted, differences are movements."""

    def run() -> CountOut:
        ctx = service.Context(principal, note=body.note)
        count, lines = service.post_count(
            session, ctx, body.location_id, [(x.variant_id, x.counted) for x in body.lines]
        )
        return CountOut(
            id=count.id,
            location_id=count.location_id,
            note=count.note,
            created_at=count.created_at,
            lines=[
                CountLineOut(
                    variant_id=x.variant_id,
                    expected=x.expected,
                    counted=x.counted,
                    difference=x.counted - x.expected,
                )
                for x in lines
            ],
        )

    return Idempotent(session, scope_for("inventory.count", principal), key, body).run(run)


# --- availability -------------------------------------------------------------------------


@api.get("/availability", response_model=AvailabilityOut)
def staff_availability(
    session: DbSession,
    principal: Reader,
    variant_ids: Annotated[str, Query(description="Comma-separated variant ids")],
    channel_id: int | None = None,
    latitude: Annotated[float | None, Query(ge=-90, le=90)] = None,
    longitude: Annotated[float | None, Query(ge=-180, le=180)] = None,
) -> AvailabilityOut:
    """Availability to promise, for one channel's locations or every location."""
    ids = id_list(variant_ids, "query.variant_ids")
    channel_code = None
    if channel_id is not None:
        context = channels.context_for_channel(session, channel_id)
        location_ids: list[int] = list(context.location_order)
        channel_code = context.code
    else:
        location_ids = locations.all_ids(session)
    totals = service.availability(session, ids, location_ids)
    nearby = service.nearby_stock(session, ids, location_ids, latitude, longitude, limit=50)
    return AvailabilityOut(
        channel=channel_code,
        variants=[
            VariantAvailabilityOut(variant_id=v, available=n, in_stock=n > 0)
            for v, n in totals.items()
        ],
        locations=[LocationStockOut(**vars(x)) for x in nearby],
    )


@api.get("/verify")
def verify(session: DbSession, principal: Reader) -> dict[str, object]:
    """Prove that every stock row equals the sum of its ledger movements."""
    rows, bad = service.verify(session)
    visible = [m for m in bad if principal.can_access_location(m.location_id)]
    return {"rows": rows, "ok": not bad, "mismatches": [vars(m) for m in visible[:100]]}
