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

from mercato.auth.principal import Principal
from mercato.auth.service import audit
from mercato.catalog import service as catalog
from mercato.channels import service as channels
from mercato.db import utcnow
from mercato.errors import Conflict, Forbidden, NotFound, UnprocessableState, ValidationProblem
from mercato.events import publish
from mercato.fulfillment import sourcing
from mercato.fulfillment.models import (
    FulfillmentLine,
    FulfillmentOrder,
    FulfillmentSettings,
    RoutingDecision,
    Shipment,
)
from mercato.inventory import service as inventory
from mercato.locations import service as locations
from mercato.locations.models import Location
from mercato.orders import service as orders
from mercato.orders.models import Order, OrderLine
from mercato.orders.state import OrderStatus
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
    return sourcing.Location(
        id=place.id,
        type=cast(sourcing.LocationType, place.type),
        country=place.country,
        lat=place.latitude,
        lng=place.longitude,
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
    """Decide and apply where the open lines of an order are fulfilled (see module doc)."""
    order = orders.get_order(session, order_id)
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
    address = order.shipping_address or {}
    destination = sourcing.Destination(
        country=address.get("country") or (context.country or ""),
        lat=address.get("latitude"),
        lng=address.get("longitude"),
    )
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
    """Route once per order (events arrive at least once)."""
    if session.scalar(select(RoutingDecision.id).where(RoutingDecision.order_id == order_id)):
        return
    order = orders.get_order(session, order_id)
    if order.status != OrderStatus.CONFIRMED.value or order.on_hold:
        return
    route_order(session, Principal.system("routing"), order_id)


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


def list_tasks(
    session: Session,
    *,
    location_ids: Iterable[int] | None,
    status: str | None,
    kind: str | None,
    limit: int = 100,
) -> list[FulfillmentOrder]:
    query = select(FulfillmentOrder).order_by(FulfillmentOrder.id)
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
        raise UnprocessableState(
            f"order {order.number} is on hold: {order.hold_reason}", code="order-on-hold"
        )
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
class Package:
    weight_g: int
    length_mm: int | None = None
    width_mm: int | None = None
    height_mm: int | None = None


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
    _move(session, task, ("open", "picking"), "packed", packages=[vars(p) for p in packages])
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


def _customs(session: Session, order: Order, lines: Sequence[FulfillmentLine]) -> list[CustomsItem]:
    infos = catalog.variant_infos(session, [x.variant_id for x in lines])
    by_id = {x.id: x for x in orders.order_lines(session, order.id)}
    items = []
    for x in lines:
        info = infos.get(x.variant_id)
        line = by_id[x.order_line_id]
        unit = (line.total / line.quantity) if line.quantity else Decimal(0)
        items.append(
            CustomsItem(
                description=line.name[:100],
                hs_code=(info.hs_code if info else None) or "000000",
                origin_country=(info.country_of_origin if info else None) or "XX",
                quantity=x.quantity,
                value=(unit * x.quantity).quantize(Decimal("0.01")),
                currency=order.currency,
            )
        )
    return items


@dataclass(frozen=True)
class ShipResult:
    task: FulfillmentOrder
    shipments: list[Shipment]
    order: Order
    transfer_id: int | None = None


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
    fulfilled on the order. Payment capture follows, outside this transaction."""
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
    option = order.shipping_option or {}
    carrier = carrier_code or option.get("carrier")
    service = service_code or option.get("service")
    if not carrier or not service:
        raise ValidationProblem.field("body.carrier_code", "the order names no carrier: give one")
    infos = catalog.variant_infos(session, [x.variant_id for x in lines])
    parcels = (
        list(packages)
        or [Package(**p) for p in task.packages or []]
        or [
            Package(
                max(
                    1,
                    sum(
                        ((infos[x.variant_id].weight_g or 0) if x.variant_id in infos else 0)
                        * x.quantity
                        for x in lines
                    ),
                )
            )
        ]
    )
    cross_border = place.country != address["country"]
    customs = _customs(session, order, lines) if cross_border else []
    duty = None
    if cross_border:
        estimate = shipping.estimate_duties(
            session,
            address["country"],
            place.country,
            [(c.hs_code, c.origin_country, c.value, c.currency) for c in customs],
            order.shipping_total,
        )
        duty = {
            "duty": str(estimate.duty),
            "import_tax": str(estimate.import_tax),
            "currency": estimate.currency,
            "de_minimis_applied": estimate.de_minimis_applied,
        }
    made = []
    for parcel in parcels:
        label = shipping.create_label(
            session,
            actor,
            LabelRequest(
                carrier_code=carrier,
                service_code=service,
                ship_from=_location_address(place),
                ship_to=_address(address),
                weight_g=parcel.weight_g,
                reference=order.number,
                customs=tuple(customs),
            ),
        )
        made.append(
            Shipment(
                order_id=order.id,
                fulfillment_order_id=task.id,
                location_id=place.id,
                carrier_code=carrier,
                service_code=service,
                tracking_number=label.tracking_number,
                label_id=label.id,
                status="shipped",
                packages=[vars(parcel)],
                customs=[{**vars(c), "value": str(c.value)} for c in customs] or None,
                duty_estimate=duty,
                lines=[
                    {
                        "order_line_id": x.order_line_id,
                        "variant_id": x.variant_id,
                        "quantity": x.quantity,
                    }
                    for x in lines
                ],
                shipped_at=utcnow(),
                updated_at=utcnow(),
            )
        )
    session.add_all(made)
    _consume(session, actor, order, lines, "shipped")
    _move(session, task, ("open", "picking", "packed"), "shipped")
    session.flush()
    for shipment in made:
        publish(
            session,
            "shipment.shipped",
            {
                "shipment_id": shipment.id,
                "order_id": order.id,
                "number": order.number,
                "location_id": place.id,
                "carrier": carrier,
                "service": service,
                "tracking_number": shipment.tracking_number,
                "lines": shipment.lines,
            },
            aggregate_type="shipment",
            aggregate_id=shipment.id,
        )
    updated = orders.record_fulfilled(
        session, actor, order.id, _quantities(lines), reason=f"shipped from {place.code}"
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


def ready_for_pickup(session: Session, actor: Principal, task_id: int) -> ReadyForPickup:
    """The items are on the pickup shelf: a code for the customer, and a collection deadline."""
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
    publish(
        session,
        "order.ready_for_pickup",
        {
            **orders.order_event(order),
            "fulfillment_order_id": task.id,
            "location_id": task.location_id,
            "expires_at": task.expires_at.isoformat() if task.expires_at else None,
        },
        aggregate_type="order",
        aggregate_id=order.id,
    )
    return ReadyForPickup(task, code)


def hand_over(session: Session, actor: Principal, task_id: int, code: str) -> Order:
    task, order = _task_for(session, actor, task_id, ("ready_for_pickup",))
    if task.pickup_code_hash is None or not hmac.compare_digest(
        task.pickup_code_hash, _code_hash(code.strip())
    ):
        raise Forbidden("the pickup code does not match", code="pickup-code-mismatch")
    lines = [x for x in task_lines(session, task.id) if x.status == "open"]
    _consume(session, actor, order, lines, "handed_over")
    _move(session, task, ("ready_for_pickup",), "picked_up", handed_over_at=utcnow())
    updated = orders.record_fulfilled(
        session, actor, order.id, _quantities(lines), reason="collected in store"
    )
    if updated.status == OrderStatus.FULFILLED.value and _all_collected(session, order.id):
        updated = orders.transition(
            session, actor, order.id, OrderStatus.PICKED_UP, reason="handed over in store"
        )
    return updated


def _all_collected(session: Session, order_id: int) -> bool:
    kinds = {t.kind for t in tasks_for_order(session, order_id) if t.status != "cancelled"}
    return kinds <= {"pickup", "transfer"}


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
    ctx = inventory.Context(
        actor, order.channel_id, "order", order.number, note=f"rejected: {reason}"
    )
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


def on_tracking_update(session: Session, tracking_number: str, status: str) -> None:
    """A carrier's tracking event moves the shipment, and the order once all arrived."""
    shipment = session.scalar(select(Shipment).where(Shipment.tracking_number == tracking_number))
    mapped = _TRACKING_STATUS.get(status)
    if shipment is None or mapped is None or shipment.status == mapped:
        return
    if shipment.status == "delivered":
        return  # late events never move a delivered parcel back
    shipment.status = mapped
    shipment.updated_at = utcnow()
    if mapped == "delivered":
        shipment.delivered_at = utcnow()
    session.flush()
    publish(
        session,
        f"shipment.{mapped}",
        {
            "shipment_id": shipment.id,
            "order_id": shipment.order_id,
            "tracking_number": tracking_number,
        },
        aggregate_type="shipment",
        aggregate_id=shipment.id,
    )
    order = orders.get_order(session, shipment.order_id)
    if mapped == "delivered" and order.status == OrderStatus.FULFILLED.value:
        pending = session.scalar(
            select(func.count())
            .select_from(Shipment)
            .where(Shipment.order_id == order.id, Shipment.status != "delivered")
        )
        if not pending:
            orders.transition(
                session,
                Principal.system("tracking"),
                order.id,
                OrderStatus.DELIVERED,
                reason=f"delivered ({tracking_number})",
            )


def shipments_for_order(session: Session, order_id: int) -> list[Shipment]:
    return list(
        session.scalars(select(Shipment).where(Shipment.order_id == order_id).order_by(Shipment.id))
    )
