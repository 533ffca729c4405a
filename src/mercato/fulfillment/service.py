"""Fulfilment: routing orders to locations, pick/pack/ship, click & collect, tracking.

Routing runs when an order is confirmed (an ``order.confirmed`` subscriber) and again when a
location rejects a line. It feeds the sourcing engine (``fulfillment.sourcing``) with the
channel's locations, their free stock (plus what this order already holds, since it may
keep it) and their remaining daily capacity, applies the plan as stock allocations, opens
one fulfilment order (the location's task) per location and kind, and stores the decision
with its explanation. Units move out of stock (a ``sale`` in the ledger) when a parcel
ships or a customer collects, never before.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from mercato import money
from mercato.auth.principal import Principal
from mercato.auth.service import audit
from mercato.catalog import service as catalog
from mercato.channels import service as channels
from mercato.db import utcnow
from mercato.errors import (
    Conflict,
    FieldError,
    Forbidden,
    NotFound,
    UnprocessableState,
    ValidationProblem,
)
from mercato.events import publish
from mercato.fulfillment import messages, sourcing
from mercato.fulfillment.carriers import (
    announce_route,
    choose_carrier,
    recipient_of,
    tell_shopper,
)
from mercato.fulfillment.models import (
    FulfillmentLine,
    FulfillmentOrder,
    FulfillmentSettings,
    RoutingDecision,
    Shipment,
)
from mercato.geocoding import describe, geocode, locate
from mercato.inventory import service as inventory
from mercato.locations import service as locations
from mercato.locations.models import Location
from mercato.marketing import notifier
from mercato.orders import service as orders
from mercato.orders.models import Order, OrderLine
from mercato.orders.state import OrderStatus
from mercato.shipping import customs as customs_rules
from mercato.shipping import service as shipping
from mercato.shipping.carriers import Address, CustomsItem, LabelRequest

ROUTABLE = (OrderStatus.CONFIRMED, OrderStatus.ALLOCATED, OrderStatus.PARTIALLY_FULFILLED)
OPEN_TASK = ("open", "picking", "packed", "awaiting_transfer", "ready_for_pickup")


# --- policy --------------------------------------------------------------------------------


def _settings(session: Session) -> FulfillmentSettings:
    row = session.get(FulfillmentSettings, 1)
    if row is None:
        row = FulfillmentSettings(id=1, policy={}, pickup_days=7, updated_at=utcnow())
        session.add(row)
        session.flush()
    return row


def policy(session: Session) -> sourcing.SourcingPolicy:
    row = session.get(FulfillmentSettings, 1)
    values = dict(row.policy) if row is not None else {}
    return sourcing.SourcingPolicy(**values)


def pickup_days(session: Session) -> int:
    row = session.get(FulfillmentSettings, 1)
    return row.pickup_days if row is not None else 7


def set_policy(
    session: Session, actor: Principal, values: dict[str, Any], pickup_days: int | None
) -> FulfillmentSettings:
    try:
        sourcing.SourcingPolicy(**values)
    except (TypeError, ValueError) as exc:
        raise ValidationProblem.field("body.policy", str(exc)) from exc
    row = _settings(session)
    row.policy = dict(values)
    if pickup_days is not None:
        row.pickup_days = pickup_days
    row.updated_at = utcnow()
    audit(
        session,
        actor,
        "fulfillment.policy_set",
        "fulfillment_settings",
        1,
        {"policy": values, "pickup_days": row.pickup_days},
    )
    return row


# --- routing -------------------------------------------------------------------------------


def _engine_location(place: Location, capacity: int | None) -> sourcing.Location:
    lat, lng = place.latitude, place.longitude
    if lat is None or lng is None:
        # A location saved before geocoding existed: placed from its address for now.
        found = geocode(place.country, place.postal_code, place.city, place.region)
        lat, lng = (found.latitude, found.longitude) if found else (None, None)
    return sourcing.Location(
        id=place.id,
        type=cast(sourcing.LocationType, place.type),
        country=place.country,
        lat=lat,
        lng=lng,
        can_ship=place.can_ship,
        can_pickup=place.can_pickup,
        can_ship_from_store=place.can_ship_from_store,
        capacity=capacity,
        active=place.active,
        code=place.code,
    )


def _capacity_left(session: Session, places: Sequence[Location]) -> dict[int, int | None]:
    """Units each location may still dispatch today (its daily capacity minus today's work)."""
    today = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    used = dict(
        session.execute(
            select(FulfillmentOrder.location_id, func.sum(FulfillmentLine.quantity))
            .join(FulfillmentLine, FulfillmentLine.fulfillment_order_id == FulfillmentOrder.id)
            .where(
                FulfillmentOrder.location_id.in_([p.id for p in places]),
                FulfillmentOrder.created_at >= today,
                FulfillmentOrder.kind.in_(("ship", "transfer")),
                FulfillmentLine.status != "cancelled",
            )
            .group_by(FulfillmentOrder.location_id)
        ).all()
    )
    return {
        p.id: None
        if p.daily_capacity is None
        else max(0, p.daily_capacity - int(used.get(p.id) or 0))
        for p in places
    }


@dataclass(frozen=True)
class _LineNeed:
    line: OrderLine
    quantity: int


def _open_needs(session: Session, order: Order, line_ids: set[int] | None) -> list[_LineNeed]:
    """Units of each line not yet shipped, handed over, cancelled or in a live task."""
    tasked: dict[int, int] = defaultdict(int)
    for line_id, qty in session.execute(
        select(FulfillmentLine.order_line_id, FulfillmentLine.quantity)
        .join(FulfillmentOrder, FulfillmentOrder.id == FulfillmentLine.fulfillment_order_id)
        .where(FulfillmentOrder.order_id == order.id, FulfillmentLine.status == "open")
    ):
        tasked[line_id] += qty
    needs = []
    for line in orders.order_lines(session, order.id):
        if line_ids is not None and line.id not in line_ids:
            continue
        left = line.quantity - line.fulfilled_quantity - line.cancelled_quantity - tasked[line.id]
        if left > 0:
            needs.append(_LineNeed(line, left))
    return needs


def route_order(
    session: Session,
    actor: Principal,
    order_id: int,
    *,
    trigger: str = "initial",
    excluded: Iterable[int] = (),
    line_ids: set[int] | None = None,
) -> RoutingDecision | None:
    """Decide and apply where the open lines of an order are fulfilled (see module doc).

    The order's row is taken first: two routings of one order (a manual route racing a
    rejection, a redelivered event) run one after the other, and the second sees the
    first's tasks among what is no longer open.
    """
    order = orders.lock_order(session, order_id)
    return _route(session, actor, order, trigger=trigger, excluded=excluded, line_ids=line_ids)


def _route(
    session: Session,
    actor: Principal,
    order: Order,
    *,
    trigger: str = "initial",
    excluded: Iterable[int] = (),
    line_ids: set[int] | None = None,
) -> RoutingDecision | None:
    """:func:`route_order` for an order whose row this transaction holds."""
    if OrderStatus(order.status) not in ROUTABLE:
        raise UnprocessableState(
            f"order {order.number} is {order.status}: nothing to route", code="illegal-transition"
        )
    needs = _open_needs(session, order, line_ids)
    if not needs:
        return None
    context = channels.context_for_channel(session, order.channel_id)
    pickup_ids = {n.line.pickup_location_id for n in needs if n.line.pickup_location_id}
    candidate_ids = list(dict.fromkeys([*context.location_order, *sorted(pickup_ids)]))
    places = [p for p in locations.get_locations(session, candidate_ids)]
    capacity = _capacity_left(session, places)
    variants = sorted({n.line.variant_id for n in needs})
    # What this order holds counts as free for it: the plan may keep it or move it.
    own = [
        r
        for r in inventory.active_reservations_for(session, "order", order.number)
        if r.variant_id in variants
    ]
    table: dict[int, dict[int, int]] = defaultdict(dict)
    for variant_id, by_place in inventory.availability_by_location(
        session, variants, candidate_ids
    ).items():
        table[variant_id].update(by_place)
    released_own = _releasable(session, order, own, needs)
    for r, qty in released_own:
        table[r.variant_id][r.location_id] = table[r.variant_id].get(r.location_id, 0) + qty
    destination = _destination(order.shipping_address, context.country)
    lines = [
        sourcing.OrderLine(
            line_id=str(n.line.id),
            variant_id=n.line.variant_id,
            quantity=n.quantity,
            mode="pickup" if n.line.delivery_mode == "pickup" else "ship",
            pickup_location_id=n.line.pickup_location_id,
        )
        for n in needs
    ]
    plan = sourcing.source_order(
        lines,
        destination,
        {p.id: _engine_location(p, capacity[p.id]) for p in places},
        {v: dict(by_place) for v, by_place in table.items()},
        policy(session),
        excluded=frozenset(excluded),
    )
    ctx = inventory.Context(actor, order.channel_id, "order", order.number, note="routing")
    for r, qty in released_own:
        inventory.release_quantity(session, ctx, r.id, qty)
    tasks = _apply(session, ctx, order, needs, plan)
    announce_route(session, actor, order, plan, {p.id: p for p in places})
    decision = RoutingDecision(
        order_id=order.id,
        trigger=trigger,
        excluded_location_ids=sorted(set(excluded)),
        plan=[
            {
                "order_line_id": int(lp.line_id),
                "variant_id": lp.variant_id,
                "allocations": [
                    {"location_id": a.location_id, "quantity": a.quantity, "method": a.method}
                    for a in lp.allocations
                ],
            }
            for lp in plan.lines
        ],
        unfilled=[
            {
                "order_line_id": int(u.line_id),
                "quantity": u.quantity,
                "reason": str(u.reason),
                "detail": u.detail,
            }
            for u in plan.unfilled
        ],
        cost=Decimal(str(round(plan.cost, 4))),
        shipments=plan.shipment_count,
        explanation=plan.explain(),
        actor_type=actor.kind,
        actor_id=None if actor.id is None else str(actor.id),
        created_at=utcnow(),
    )
    session.add(decision)
    session.flush()
    data = {
        **orders.order_event(order),
        "decision_id": decision.id,
        "trigger": trigger,
        "tasks": [
            {"fulfillment_order_id": t.id, "location_id": t.location_id, "kind": t.kind}
            for t in tasks
        ],
        "unfilled": decision.unfilled,
    }
    publish(session, "order.routed", data, aggregate_type="order", aggregate_id=order.id)
    _settle_status(session, actor, order.id, filled=not plan.unfilled, trigger=trigger)
    return decision


def _destination(address: dict[str, Any] | None, home: str | None) -> sourcing.Destination:
    """Where the customer's parcel goes, placed on the map: an order saved before addresses
    were geocoded is geocoded now."""
    if not address:
        return sourcing.Destination(country=home or "", basis=describe(None, {}))
    located = locate(address)
    return sourcing.Destination(
        country=located.get("country") or (home or ""),
        lat=located.get("latitude"),
        lng=located.get("longitude"),
        basis=describe(located.get("coordinates_source"), located),
    )


def _releasable(
    session: Session, order: Order, own: list[Any], needs: list[_LineNeed]
) -> list[tuple[Any, int]]:
    """The order's held units not yet tied to a live task, up to what the lines need."""
    tied: dict[int, int] = defaultdict(int)
    for reservation_id, qty in session.execute(
        select(FulfillmentLine.reservation_id, FulfillmentLine.quantity)
        .join(FulfillmentOrder, FulfillmentOrder.id == FulfillmentLine.fulfillment_order_id)
        .where(
            FulfillmentOrder.order_id == order.id,
            FulfillmentLine.status == "open",
            FulfillmentLine.reservation_id.is_not(None),
        )
    ):
        if reservation_id is not None:
            tied[int(reservation_id)] += qty
    wanted: dict[int, int] = defaultdict(int)
    for n in needs:
        wanted[n.line.variant_id] += n.quantity
    result = []
    for r in own:
        free = r.quantity - tied[r.id]
        take = min(free, wanted[r.variant_id])
        if take > 0:
            result.append((r, take))
            wanted[r.variant_id] -= take
    return result


def _apply(
    session: Session,
    ctx: inventory.Context,
    order: Order,
    needs: list[_LineNeed],
    plan: sourcing.SourcingPlan,
) -> list[FulfillmentOrder]:
    by_line = {str(n.line.id): n.line for n in needs}
    holds = [
        inventory.HoldLine(lp.variant_id, a.quantity, a.location_id)
        for lp in plan.lines
        for a in lp.allocations
    ]
    made = inventory.hold(session, ctx, holds, status=inventory.ReservationStatus.ALLOCATED)
    reservation_at = {(r.variant_id, r.location_id): r.id for r in made}
    now = utcnow()
    tasks: dict[tuple[int, str], FulfillmentOrder] = {}
    for lp in plan.lines:
        line = by_line[lp.line_id]
        for a in lp.allocations:
            kind = {"ship": "ship", "pickup": "pickup", "transfer": "transfer"}[a.method]
            key = (a.location_id, kind)
            if key not in tasks:
                tasks[key] = FulfillmentOrder(
                    order_id=order.id,
                    location_id=a.location_id,
                    kind=kind,
                    status="open",
                    destination_location_id=line.pickup_location_id if kind == "transfer" else None,
                    created_at=now,
                    updated_at=now,
                )
                session.add(tasks[key])
        session.flush()
    lines = []
    for lp in plan.lines:
        line = by_line[lp.line_id]
        for a in lp.allocations:
            kind = {"ship": "ship", "pickup": "pickup", "transfer": "transfer"}[a.method]
            lines.append(
                FulfillmentLine(
                    fulfillment_order_id=tasks[(a.location_id, kind)].id,
                    order_line_id=line.id,
                    variant_id=line.variant_id,
                    quantity=a.quantity,
                    reservation_id=reservation_at.get((line.variant_id, a.location_id)),
                    status="open",
                )
            )
            if kind == "transfer":
                # The pickup store waits for the transfer before it can hand over.
                store_key = (int(line.pickup_location_id or 0), "pickup")
                if store_key not in tasks:
                    tasks[store_key] = FulfillmentOrder(
                        order_id=order.id,
                        location_id=line.pickup_location_id,
                        kind="pickup",
                        status="awaiting_transfer",
                        created_at=now,
                        updated_at=now,
                    )
                    session.add(tasks[store_key])
    session.add_all(lines)
    session.flush()
    for task in tasks.values():
        publish(
            session,
            "fulfillment.task_created",
            {
                "fulfillment_order_id": task.id,
                "order_id": order.id,
                "number": order.number,
                "location_id": task.location_id,
                "kind": task.kind,
                "status": task.status,
            },
            aggregate_type="fulfillment_order",
            aggregate_id=task.id,
        )
    return list(tasks.values())


def _settle_status(
    session: Session, actor: Principal, order_id: int, *, filled: bool, trigger: str
) -> None:
    order = orders.get_order(session, order_id)
    status = OrderStatus(order.status)
    if status is OrderStatus.CONFIRMED and filled:
        orders.advance(
            session, actor, order_id, status, [(OrderStatus.ALLOCATED, f"routed ({trigger})")]
        )
    elif status is OrderStatus.ALLOCATED and not filled:
        orders.advance(
            session,
            actor,
            order_id,
            status,
            [(OrderStatus.CONFIRMED, "a line could not be sourced; waiting for stock")],
        )


def decisions(session: Session, order_id: int) -> list[RoutingDecision]:
    return list(
        session.scalars(
            select(RoutingDecision)
            .where(RoutingDecision.order_id == order_id)
            .order_by(RoutingDecision.id)
        )
    )


def on_order_confirmed(session: Session, order_id: int) -> None:
    """Route once per order (events arrive at least once, and a process may deliver one
    while another still does): the order's row is taken before looking for an earlier
    decision, so a second delivery waits for the first and then finds its decision. The
    unique initial decision per order backs this up."""
    order = orders.lock_order(session, order_id)
    if order.status != OrderStatus.CONFIRMED.value or order.on_hold:
        return
    if session.scalar(select(RoutingDecision.id).where(RoutingDecision.order_id == order_id)):
        return
    _route(session, Principal.system("routing"), order)


# --- tasks -----------------------------------------------------------------------------------


def get_task(session: Session, task_id: int) -> FulfillmentOrder:
    task = session.get(FulfillmentOrder, task_id, populate_existing=True)
    if task is None:
        raise NotFound(f"fulfillment order {task_id} not found")
    return task


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
) -> list[FulfillmentOrder]:
    """Oldest first; ``after`` continues after the task with that id."""
    query = select(FulfillmentOrder).order_by(FulfillmentOrder.id)
    if after is not None:
        query = query.where(FulfillmentOrder.id > after)
    if location_ids is not None:
        query = query.where(FulfillmentOrder.location_id.in_(sorted(location_ids)))
    if status:
        query = query.where(FulfillmentOrder.status == status)
    if kind:
        query = query.where(FulfillmentOrder.kind == kind)
    return list(session.scalars(query.limit(limit)))


