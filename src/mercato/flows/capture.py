"""Money follows the goods: payment is captured for what has left, as it leaves.

Shipping a task and handing over a click & collect order first commit the fulfilment
(labels, stock sold, lines fulfilled), then capture, with no transaction open, what the
units that left are worth: split shipments capture in parts, cash on delivery is settled
when the parcel arrives. A capture the provider refuses is left for the periodic sweep,
which retries orders with shipped units and authorisations still open.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mercato.auth.principal import Principal
from mercato.db import Database
from mercato.errors import Problem
from mercato.fulfillment import service as fulfillment
from mercato.money import from_minor, to_minor
from mercato.orders import service as orders
from mercato.payments import service as payments
from mercato.payments.models import PaymentStatus

# Methods settled when the goods arrive (the courier collects), not when they ship.
ON_DELIVERY = frozenset({"cash_on_delivery"})
_CAPTURABLE = (PaymentStatus.AUTHORIZED.value, PaymentStatus.PARTIALLY_CAPTURED.value)


@dataclass(frozen=True)
class Shipped:
    order_id: int
    transfer_id: int | None


def ship(
    database: Database,
    actor: Principal,
    task_id: int,
    *,
    packages: Sequence[fulfillment.Package],
    carrier_code: str | None,
    service_code: str | None,
    request_id: str | None = None,
) -> Shipped:
    """Labels bought, units out of stock (a sale here), the order's lines fulfilled; then
    the payment for what shipped is captured."""
    with database.transaction() as session:
        session.info["request_id"] = request_id
        result = fulfillment.ship(
            session,
            actor,
            task_id,
            packages=packages,
            carrier_code=carrier_code,
            service_code=service_code,
        )
        shipped = Shipped(result.task.order_id, result.transfer_id)
    capture_due(database, shipped.order_id, actor=actor)
    return shipped


def hand_over(
    database: Database, actor: Principal, task_id: int, code: str, *, request_id: str | None = None
) -> int:
    """The customer collects with their code; the payment is settled (cash on delivery
    included: this is the delivery). Returns the order's id."""
    with database.transaction() as session:
        session.info["request_id"] = request_id
        order_id = fulfillment.hand_over(session, actor, task_id, code).id
    capture_due(database, order_id, on_delivery=True, actor=actor)
    return order_id


def capture_due(
    database: Database, order_id: int, *, on_delivery: bool = False, actor: Principal | None = None
) -> list[Any]:
    """Capture authorised payments up to what the shipped units are worth (split shipments
    capture in parts). Cash on delivery is settled only ``on_delivery``."""
    with database.read() as session:
        order = orders.get_order(session, order_id)
        due = orders.due_now(order, orders.order_lines(session, order_id))
        found = payments.payments_for_reference(session, order.number)
        captured = sum((p.captured_minor for p in found), 0)
        currency = order.currency
        capturable = [
            (p.id, p.authorized_minor - p.captured_minor - p.capture_pending_minor, p.currency)
            for p in found
            if p.status in _CAPTURABLE and (on_delivery or p.method not in ON_DELIVERY)
        ]
    left = to_minor(due, currency) - captured
    done = []
    for payment_id, open_minor, cur in capturable:
        if left <= 0:
            break
        take = min(left, open_minor)
        if take <= 0:
            continue
        try:
            done.append(
                payments.capture(
                    database,
                    payment_id,
                    from_minor(take, cur),
                    actor=actor or Principal.system("capture"),
                )
            )
            left -= take
        except Problem:
            continue  # reconciled later; the next shipment or the periodic job retries
    return done


def capture_sweep(database: Database, limit: int = 50) -> int:
    """The periodic retry: orders with shipped units and uncaptured authorisations."""
    with database.read() as session:
        candidates = orders.recently_shipped(session, limit)
    return sum(len(capture_due(database, order_id)) for order_id in candidates)


def capture_delivered_cod(database: Database) -> None:
    """Cash on delivery is settled when the parcel arrives."""
    with database.read() as session:
        order_ids = fulfillment.delivered_order_ids(session, limit=200)
    for order_id in order_ids:
        capture_due(database, order_id, on_delivery=True)
