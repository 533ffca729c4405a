"""Purchase orders and receiving: an open order makes its units incoming at its location;
receipts move them on hand (partially or in full); cancelling drops what is outstanding.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from mercato.auth.service import audit
from mercato.db import get_or_404, utcnow
from mercato.errors import Conflict, UnprocessableState, ValidationProblem
from mercato.inventory.ledger import (
    Context,
    Guard,
    Reason,
    change,
    check_lines,
    check_location,
    check_quantity,
    claim_status,
    ensure_rows,
)
from mercato.inventory.models import PurchaseOrder, PurchaseOrderLine
from mercato.pagination import Page, decode_id_cursor, page_of


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
    check_lines(session, lines)
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
    ensure_rows(session, [(v, location_id) for v, _ in lines])
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
    return get_or_404(session, PurchaseOrder, po_id, f"purchase order {po_id}", fresh=True)


def list_purchase_orders(
    session: Session,
    *,
    location_ids: frozenset[int] | None,
    statuses: Sequence[str] | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[PurchaseOrder]:
    """Newest first; ``location_ids`` (None: all) limits them to a store user's locations."""
    query = select(PurchaseOrder).order_by(PurchaseOrder.id.desc())
    if location_ids is not None:
        query = query.where(PurchaseOrder.location_id.in_(sorted(location_ids)))
    if statuses:
        query = query.where(PurchaseOrder.status.in_(list(statuses)))
    after = decode_id_cursor(cursor)
    if after is not None:
        query = query.where(PurchaseOrder.id < after)
    return page_of(list(session.scalars(query.limit(limit + 1))), limit, key=lambda p: p.id)


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
        _book_receipt(session, sub, po, variant_id, qty)
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


def _book_receipt(
    session: Session, sub: Context, po: PurchaseOrder, variant_id: int, qty: int
) -> None:
    """Count the units on their line (never past what was ordered), then on hand."""
    done = session.execute(
        update(PurchaseOrderLine)
        .where(
            PurchaseOrderLine.purchase_order_id == po.id,
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


def cancel_purchase_order(session: Session, ctx: Context, po_id: int) -> PurchaseOrder:
    po = get_purchase_order(session, po_id)
    ctx.actor.require_location(po.location_id)
    if not claim_status(session, PurchaseOrder, po_id, ["open", "partially_received"], "cancelled"):
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