def _task_for(
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


def _move(
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
    task, _ = _task_for(session, actor, task_id, ("open",))
    _move(session, task, ("open",), "picking")
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


def _check_contents(packages: Sequence[Package], open_qty: dict[int, int]) -> None:
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
    task, _ = _task_for(session, actor, task_id, ("open", "picking"))
    if task.kind == "pickup":
        raise UnprocessableState(
            "a pickup order is made ready, not packed", code="illegal-transition"
        )
    if not packages:
        raise ValidationProblem.field("body.packages", "at least one package")
    open_lines = [x for x in task_lines(session, task.id) if x.status == "open"]
    _check_contents(packages, _quantities(open_lines))
    _move(session, task, ("open", "picking"), "packed", packages=[p.as_json() for p in packages])
    return task


def _address(data: dict[str, Any]) -> Address:
    return Address(
        name=data.get("name") or "",
        line1=data.get("line1") or "",
        city=data.get("city") or "",
        country=data["country"],
        postal_code=data.get("postal_code"),
        region=data.get("region"),
        line2=data.get("line2"),
        phone=data.get("phone"),
    )


def _location_address(place: Location) -> Address:
    return Address(
        name=place.name,
        line1=place.address_line1 or place.name,
        city=place.city or "",
        country=place.country,
        postal_code=place.postal_code,
        region=place.region,
    )


def _customs(
    session: Session, order: Order, contents: dict[int, int], route: str
) -> list[CustomsItem]:
    """The declaration of a cross-border parcel, one item per order line.

    The value declared is the net price paid for the goods: sales tax charged at checkout
    is not part of the customs value (an export is not taxed where it leaves). HS code and
    origin come from the catalogue; a variant without them cannot cross a border, since a
    made-up code would be a false declaration.
    """
    by_id = {x.id: x for x in orders.order_lines(session, order.id)}
    infos = catalog.variant_infos(session, [by_id[i].variant_id for i in contents])
    items: list[CustomsItem] = []
    missing: list[FieldError] = []
    for line_id, quantity in sorted(contents.items()):
        line = by_id[line_id]
        info = infos.get(line.variant_id)
        hs_code = info.hs_code if info else None
        origin = info.country_of_origin if info else None
        if not hs_code:
            missing.append(
                FieldError(
                    f"variants[{line.variant_id}].hs_code",
                    f"{line.sku} has no HS code: required to ship {route}",
                )
            )
        if not origin:
            missing.append(
                FieldError(
                    f"variants[{line.variant_id}].country_of_origin",
                    f"{line.sku} has no country of origin: required to ship {route}",
                )
            )
        if not hs_code or not origin:
            continue
        net = line.total - line.tax
        unit = net / line.quantity if line.quantity else Decimal(0)
        items.append(
            CustomsItem(
                description=line.name[:100],
                hs_code=hs_code,
                origin_country=origin,
                quantity=quantity,
                value=money.quantize(unit * quantity, order.currency),
                currency=order.currency,
            )
        )
    if missing:
        raise UnprocessableState(
            f"customs data missing to ship {route}: "
            + "; ".join(f"{e['field']}: {e['reason']}" for e in missing),
            code="customs-data-missing",
            errors=missing,
        )
    return items


@dataclass(frozen=True)
class ShipResult:
    task: FulfillmentOrder
    shipments: list[Shipment]
    order: Order
    transfer_id: int | None = None


def _default_package(
    infos: dict[int, catalog.VariantInfo], lines: Sequence[FulfillmentLine]
) -> Package:
    weight = sum(
        ((infos[x.variant_id].weight_g or 0) if x.variant_id in infos else 0) * x.quantity
        for x in lines
    )
    return Package(max(1, weight))


def ship(
    session: Session,
    actor: Principal,
    task_id: int,
    *,
    packages: Sequence[Package] = (),
    carrier_code: str | None = None,
    service_code: str | None = None,
) -> ShipResult:
    """Buy labels, take the units out of stock (a sale at this location), count them as
    fulfilled on the order. Payment capture follows, outside this transaction.

    Packages that list their items become one shipment each; packages that do not travel
    together as one shipment of every open line. A unit is counted shipped once either way.
    """
    task, order = _task_for(session, actor, task_id, ("open", "picking", "packed"))
    if task.kind == "pickup":
        raise UnprocessableState(
            "a pickup order is handed over, not shipped", code="illegal-transition"
        )
    lines = [x for x in task_lines(session, task.id) if x.status == "open"]
    if not lines:
        raise UnprocessableState(
            "nothing left to ship on this fulfillment order", code="illegal-transition"
        )
    if task.kind == "transfer":
        return _ship_transfer(session, actor, task, order, lines)
    place = locations.get_location(session, task.location_id)
    address = order.shipping_address
    if not address:
        raise UnprocessableState(
            f"order {order.number} has no shipping address", code="no-shipping-address"
        )
    infos = catalog.variant_infos(session, [x.variant_id for x in lines])
    parcels = (
        list(packages)
        or [Package.from_json(p) for p in task.packages or []]
        or [_default_package(infos, lines)]
    )
    open_qty = _quantities(lines)
    _check_contents(parcels, open_qty)
    choice = choose_carrier(
        session,
        order,
        place,
        address,
        [p.weight_g for p in parcels],
        carrier_code,
        service_code,
    )
    # Each group is one shipment: its parcels and the units they carry.
    groups: list[tuple[list[Package], dict[int, int]]]
    if parcels[0].items:
        groups = []
        for p in parcels:
            contents: dict[int, int] = defaultdict(int)
            for item in p.items:
                contents[item.order_line_id] += item.quantity
            groups.append(([p], dict(contents)))
    else:
        groups = [(parcels, open_qty)]
    variant_of = {x.order_line_id: x.variant_id for x in lines}
    cross_border = customs_rules.crosses_customs_border(place.country, address["country"])
    route = f"from {place.country} to {address['country']}"
    # Every declaration is checked before the first label is bought: a carrier's label is
    # not undone by a rollback.
    declarations = [
        _customs(session, order, contents, route) if cross_border else [] for _, contents in groups
    ]
    made = []
    for index, ((group, contents), declared) in enumerate(zip(groups, declarations, strict=True)):
        duty = None
        if cross_border:
            estimate = shipping.estimate_duties(
                session,
                address["country"],
                place.country,
                [(c.hs_code, c.origin_country, c.value, c.currency) for c in declared],
                # The shipping charge is paid once: it counts towards the first parcel.
                order.shipping_total if index == 0 else Decimal(0),
            )
            duty = {
                "duty": str(estimate.duty),
                "import_tax": str(estimate.import_tax),
                "currency": estimate.currency,
                "de_minimis_applied": estimate.de_minimis_applied,
            }
        labelled = []
        for parcel in group:
            label = shipping.create_label(
                session,
                actor,
                LabelRequest(
                    carrier_code=choice.carrier,
                    service_code=choice.service,
                    ship_from=_location_address(place),
                    ship_to=_address(address),
                    weight_g=parcel.weight_g,
                    reference=order.number,
                    customs=tuple(declared),
                ),
            )
            labelled.append(
                (
                    label,
                    {
                        **parcel.as_json(),
                        "tracking_number": label.tracking_number,
                        "label_id": label.id,
                        "status": "shipped",
                    },
                )
            )
        first = labelled[0][0]
        made.append(
            Shipment(
                order_id=order.id,
                fulfillment_order_id=task.id,
                location_id=place.id,
                carrier_code=choice.carrier,
                service_code=choice.service,
                tracking_number=first.tracking_number,
                label_id=first.id,
                status="shipped",
                packages=[p for _, p in labelled],
                customs=[{**vars(c), "value": str(c.value)} for c in declared] or None,
                duty_estimate=duty,
                lines=[
                    {"order_line_id": line_id, "variant_id": variant_of[line_id], "quantity": qty}
                    for line_id, qty in sorted(contents.items())
                ],
                shipped_at=utcnow(),
                updated_at=utcnow(),
            )
        )
    session.add_all(made)
    _consume(session, actor, order, lines, "shipped")
    _move(session, task, ("open", "picking", "packed"), "shipped")
    session.flush()
    if choice.substituted:
        audit(
            session,
            actor,
            "fulfillment.carrier_substituted",
            "fulfillment_order",
            task.id,
            {
                "quoted": {
                    "carrier": (order.shipping_option or {}).get("carrier"),
                    "service": (order.shipping_option or {}).get("service"),
                },
                "used": {"carrier": choice.carrier, "service": choice.service},
                "reason": choice.substituted,
            },
        )
        orders.add_note(session, actor, order.id, f"Carrier changed: {choice.substituted}")
        if (order.shipping_option or {}).get("carrier"):
            tell_shopper(session, actor, order, place, choice)
    for shipment in made:
        publish(
            session,
            "shipment.shipped",
            {
                "shipment_id": shipment.id,
                "order_id": order.id,
                "number": order.number,
                "location_id": place.id,
                "carrier": choice.carrier,
                "service": choice.service,
                "carrier_substituted": choice.substituted,
                "tracking_number": shipment.tracking_number,
                "tracking_numbers": [p["tracking_number"] for p in shipment.packages],
                "lines": shipment.lines,
            },
            aggregate_type="shipment",
            aggregate_id=shipment.id,
        )
    updated = orders.record_fulfilled(
        session, actor, order.id, open_qty, reason=f"shipped from {place.code}"
    )
    return ShipResult(task, made, updated)


def _quantities(lines: Sequence[FulfillmentLine]) -> dict[int, int]:
    totals: dict[int, int] = defaultdict(int)
    for x in lines:
        totals[x.order_line_id] += x.quantity
    return dict(totals)


def _consume(
    session: Session, actor: Principal, order: Order, lines: Sequence[FulfillmentLine], status: str
) -> None:
    """The units leave stock: each line's reservation becomes a sale at its location."""
    ctx = inventory.Context(actor, order.channel_id, "order", order.number, note=status)
    for x in lines:
        if x.reservation_id is None:
            raise Conflict(f"fulfillment line {x.id} holds no stock")
        inventory.fulfil(session, ctx, x.reservation_id, x.quantity)
        x.status = status


def _ship_transfer(
    session: Session,
    actor: Principal,
    task: FulfillmentOrder,
    order: Order,
    lines: list[FulfillmentLine],
) -> ShipResult:
    """Stock for a pickup store leaves its origin as a transfer (not a sale)."""
    assert task.destination_location_id is not None
    ctx = inventory.Context(
        actor, order.channel_id, "order", order.number, note="transfer for pickup"
    )
    for x in lines:
        if x.reservation_id is not None:
            inventory.release_quantity(session, ctx, x.reservation_id, x.quantity)
    transfer = inventory.create_transfer(
        session,
        inventory.Context(actor, order.channel_id, "fulfillment_order", str(task.id)),
        task.location_id,
        task.destination_location_id,
        [(v, q) for v, q in _by_variant(lines).items()],
        ship_now=True,
    )
    for x in lines:
        x.status = "shipped"
    _move(session, task, ("open", "picking", "packed"), "shipped")
    publish(
        session,
        "fulfillment.transfer_shipped",
        {
            "fulfillment_order_id": task.id,
            "order_id": order.id,
            "transfer_id": transfer.id,
            "to_location_id": task.destination_location_id,
        },
        aggregate_type="fulfillment_order",
        aggregate_id=task.id,
    )
    return ShipResult(task, [], order, transfer.id)


def _by_variant(lines: Sequence[FulfillmentLine]) -> dict[int, int]:
    totals: dict[int, int] = defaultdict(int)
    for x in lines:
        totals[x.variant_id] += x.quantity
    return dict(totals)


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
            for v, q in _by_variant(moved).items()
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
        _move(session, store_task, ("awaiting_transfer",), "open")
    session.flush()
    return store_task


# --- click & collect -------------------------------------------------------------------------


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
    task, order = _task_for(session, actor, task_id, ("open", "picking"))
    if task.kind != "pickup":
        raise UnprocessableState(
            "only a pickup order is made ready for pickup", code="illegal-transition"
        )
    code = f"{secrets.randbelow(10**6):06d}"
    now = utcnow()
    _move(
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
        "order.ready_for_pickup",
        {
            **orders.order_event(order),
            "fulfillment_order_id": task.id,
            "location_id": task.location_id,
            "expires_at": task.expires_at.isoformat() if task.expires_at else None,
            "message_id": message_id,
        },
        aggregate_type="order",
        aggregate_id=order.id,
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
        ),
    )
    return message.id


def hand_over(session: Session, actor: Principal, task_id: int, code: str) -> Order:
    task, order = _task_for(session, actor, task_id, ("ready_for_pickup",))
    if task.pickup_code_hash is None or not hmac.compare_digest(
        task.pickup_code_hash, _code_hash(code.strip())
    ):
        raise Forbidden("the pickup code does not match", code="pickup-code-mismatch")
    lines = [x for x in task_lines(session, task.id) if x.status == "open"]
    _consume(session, actor, order, lines, "handed_over")
    _move(session, task, ("ready_for_pickup",), "picked_up", handed_over_at=utcnow())
    orders.record_fulfilled(
        session, actor, order.id, _quantities(lines), reason="collected in store"
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


def cancel_task(session: Session, actor: Principal, task: FulfillmentOrder, reason: str) -> None:
    """Close a location's task; its lines' units go back to stock."""
    order = orders.get_order(session, task.order_id)
    ctx = inventory.Context(actor, order.channel_id, "order", order.number, note=reason)
    for x in task_lines(session, task.id):
        if x.status == "open":
            if x.reservation_id is not None:
                inventory.release_quantity(session, ctx, x.reservation_id, x.quantity)
            x.status = "cancelled"
    _move(session, task, OPEN_TASK, "cancelled")


# --- rejection and re-routing -------------------------------------------------------------


def reject_lines(
    session: Session, actor: Principal, task_id: int, order_line_ids: Sequence[int], reason: str
) -> RoutingDecision | None:
    """The location cannot fill these lines (damaged, not found): they are released here and
    sourced again elsewhere, without a new order."""
    task, order = _task_for(session, actor, task_id, ("open", "picking", "packed"))
    chosen = [
        x
        for x in task_lines(session, task.id)
        if x.order_line_id in set(order_line_ids) and x.status == "open"
    ]
    if not chosen:
        raise ValidationProblem.field("body.order_line_ids", "no open line of this task")
    # The reason stays in the audit log (encrypted): the ledger names the order only.
    ctx = inventory.Context(actor, order.channel_id, "order", order.number, note="rejected")
    for x in chosen:
        if x.reservation_id is not None:
            inventory.release_quantity(session, ctx, x.reservation_id, x.quantity)
        x.status = "rejected"
    if all(x.status != "open" for x in task_lines(session, task.id)):
        _move(session, task, ("open", "picking", "packed"), "cancelled")
    audit(
        session,
        actor,
        "fulfillment.lines_rejected",
        "fulfillment_order",
        task.id,
        {"order_line_ids": sorted(order_line_ids), "reason": reason},
    )
    excluded = {d for dec in decisions(session, order.id) for d in dec.excluded_location_ids}
    excluded.add(task.location_id)
    if OrderStatus(order.status) is OrderStatus.ALLOCATED:
        orders.advance(
            session,
            actor,
            order.id,
            OrderStatus.ALLOCATED,
            [(OrderStatus.CONFIRMED, f"{reason}: re-routing")],
        )
    return route_order(
        session,
        actor,
        order.id,
        trigger="reroute",
        excluded=excluded,
        line_ids={x.order_line_id for x in chosen},
    )


# --- tracking -----------------------------------------------------------------------------

_TRACKING_STATUS = {
    "in_transit": "in_transit",
    "out_for_delivery": "in_transit",
    "delivered": "delivered",
    "exception": "exception",
    "returned": "returned_to_sender",
    "returned_to_sender": "returned_to_sender",
}


def _shipment_for_tracking(session: Session, tracking_number: str) -> Shipment | None:
    shipment = session.scalar(select(Shipment).where(Shipment.tracking_number == tracking_number))
    if shipment is not None:
        return shipment
    # A further parcel of a multi-parcel shipment: its label names the order.
    try:
        label = shipping.label_by_tracking_number(session, tracking_number)
        order = orders.get_by_number(session, label.reference or "")
    except NotFound:
        return None
    for candidate in shipments_for_order(session, order.id):
        if any(p.get("tracking_number") == tracking_number for p in candidate.packages):
            return candidate
    return None


def _shipment_status(parcels: Sequence[str]) -> str:
    """A shipment is delivered when every parcel is; a parcel in trouble shows first."""
    if all(s == "delivered" for s in parcels):
        return "delivered"
    for trouble in ("exception", "returned_to_sender"):
        if trouble in parcels:
            return trouble
    if any(s != "shipped" for s in parcels):
        return "in_transit"
    return "shipped"


def on_tracking_update(session: Session, tracking_number: str, status: str) -> None:
    """A carrier's tracking event moves the parcel, its shipment, and the order once every
    part of it arrived (or was collected)."""
    mapped = _TRACKING_STATUS.get(status)
    if mapped is None:
        return
    shipment = _shipment_for_tracking(session, tracking_number)
    if shipment is None:
        return
    # Parcels of one shipment are tracked separately, maybe by two processes at once: each
    # update rewrites the parcel list, so they take the shipment's row in turn.
    session.refresh(shipment, with_for_update=True)
    parcels = [dict(p) for p in shipment.packages]
    tracked = [p for p in parcels if p.get("tracking_number")]
    if tracked:
        parcel = next((p for p in tracked if p["tracking_number"] == tracking_number), None)
        if parcel is None or parcel.get("status") in (mapped, "delivered"):
            return  # late events never move a delivered parcel back
        parcel["status"] = mapped
        shipment.packages = parcels
        new_status = _shipment_status([str(p.get("status") or "shipped") for p in tracked])
    else:
        if shipment.status in (mapped, "delivered"):
            return
        new_status = mapped
    shipment.updated_at = utcnow()
    if new_status == shipment.status:
        session.flush()
        return
    shipment.status = new_status
    if new_status == "delivered":
        shipment.delivered_at = utcnow()
    session.flush()
    publish(
        session,
        f"shipment.{new_status}",
        {
            "shipment_id": shipment.id,
            "order_id": shipment.order_id,
            "tracking_number": tracking_number,
        },
        aggregate_type="shipment",
        aggregate_id=shipment.id,
    )
    if new_status == "delivered":
        complete_if_done(
            session,
            Principal.system("tracking"),
            shipment.order_id,
            reason=f"delivered ({tracking_number})",
        )


def complete_if_done(session: Session, actor: Principal, order_id: int, *, reason: str) -> Order:
    """A fulfilled order whose parcels are all delivered and whose pickups are all collected
    is done, whichever part finished last: delivered when anything travelled by carrier,
    picked up when everything was collected. The order's row is taken first, so the last
    two parts finishing at once cannot each see the other as unfinished."""
    order = orders.lock_order(session, order_id)
    if order.status != OrderStatus.FULFILLED.value:
        return order
    tasks = [t for t in tasks_for_order(session, order_id) if t.status != "cancelled"]
    if any(t.kind == "pickup" and t.status != "picked_up" for t in tasks):
        return order
    sent = shipments_for_order(session, order_id)
    if any(s.status != "delivered" for s in sent):
        return order
    if sent:
        target = OrderStatus.DELIVERED
    elif any(t.kind == "pickup" for t in tasks):
        target = OrderStatus.PICKED_UP
    else:
        return order
    return orders.transition(session, actor, order_id, target, reason=reason)


def shipments_for_order(session: Session, order_id: int) -> list[Shipment]:
    return list(
        session.scalars(select(Shipment).where(Shipment.order_id == order_id).order_by(Shipment.id))
    )


def delivered_order_ids(session: Session, *, limit: int) -> list[int]:
    """Orders with a delivered parcel (cash on delivery is settled from them)."""
    found = session.scalars(
        select(Shipment.order_id).where(Shipment.status == "delivered").limit(limit)
    )
    return sorted(set(found))
