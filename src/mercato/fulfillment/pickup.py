"""Click & collect: the pickup store receives transfers, makes orders ready with a code
and a collection deadline, hands them over against the code; uncollected orders expire."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.db import utcnow
from mercato.errors import Forbidden, NotFound, UnprocessableState
from mercato.events import publish
from mercato.fulfillment import messages
from mercato.fulfillment.carriers import recipient_of
from mercato.fulfillment.event_types import OrderReadyForPickup
from mercato.fulfillment.models import FulfillmentLine, FulfillmentOrder
from mercato.fulfillment.policies import pickup_days
from mercato.fulfillment.tasks import (
    consume_stock,
    get_task,
    move_task,
    task_for,
    task_lines,
    units_by_line,
    units_by_variant,
)
from mercato.fulfillment.tracking import complete_if_done
from mercato.inventory import service as inventory
from mercato.locations import service as locations
from mercato.marketing import notifier
from mercato.orders import service as orders
from mercato.orders.models import Order


def receive_transfer_for_pickup(
    session: Session, actor: Principal, task_id: int, transfer_id: int
) -> FulfillmentOrder:
    """The pickup store received the transfer: its stock is held for the customer."""
    transfer_task = get_task(session, task_id)
    if transfer_task.kind != "transfer" or transfer_task.destination_location_id is None:
        raise UnprocessableState("not a transfer for pickup", code="illegal-transition")
    actor.require_location(transfer_task.destination_location_id)
    order = orders.get_order(session, transfer_task.order_id)
    ctx = inventory.Context(actor, order.channel_id, "order", order.number)
    inventory.receive_transfer(session, ctx, transfer_id, None)
    moved = [x for x in task_lines(session, task_id) if x.status == "shipped"]
    held = inventory.hold(
        session,
        ctx,
        [
            inventory.HoldLine(v, q, transfer_task.destination_location_id)
            for v, q in units_by_variant(moved).items()
        ],
        status=inventory.ReservationStatus.ALLOCATED,
    )
    reservation_at = {r.variant_id: r.id for r in held}
    store_task = session.scalar(
        select(FulfillmentOrder).where(
            FulfillmentOrder.order_id == order.id,
            FulfillmentOrder.kind == "pickup",
            FulfillmentOrder.location_id == transfer_task.destination_location_id,
        )
    )
    if store_task is None:
        raise NotFound("no pickup order waits for this transfer")
    session.add_all(
        FulfillmentLine(
            fulfillment_order_id=store_task.id,
            order_line_id=x.order_line_id,
            variant_id=x.variant_id,
            quantity=x.quantity,
            reservation_id=reservation_at.get(x.variant_id),
            status="open",
        )
        for x in moved
    )
    for x in moved:
        x.status = "delivered_to_store"
    if store_task.status == "awaiting_transfer":
        move_task(session, store_task, ("awaiting_transfer",), "open")
    session.flush()
    return store_task


def _code_hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


@dataclass(frozen=True)
class ReadyForPickup:
    task: FulfillmentOrder
    code: str
    # The outbox message that tells the customer (None when the order has nobody to tell).
    message_id: int | None = None


def ready_for_pickup(session: Session, actor: Principal, task_id: int) -> ReadyForPickup:
    """The items are on the pickup shelf: a code for the customer, and a collection deadline.
    The customer is told at once (code, store, deadline); only the hash of the code stays."""
    task, order = task_for(session, actor, task_id, ("open", "picking"))
    if task.kind != "pickup":
        raise UnprocessableState(
            "only a pickup order is made ready for pickup", code="illegal-transition"
        )
    code = f"{secrets.randbelow(10**6):06d}"
    now = utcnow()
    move_task(
        session,
        task,
        ("open", "picking"),
        "ready_for_pickup",
        pickup_code_hash=_code_hash(code),
        ready_at=now,
        expires_at=now + timedelta(days=pickup_days(session)),
    )
    message_id = _notify_ready(session, order, task, code)
    publish(
        session,
        OrderReadyForPickup(
            **orders.order_facts(order),
            fulfillment_order_id=task.id,
            location_id=task.location_id,
            expires_at=task.expires_at,
            message_id=message_id,
        ),
    )
    return ReadyForPickup(task, code, message_id)


def _notify_ready(session: Session, order: Order, task: FulfillmentOrder, code: str) -> int | None:
    """Queue the "ready for pickup" email in the notifier's outbox (a service message: no
    marketing consent applies). It goes to the order's email, in the order's language,
    for a guest too (the message then belongs to no profile)."""
    # A guest checkout with the email of an account: the message belongs to it.
    customer_id, recipient, locale = recipient_of(session, order)
    if not recipient or task.expires_at is None:
        return None
    store = locations.get_location(session, task.location_id)
    rendered = messages.render_ready_for_pickup(
        locale,
        messages.PickupDetails(
            order_number=order.number,
            code=code,
            store=store.name,
            address=", ".join(
                part for part in (store.address_line1, store.postal_code, store.city) if part
            ),
            expires_at=task.expires_at,
            timezone=store.timezone,
        ),
    )
    message = notifier.queue_message(
        session,
        notifier.NewMessage(
            customer_id=customer_id,
            channel=notifier.MessageChannel.EMAIL,
            recipient=recipient,
            template=messages.READY_FOR_PICKUP,
            locale=rendered.language,
            subject=rendered.subject,
            body_text=rendered.text,
            body_html=rendered.html,
            purpose=None,
            reference_type="fulfillment_order",
            reference_id=str(task.id),
            order_id=order.id,
        ),
    )
    return message.id


def hand_over(session: Session, actor: Principal, task_id: int, code: str) -> Order:
    task, order = task_for(session, actor, task_id, ("ready_for_pickup",))
    if task.pickup_code_hash is None or not hmac.compare_digest(
        task.pickup_code_hash, _code_hash(code.strip())
    ):
        raise Forbidden("the pickup code does not match", code="pickup-code-mismatch")
    lines = [x for x in task_lines(session, task.id) if x.status == "open"]
    consume_stock(session, actor, order, lines, "handed_over")
    move_task(session, task, ("ready_for_pickup",), "picked_up", handed_over_at=utcnow())
    orders.record_fulfilled(
        session, actor, order.id, units_by_line(lines), reason="collected in store"
    )
    return complete_if_done(session, actor, order.id, reason="handed over in store")


def expired_pickups(session: Session, now: datetime | None = None) -> list[FulfillmentOrder]:
    return list(
        session.scalars(
            select(FulfillmentOrder).where(
                FulfillmentOrder.status == "ready_for_pickup",
                FulfillmentOrder.expires_at < (now or utcnow()),
            )
        )
    )


def expiring_pickups(
    session: Session,
    within: timedelta,
    *,
    location_ids: Iterable[int] | None = None,
    limit: int = 5,
    now: datetime | None = None,
) -> list[FulfillmentOrder]:
    """Parcels waiting on the shelf whose pickup time ends within ``within`` (the customer
    should be reminded), soonest first; store staff pass their locations."""
    moment = now or utcnow()
    query = select(FulfillmentOrder).where(
        FulfillmentOrder.status == "ready_for_pickup",
        FulfillmentOrder.expires_at < moment + within,
    )
    if location_ids is not None:
        query = query.where(FulfillmentOrder.location_id.in_(sorted(location_ids)))
    return list(session.scalars(query.order_by(FulfillmentOrder.expires_at).limit(limit)))
