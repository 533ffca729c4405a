"""Checking a plan against the rules, independently of the search (tests and the
benchmark run every plan through it)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from mercato.fulfillment.sourcing.model import (
    DEFAULT_POLICY,
    Destination,
    Location,
    OrderLine,
    SourcingPlan,
    SourcingPolicy,
    StockTable,
)
from mercato.fulfillment.sourcing.rules import ship_rejection, shipment_cost


def verify_plan(
    plan: SourcingPlan,
    lines: Sequence[OrderLine],
    destination: Destination | None,
    locations: Mapping[int, Location],
    stock: StockTable,
    policy: SourcingPolicy = DEFAULT_POLICY,
    *,
    excluded: Collection[int] = frozenset(),
) -> list[str]:
    """Every rule ``plan`` breaks, recomputed independently of the search (empty: valid).

    Also checks that its shipments and cost agree with its allocations.
    """
    problems: list[str] = []
    by_id = {line.line_id: line for line in lines}
    accounted = [p.line_id for p in plan.lines] + [u.line_id for u in plan.unfilled]
    if sorted(accounted) != sorted(by_id):
        problems.append("lines planned and unfilled do not match the order's lines")
    used: dict[tuple[int, int], int] = {}
    dispatched: dict[int, int] = {}
    legs: dict[tuple[int, int | None], int] = {}
    origins_of_line: dict[str, set[int]] = {}
    store_units = 0
    for line_plan in plan.lines:
        line = by_id.get(line_plan.line_id)
        if line is None:
            problems.append(f"{line_plan.line_id}: not an order line")
            continue
        total = sum(a.quantity for a in line_plan.allocations)
        if total != line.quantity:
            problems.append(f"{line.line_id}: allocates {total} of {line.quantity}")
        for a in line_plan.allocations:
            origin = locations.get(a.location_id)
            if origin is None or a.quantity <= 0:
                problems.append(f"{line.line_id}: bad allocation {a}")
                continue
            key = (line.variant_id, a.location_id)
            used[key] = used.get(key, 0) + a.quantity
            origins_of_line.setdefault(line.line_id, set()).add(a.location_id)
            available = (stock.get(line.variant_id) or {}).get(a.location_id, 0)
            if a.method == "pickup":
                if line.mode != "pickup" or a.location_id != line.pickup_location_id:
                    problems.append(f"{line.line_id}: pickup from the wrong location")
                elif not origin.active or not origin.can_pickup or origin.id in excluded:
                    problems.append(f"{line.line_id}: {origin.label} cannot serve pickup")
                continue
            if a.method == "ship":
                if line.mode != "ship" or destination is None:
                    problems.append(f"{line.line_id}: shipped but not a shipped line")
                    continue
                target: int | None = None
                country = destination.country
            else:
                store = locations.get(line.pickup_location_id or -1)
                if line.mode != "pickup" or store is None or a.location_id == store.id:
                    problems.append(f"{line.line_id}: bad transfer")
                    continue
                target = store.id
                country = store.country
            reason = ship_rejection(origin, line, available, country, policy, excluded)
            if reason is not None:
                problems.append(f"{line.line_id}: {origin.label} may not ship it: {reason}")
            dispatched[a.location_id] = dispatched.get(a.location_id, 0) + a.quantity
            legs[(a.location_id, target)] = legs.get((a.location_id, target), 0) + a.quantity
            if origin.type == "store":
                store_units += a.quantity
    for (variant_id, location_id), units in used.items():
        if units > (stock.get(variant_id) or {}).get(location_id, 0):
            problems.append(f"variant {variant_id} at #{location_id}: {units} over stock")
    for location_id, units in dispatched.items():
        capacity = locations[location_id].capacity
        if capacity is not None and units > capacity:
            problems.append(f"#{location_id}: {units} units over capacity {capacity}")
    home = sum(1 for _, target in legs if target is None)
    if policy.max_shipments is not None and home > policy.max_shipments:
        problems.append(f"{home} shipments to the customer, max {policy.max_shipments}")
    if not policy.allow_split:
        targets = [target for _, target in legs]
        if len(targets) != len(set(targets)):
            problems.append("several shipments to one target while splitting is off")
        for line_id, origins in origins_of_line.items():
            if len(origins) > 1:
                problems.append(f"{line_id}: split between locations while splitting is off")
    shipped = {(s.origin_id, s.destination_id): s.units for s in plan.shipments}
    if shipped != legs:
        problems.append("shipments do not match the allocations")
    cost = 0.0
    for origin_id, target in legs:
        origin = locations[origin_id]
        if target is None:
            assert destination is not None
            cost += shipment_cost(origin, destination, policy)
        else:
            cost += shipment_cost(origin, locations[target], policy)
    cost += store_units * policy.store_unit_penalty
    if abs(cost - plan.cost) > 1e-6 * max(1.0, cost):
        problems.append(f"cost {plan.cost:.6f} differs from its recomputation {cost:.6f}")
    if store_units != plan.store_units:
        problems.append("store unit count does not match the allocations")
    return problems
