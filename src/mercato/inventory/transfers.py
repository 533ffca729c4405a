"""Transfers between locations: draft -> shipped (on hand leaves the origin and becomes
incoming at the destination) -> received (on hand arrives; shortfalls are reported).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from mercato.auth.service import audit
from mercato.db import get_or_404, utcnow
from mercato.errors import UnprocessableState, ValidationProblem
from mercato.events import publish
from mercato.inventory.event_types import TransferDiscrepancy, TransferReceived, TransferShipped
from mercato.inventory.ledger import (
    Context,
    Guard,
    Reason,
    change,
    check_lines,
    check_location,
    claim_status,
    ensure_rows,
    shortage,
)
from mercato.inventory.models import Transfer, TransferLine
from mercato.locations import service as locations
from mercato.pagination import Page, decode_id_cursor, page_of


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
    check_lines(session, lines)
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


def get_transfer(session: Session, transfer_id: int) -> Transfer:
    return get_or_404(session, Transfer, transfer_id, f"transfer {transfer_id}", fresh=True)


def transfer_lines(session: Session, transfer_id: int) -> list[TransferLine]:
    return list(
        session.scalars(
            select(TransferLine)
            .where(TransferLine.transfer_id == transfer_id)
            .order_by(TransferLine.variant_id)
        )
    )


def ship_transfer(session: Session, ctx: Context, transfer_id: int) -> Transfer:
    transfer = get_transfer(session, transfer_id)
    ctx.actor.require_location(transfer.from_location_id)
    if not claim_status(session, Transfer, transfer_id, ["draft"], "shipped", shipped_at=utcnow()):
        raise UnprocessableState(f"transfer {transfer_id} is {transfer.status}, not draft")
    lines = transfer_lines(session, transfer_id)
    sub = Context(ctx.actor, ctx.channel_id, "transfer", str(transfer_id), ctx.note)
    ensure_rows(session, [(line.variant_id, transfer.to_location_id) for line in lines])
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
            raise shortage(session, line.variant_id, transfer.from_location_id, line.quantity)
        change(
            session,
            sub,
            line.variant_id,
            transfer.to_location_id,
            Reason.TRANSFER_IN,
            incoming_delta=line.quantity,
        )
    publish(session, TransferShipped(transfer_id=transfer_id))
    return get_transfer(session, transfer_id)


def receive_transfer(
    session: Session, ctx: Context, transfer_id: int, received: dict[int, int] | None
) -> tuple[Transfer, list[dict[str, int]]]:
    """Receive shipped units; anything short of what was shipped is reported as discrepancy."""
    transfer = get_transfer(session, transfer_id)
    ctx.actor.require_location(transfer.to_location_id)
    lines = transfer_lines(session, transfer_id)
    counts = _received_counts(lines, received)
    if not claim_status(
        session, Transfer, transfer_id, ["shipped"], "received", received_at=utcnow()
    ):
        raise UnprocessableState(f"transfer {transfer_id} is {transfer.status}, not shipped")
    sub = Context(ctx.actor, ctx.channel_id, "transfer", str(transfer_id), ctx.note)
    discrepancies = []
    for line in lines:
        got = counts.get(line.variant_id, 0)
        _book_received(session, sub, transfer, line, got)
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
    short = tuple(TransferDiscrepancy(**d) for d in discrepancies)
    publish(session, TransferReceived(transfer_id=transfer_id, discrepancies=short))
    return get_transfer(session, transfer_id), discrepancies


def _received_counts(
    lines: Sequence[TransferLine], received: dict[int, int] | None
) -> dict[int, int]:
    """Units received per variant (all that was shipped when not told), each 0 to shipped."""
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
    return counts


def _book_received(
    session: Session, sub: Context, transfer: Transfer, line: TransferLine, got: int
) -> None:
    """``got`` units arrive on hand; the whole shipped quantity stops being incoming."""
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
