"""Per-location tasks (fulfilment orders): listing, picking, packing, giving units back.

A task's status changes with one conditional UPDATE (:func:`move_task`); units leave stock
(a ``sale`` in the ledger) only when a parcel ships or a customer collects
(:func:`consume_stock`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.db import get_or_404, utcnow
from mercato.errors import Conflict, UnprocessableState, ValidationProblem
from mercato.fulfillment.models import FulfillmentLine, FulfillmentOrder
from mercato.inventory import service as inventory
from mercato.orders import service as orders
from mercato.orders.models import Order

OPEN_TASK = ("open", "picking", "packed", "awaiting_transfer", "ready_for_pickup")


def get_task(session: Session, task_id: int) -> FulfillmentOrder:
    return get_or_404(
        session, FulfillmentOrder, task_id, f"fulfillment order {task_id}", fresh=True
    )


def task_lines(session: Session, task_id: int) -> list[FulfillmentLine]:
    return list(
        session.scalars(
            select(FulfillmentLine)
            .where(FulfillmentLine.fulfillment_order_id == task_id)
            .order_by(FulfillmentLine.id)
        )
    )


def tasks_for_order(session: Session, order_id: int) -> list[FulfillmentOrder]:
    return list(
        session.scalars(
            select(FulfillmentOrder)
            .where(FulfillmentOrder.order_id == order_id)
            .order_by(FulfillmentOrder.id)
        )
    )


def open_units(session: Session, task_id: int) -> dict[int, int]:
    """The task's units still to hand over or ship, per order line."""
    quantities: dict[int, int] = {}
    for x in task_lines(session, task_id):
        if x.status == "open":
            quantities[x.order_line_id] = quantities.get(x.order_line_id, 0) + x.quantity
    return quantities


def release_order_units(
    session: Session, actor: Principal, order: Order, quantities: dict[int, int]
) -> None:
    """Give back the stock the order holds for cancelled units (order line id -> units):
    first what its tasks' lines hold at locations (a task with nothing left open is
    cancelled), then any hold not yet given to a location."""
    # The ledger names the order; the reason typed (which may quote the customer) stays on
    # the order's timeline, encrypted and shown only to readers of personal data.
    ctx = inventory.Context(actor, order.channel_id, "order", order.number, note="cancelled")
    left = dict(quantities)
    for task in tasks_for_order(session, order.id):
        lines = task_lines(session, task.id)
        for x in lines:
            take = min(left.get(x.order_line_id, 0), x.quantity)
            if x.status != "open" or take <= 0:
                continue
            if x.reservation_id is not None:
                inventory.release_quantity(session, ctx, x.reservation_id, take)
            if take == x.quantity:
                x.status = "cancelled"
            else:
                x.quantity -= take
            left[x.order_line_id] -= take
        if task.status in OPEN_TASK and all(x.status != "open" for x in lines):
            task.status = "cancelled"
    variants = {x.id: x.variant_id for x in orders.order_lines(session, order.id)}
    remaining: dict[int, int] = {}
    for line_id, qty in left.items():
        if qty > 0:
            remaining[variants[line_id]] = remaining.get(variants[line_id], 0) + qty
    if not remaining:
        return
    tied = {
        x.reservation_id
        for t in tasks_for_order(session, order.id)
        for x in task_lines(session, t.id)
        if x.status == "open"
    }
    for r in inventory.active_reservations_for(session, "order", order.number):
        need = remaining.get(r.variant_id, 0)
        if need <= 0 or r.id in tied:
            continue
        take = min(need, r.quantity)
        inventory.release_quantity(session, ctx, r.id, take)
        remaining[r.variant_id] -= take


def list_tasks(
    session: Session,
    *,
    location_ids: Iterable[int] | None,
    status: str | None,
    kind: str | None,
    limit: int = 100,
    after: int | None = None,
    order_id: int | None = None,
) -> list[FulfillmentOrder]:
    """Oldest first; ``after`` continues after the task with that id; ``order_id`` finds
    one order's tasks (a scanned order number at a busy location)."""
    query = select(FulfillmentOrder).order_by(FulfillmentOrder.id)
    if after is not None:
        query = query.where(FulfillmentOrder.id > after)
    if location_ids is not None:
        query = query.where(FulfillmentOrder.location_id.in_(sorted(location_ids)))
    if status:
        query = query.where(FulfillmentOrder.status == status)
    if kind:
        query = query.where(FulfillmentOrder.kind == kind)
    if order_id is not None:
        query = query.where(FulfillmentOrder.order_id == order_id)
    return list(session.scalars(query.limit(limit)))


def task_for(
    session: Session, actor: Principal, task_id: int, statuses: Sequence[str]
) -> tuple[FulfillmentOrder, Order]:
    task = get_task(session, task_id)
    actor.require_location(task.location_id)
    order = orders.get_order(session, task.order_id)
    if order.on_hold:
        # The reason is staff's free text (personal data, maybe): not for every caller.
        raise UnprocessableState(f"order {order.number} is on hold", code="order-on-hold")
    if task.status not in statuses:
        raise UnprocessableState(
            f"fulfillment order {task_id} is {task.status}, not {' or '.join(statuses)}",
            code="illegal-transition",
        )
    return task, order


