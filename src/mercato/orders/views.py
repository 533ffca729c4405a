"""How an order is shown: the same shape for staff, shoppers and stored checkout answers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from mercato.auth.permissions import Permission
from mercato.auth.principal import Principal
from mercato.orders import service
from mercato.orders.models import Order, OrderLine, OrderNote
from mercato.orders.schemas import ActivityOut, NoteOut, OrderLineOut, OrderOut, TransitionOut

# What an address keeps for readers without customers:pii: the country, which is what
# figures by market need (the same rule as customer profiles).
KEPT_ADDRESS_FIELDS = ("country",)


def order_out(
    session: Session,
    order: Order,
    *,
    with_timeline: bool = False,
    lines: Sequence[OrderLine] | None = None,
    reader: Principal | None = None,
) -> OrderOut:
    """The order; personal data only for a ``reader`` with customers:pii (or none given:
    the shopper's own order, stored checkout answers)."""
    found = lines if lines is not None else service.order_lines(session, order.id)
    out = OrderOut.model_validate(order)
    out.lines = [OrderLineOut.model_validate(x).in_currency(order.currency) for x in found]
    if with_timeline:
        out.timeline = [
            TransitionOut.model_validate(t) for t in service.timeline(session, order.id)
        ]
        out.activity = _activity(session, order.id, out.timeline)
    if reader is not None and not sees_personal_data(reader):
        out = _redacted(out)
    return out


def _activity(session: Session, order_id: int, moves: list[TransitionOut]) -> list[ActivityOut]:
    entries = [
        ActivityOut(
            at=t.at,
            kind="status",
            actor_type=t.actor_type,
            actor_id=t.actor_id,
            from_status=t.from_status,
            to_status=t.to_status,
            text=t.reason,
        )
        for t in moves
    ]
    entries += [
        ActivityOut(
            at=n.created_at,
            kind=n.kind,
            actor_type=n.author_type,
            actor_id=n.author_id,
            text=n.body,
        )
        for n in service.notes(session, order_id, with_holds=True)
    ]
    return sorted(entries, key=lambda e: e.at)


def sees_personal_data(reader: Principal) -> bool:
    return reader.has(Permission.CUSTOMERS_PII)


def _address(address: dict[str, Any] | None) -> dict[str, Any] | None:
    if address is None:
        return None
    return {k: address[k] for k in KEPT_ADDRESS_FIELDS if address.get(k) is not None}


def _redacted(out: OrderOut) -> OrderOut:
    """Without customers:pii (analysts): no email, no address beyond the country, and no
    reason typed by staff (free text that may quote the customer)."""
    return out.model_copy(
        update={
            "email": None,
            "shipping_address": _address(out.shipping_address),
            "billing_address": _address(out.billing_address),
            "timeline": [
                t.model_copy(update={"reason": None}) if t.actor_type == "staff" else t
                for t in out.timeline
            ],
            "activity": [
                a.model_copy(update={"text": None})
                if a.actor_type == "staff" or a.kind != "status"
                else a
                for a in out.activity
            ],
        }
    )


def note_out(note: OrderNote, reader: Principal) -> NoteOut:
    out = NoteOut.model_validate(note)
    return out if sees_personal_data(reader) else out.model_copy(update={"body": None})


def order_json(
    session: Session, order: Order, lines: Sequence[OrderLine] | None = None
) -> dict[str, Any]:
    """JSON-ready (amounts as strings, never floats)."""
    return order_out(session, order, lines=lines).model_dump(mode="json")
