"""Routing: where the open lines of an order are fulfilled.

Routing runs when an order is confirmed (an ``order.confirmed`` subscriber) and again when a
location rejects a line. It feeds the sourcing engine (``fulfillment.sourcing``) with the
channel's locations, their free stock (plus what this order already holds, since it may
keep it) and their remaining daily capacity, applies the plan as stock allocations, opens
one fulfilment order (the location's task) per location and kind, and stores the decision
with its explanation.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.auth.service import audit
from mercato.channels import service as channels
from mercato.db import utcnow
from mercato.errors import UnprocessableState, ValidationProblem
from mercato.events import publish
from mercato.fulfillment import sourcing
from mercato.fulfillment.carriers import announce_route
from mercato.fulfillment.event_types import OrderRouted, RoutedTask, TaskCreated, UnfilledLine
from mercato.fulfillment.models import FulfillmentLine, FulfillmentOrder, RoutingDecision
from mercato.fulfillment.policies import policy
from mercato.fulfillment.tasks import move_task, task_for, task_lines
from mercato.geocoding import describe, geocode, locate
from mercato.inventory import service as inventory
from mercato.locations import service as locations
from mercato.locations.models import Location
from mercato.orders import service as orders
from mercato.orders.models import Order, OrderLine
from mercato.orders.state import OrderStatus

ROUTABLE = (OrderStatus.CONFIRMED, OrderStatus.ALLOCATED, OrderStatus.PARTIALLY_FULFILLED)


def engine_location(place: Location, capacity: int | None) -> sourcing.Location:
    """A location as the sourcing engine sees it, with the units it may still dispatch."""
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


def capacity_left(session: Session, places: Sequence[Location]) -> dict[int, int | None]:
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
    capacity = capacity_left(session, places)
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
    destination = destination_of(order.shipping_address, context.country)
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
        {p.id: engine_location(p, capacity[p.id]) for p in places},
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
    publish(
        session,
        OrderRouted(
            **orders.order_facts(order),
            decision_id=decision.id,
            trigger=trigger,
            tasks=tuple(RoutedTask(t.id, t.location_id, t.kind) for t in tasks),
            unfilled=tuple(UnfilledLine(**u) for u in decision.unfilled),
        ),
    )
    _settle_status(session, actor, order.id, filled=not plan.unfilled, trigger=trigger)
    return decision


def destination_of(address: dict[str, Any] | None, home: str | None) -> sourcing.Destination:
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
            TaskCreated(
                fulfillment_order_id=task.id,
                order_id=order.id,
                number=order.number,
                location_id=task.location_id,
                kind=task.kind,
                status=task.status,
            ),
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


# --- rejection and re-routing -------------------------------------------------------------


def reject_lines(
    session: Session, actor: Principal, task_id: int, order_line_ids: Sequence[int], reason: str
) -> RoutingDecision | None:
    """The location cannot fill these lines (damaged, not found): they are released here and
    sourced again elsewhere, without a new order."""
    task, order = task_for(session, actor, task_id, ("open", "picking", "packed"))
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
        move_task(session, task, ("open", "picking", "packed"), "cancelled")
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