def move_task(
    session: Session, task: FulfillmentOrder, frm: Sequence[str], to: str, **values: Any
) -> None:
    done = session.execute(
        update(FulfillmentOrder)
        .where(FulfillmentOrder.id == task.id, FulfillmentOrder.status.in_(list(frm)))
        .values(status=to, updated_at=utcnow(), **values)
        .execution_options(synchronize_session=False)
    )
    if not getattr(done, "rowcount", 0):
        raise UnprocessableState(
            f"fulfillment order {task.id} changed meanwhile", code="illegal-transition"
        )
    session.refresh(task)


def start_picking(session: Session, actor: Principal, task_id: int) -> FulfillmentOrder:
    task, _ = task_for(session, actor, task_id, ("open",))
    move_task(session, task, ("open",), "picking")
    return task


@dataclass(frozen=True)
class PackageItem:
    order_line_id: int
    quantity: int


@dataclass(frozen=True)
class Package:
    weight_g: int
    length_mm: int | None = None
    width_mm: int | None = None
    height_mm: int | None = None
    # What this parcel holds; empty when the packer did not say (then the task's lines
    # travel as one shipment of all its parcels).
    items: tuple[PackageItem, ...] = ()

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "weight_g": self.weight_g,
            "length_mm": self.length_mm,
            "width_mm": self.width_mm,
            "height_mm": self.height_mm,
        }
        if self.items:
            data["items"] = [
                {"order_line_id": i.order_line_id, "quantity": i.quantity} for i in self.items
            ]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Package:
        return cls(
            weight_g=int(data["weight_g"]),
            length_mm=data.get("length_mm"),
            width_mm=data.get("width_mm"),
            height_mm=data.get("height_mm"),
            items=tuple(
                PackageItem(int(i["order_line_id"]), int(i["quantity"]))
                for i in data.get("items") or ()
            ),
        )


def check_contents(packages: Sequence[Package], open_qty: dict[int, int]) -> None:
    """Declared contents must partition the task's open units exactly: a unit travels in
    one parcel, and no parcel claims units another one carries."""
    declared = [bool(p.items) for p in packages]
    if not any(declared):
        return
    if not all(declared):
        missing = declared.index(False)
        raise ValidationProblem.field(
            f"body.packages[{missing}].items",
            "list the items of every package, or of none (one shipment of all packages)",
        )
    totals: dict[int, int] = defaultdict(int)
    for i, package in enumerate(packages):
        for j, item in enumerate(package.items):
            field = f"body.packages[{i}].items[{j}]"
            if item.order_line_id not in open_qty:
                raise ValidationProblem.field(
                    f"{field}.order_line_id", "not an open line of this fulfillment order"
                )
            if item.quantity <= 0:
                raise ValidationProblem.field(f"{field}.quantity", "at least 1")
            totals[item.order_line_id] += item.quantity
    for line_id, wanted in sorted(open_qty.items()):
        if totals.get(line_id, 0) != wanted:
            raise ValidationProblem.field(
                "body.packages",
                f"order line {line_id}: the packages hold {totals.get(line_id, 0)} units, "
                f"the fulfillment order ships {wanted}",
            )


def pack(
    session: Session, actor: Principal, task_id: int, packages: Sequence[Package]
) -> FulfillmentOrder:
    task, _ = task_for(session, actor, task_id, ("open", "picking"))
    if task.kind == "pickup":
        raise UnprocessableState(
            "a pickup order is made ready, not packed", code="illegal-transition"
        )
    if not packages:
        raise ValidationProblem.field("body.packages", "at least one package")
    open_lines = [x for x in task_lines(session, task.id) if x.status == "open"]
    check_contents(packages, units_by_line(open_lines))
    move_task(
        session, task, ("open", "picking"), "packed", packages=[p.as_json() for p in packages]
    )
    return task


def units_by_line(lines: Sequence[FulfillmentLine]) -> dict[int, int]:
    totals: dict[int, int] = defaultdict(int)
    for x in lines:
        totals[x.order_line_id] += x.quantity
    return dict(totals)


def consume_stock(
    session: Session, actor: Principal, order: Order, lines: Sequence[FulfillmentLine], status: str
) -> None:
    """The units leave stock: each line's reservation becomes a sale at its location."""
    ctx = inventory.Context(actor, order.channel_id, "order", order.number, note=status)
    for x in lines:
        if x.reservation_id is None:
            raise Conflict(f"fulfillment line {x.id} holds no stock")
        inventory.fulfil(session, ctx, x.reservation_id, x.quantity)
        x.status = status


def units_by_variant(lines: Sequence[FulfillmentLine]) -> dict[int, int]:
    totals: dict[int, int] = defaultdict(int)
    for x in lines:
        totals[x.variant_id] += x.quantity
    return dict(totals)


def cancel_task(session: Session, actor: Principal, task: FulfillmentOrder, reason: str) -> None:
    """Close a location's task; its lines' units go back to stock."""
    order = orders.get_order(session, task.order_id)
    ctx = inventory.Context(actor, order.channel_id, "order", order.number, note=reason)
    for x in task_lines(session, task.id):
        if x.status == "open":
            if x.reservation_id is not None:
                inventory.release_quantity(session, ctx, x.reservation_id, x.quantity)
            x.status = "cancelled"
    move_task(session, task, OPEN_TASK, "cancelled")
