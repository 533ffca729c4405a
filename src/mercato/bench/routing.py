"""Order sourcing benchmark: the engine's speed, and its plans against an exact optimum.

A seeded synthetic network (warehouses, stores and dropship suppliers in five countries,
sparse stock so that some orders must be split) and seeded orders of one to five lines,
mostly shipped, some click & collect. Two measurements:

* speed: :func:`~mercato.fulfillment.sourcing.source_order` on every order against the whole
  network, one call at a time;
* quality: small instances, each one order over ``quality_locations`` candidates drawn at
  random (three warehouses, a dropship supplier, the rest stores), solved by the engine and
  by an integer program with the same rules and the same cost function (PuLP with its bundled
  CBC solver). The instances rotate through several policies: the default, splitting off, at
  most two shipments, domestic shipping only, re-routing with two locations excluded.

Every engine plan is also checked by :func:`~mercato.fulfillment.sourcing.verify_plan`.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from importlib.metadata import version
from typing import Any

from mercato.fulfillment.sourcing import (
    Destination,
    Location,
    OrderLine,
    SourcingPlan,
    SourcingPolicy,
    ship_rejection,
    shipment_cost,
    source_order,
    unit_penalty,
    verify_plan,
)

# code, centre latitude and longitude, half-spans, share of locations and customers
_COUNTRIES: tuple[tuple[str, float, float, float, float, float], ...] = (
    ("DE", 51.0, 10.3, 2.0, 2.8, 0.40),
    ("FR", 46.6, 2.5, 2.2, 2.8, 0.30),
    ("NL", 52.2, 5.4, 0.5, 0.8, 0.10),
    ("BE", 50.6, 4.6, 0.4, 0.8, 0.08),
    ("AT", 47.6, 14.2, 0.5, 2.0, 0.12),
)
_COUNTRY_WEIGHTS = [c[5] for c in _COUNTRIES]

BENCH_POLICY = SourcingPolicy(
    cost_per_shipment=5.0,
    cost_per_km=0.01,
    store_unit_penalty=1.0,
    min_store_units=2,
    cross_border_penalty=3.0,
)
QUALITY_POLICIES: tuple[tuple[str, SourcingPolicy, int], ...] = (
    # name, policy, locations excluded (re-routing)
    ("default", BENCH_POLICY, 0),
    ("no_split", replace(BENCH_POLICY, allow_split=False), 0),
    ("max_2_shipments", replace(BENCH_POLICY, max_shipments=2), 0),
    ("domestic_only", replace(BENCH_POLICY, domestic_only=True), 0),
    ("rerouting", BENCH_POLICY, 2),
)


@dataclass(frozen=True, slots=True)
class Network:
    locations: dict[int, Location]
    stock: dict[int, dict[int, int]]
    held: dict[int, list[int]]  # location id -> variants it holds
    variants: int


@dataclass(frozen=True, slots=True)
class BenchOrder:
    lines: tuple[OrderLine, ...]
    destination: Destination | None


@dataclass(frozen=True, slots=True)
class Optimum:
    filled: int
    cost: float
    shipments: int


@dataclass(slots=True)
class _Tally:
    engine_cost: float = 0.0
    optimal_cost: float = 0.0
    engine_shipments: int = 0
    optimal_shipments: int = 0

    def add(self, plan: SourcingPlan, best: Optimum) -> None:
        self.engine_cost += plan.cost
        self.optimal_cost += best.cost
        self.engine_shipments += plan.shipment_count
        self.optimal_shipments += best.shipments

    def ratios(self) -> dict[str, float]:
        return {
            "cost_ratio_to_optimal": _ratio(self.engine_cost, self.optimal_cost),
            "shipments_ratio_to_optimal": _ratio(self.engine_shipments, self.optimal_shipments),
        }


def _ratio(a: float, b: float) -> float:
    return round(a / b, 4) if b else 1.0


def _place(rng: random.Random) -> tuple[str, float, float]:
    code, lat, lng, d_lat, d_lng, _ = rng.choices(_COUNTRIES, weights=_COUNTRY_WEIGHTS)[0]
    return code, lat + rng.uniform(-d_lat, d_lat), lng + rng.uniform(-d_lng, d_lng)


def generate_network(rng: random.Random, locations: int, variants: int) -> Network:
    """About 5% warehouses (half the catalogue each), 2% dropship suppliers (missing
    coordinates half of the time) and stores holding a few units of 8% of the catalogue."""
    warehouses = max(1, round(locations * 0.05))
    dropship = max(1, round(locations * 0.02)) if locations >= 10 else 0
    stores = max(0, locations - warehouses - dropship)
    catalogue = range(1, variants + 1)
    found: dict[int, Location] = {}
    stock: dict[int, dict[int, int]] = {}
    held: dict[int, list[int]] = {}

    def stock_up(location_id: int, share: float, units: Sequence[int]) -> None:
        chosen = sorted(rng.sample(catalogue, min(variants, max(1, round(variants * share)))))
        held[location_id] = chosen
        for variant in chosen:
            stock.setdefault(variant, {})[location_id] = rng.choice(units)

    next_id = 1
    for n in range(warehouses):
        country, lat, lng = _place(rng)
        found[next_id] = Location(
            next_id, "warehouse", country, lat, lng, can_ship=True, code=f"WH-{country}-{n + 1}"
        )
        stock_up(next_id, 0.5, range(1, 31))
        next_id += 1
    for n in range(dropship):
        country, lat, lng = _place(rng)
        located = rng.random() < 0.5
        found[next_id] = Location(
            next_id,
            "dropship",
            country,
            lat if located else None,
            lng if located else None,
            can_ship=True,
            code=f"DS-{n + 1}",
        )
        stock_up(next_id, 0.15, range(20, 201))
        next_id += 1
    for n in range(stores):
        country, lat, lng = _place(rng)
        roll = rng.random()
        capacity = 0 if roll < 0.1 else rng.randint(1, 6) if roll < 0.4 else rng.randint(7, 60)
        found[next_id] = Location(
            next_id,
            "store",
            country,
            lat,
            lng,
            can_pickup=rng.random() < 0.95,
            can_ship_from_store=rng.random() < 0.7,
            capacity=capacity,
            active=rng.random() < 0.97,
            code=f"ST-{country}-{n + 1}",
        )
        stock_up(next_id, 0.08, (1, 1, 2, 2, 3, 4, 6, 10))
        next_id += 1
    return Network(found, stock, held, variants)


def _lines(
    rng: random.Random,
    variants: Sequence[int],
    pickup_stores: Sequence[int],
) -> tuple[tuple[OrderLine, ...], bool]:
    count = rng.choices((1, 2, 3, 4, 5), weights=(45, 25, 15, 10, 5))[0]
    roll = rng.random()
    pickup_all = roll < 0.1 and bool(pickup_stores)
    mixed = 0.1 <= roll < 0.15 and bool(pickup_stores) and count > 1
    store = rng.choice(pickup_stores) if pickup_stores else None
    allow_sfs = rng.random() < 0.9
    lines: list[OrderLine] = []
    for n in range(count):
        quantity = rng.choices((1, 2, 3, 4), weights=(70, 20, 7, 3))[0]
        pickup = pickup_all or (mixed and n == 0)
        lines.append(
            OrderLine(
                f"L{n + 1}",
                variants[n],
                quantity,
                "pickup" if pickup else "ship",
                store if pickup else None,
                allow_sfs,
            )
        )
    return tuple(lines), any(line.mode == "ship" for line in lines)


def _destination(rng: random.Random) -> Destination:
    country, lat, lng = _place(rng)
    return Destination(country, lat, lng)


def generate_orders(rng: random.Random, network: Network, count: int) -> list[BenchOrder]:
    """Orders of 1-5 lines; popular variants are ordered more often."""
    catalogue = list(range(1, network.variants + 1))
    weights = [1.0 / (v + 20) ** 0.7 for v in catalogue]
    pickup_stores = [loc.id for loc in network.locations.values() if loc.can_pickup and loc.active]
    orders: list[BenchOrder] = []
    for _ in range(count):
        variants = rng.choices(catalogue, weights=weights, k=5)
        lines, shipped = _lines(rng, variants, pickup_stores)
        orders.append(BenchOrder(lines, _destination(rng) if shipped else None))
    return orders


def _subnetwork(
    rng: random.Random, network: Network, size: int
) -> tuple[dict[int, Location], list[int]]:
    by_type: dict[str, list[int]] = {"warehouse": [], "store": [], "dropship": []}
    for loc in network.locations.values():
        by_type[loc.type].append(loc.id)
    picked = rng.sample(by_type["warehouse"], min(3, len(by_type["warehouse"])))
    picked += rng.sample(by_type["dropship"], min(1, len(by_type["dropship"])))
    picked += rng.sample(by_type["store"], min(len(by_type["store"]), max(0, size - len(picked))))
    subset = {i: network.locations[i] for i in sorted(picked)}
    return subset, sorted(picked)


def _restrict(
    stock: Mapping[int, Mapping[int, int]], lines: Sequence[OrderLine], ids: Sequence[int]
) -> dict[int, dict[int, int]]:
    out: dict[int, dict[int, int]] = {}
    for line in lines:
        held = stock.get(line.variant_id) or {}
        out[line.variant_id] = {i: held[i] for i in ids if i in held}
    return out


def solve_exact(
    lines: Sequence[OrderLine],
    destination: Destination | None,
    locations: Mapping[int, Location],
    stock: Mapping[int, Mapping[int, int]],
    policy: SourcingPolicy,
    excluded: frozenset[int] = frozenset(),
) -> Optimum:
    """The optimal plan by integer programming: as many lines as possible, then the least
    cost (then the fewest shipments), under the engine's rules and cost function."""
    import pulp

    problem = pulp.LpProblem("sourcing", pulp.LpMinimize)
    # (line, origin, target): units; target None is the customer, -1 the pickup store's shelf
    units: dict[tuple[int, int, int | None], Any] = {}
    filled: dict[int, Any] = {}
    leg_cost: dict[tuple[int, int | None], float] = {}
    for i, line in enumerate(lines):
        held = stock.get(line.variant_id) or {}
        options: list[tuple[int, int | None]] = []
        if line.mode == "ship":
            if destination is None:
                continue
            for origin_id, available in held.items():
                origin = locations.get(origin_id)
                if origin is None:
                    continue
                if ship_rejection(origin, line, available, destination.country, policy, excluded):
                    continue
                options.append((origin_id, None))
                leg_cost[(origin_id, None)] = shipment_cost(origin, destination, policy)
        else:
            store = locations.get(line.pickup_location_id or -1)
            if store is None or not store.active or not store.can_pickup:
                continue
            if store.id not in excluded and held.get(store.id, 0) > 0:
                options.append((store.id, -1))
            for origin_id, available in held.items():
                origin = locations.get(origin_id)
                if origin is None or origin_id == store.id:
                    continue
                if ship_rejection(origin, line, available, store.country, policy, excluded):
                    continue
                options.append((origin_id, store.id))
                leg_cost[(origin_id, store.id)] = shipment_cost(origin, store, policy)
        if not options:
            continue
        chosen = pulp.LpVariable(f"filled_{i}", cat="Binary")
        filled[i] = chosen
        terms = []
        for origin_id, target in options:
            most = min(line.quantity, held[origin_id])
            capacity = locations[origin_id].capacity
            if target != -1 and capacity is not None:
                most = min(most, capacity)
            name = f"x_{i}_{origin_id}_{'c' if target is None else target}"
            if policy.allow_split:
                var = pulp.LpVariable(name, 0, most, cat="Integer")
            elif most >= line.quantity:
                var = line.quantity * pulp.LpVariable(name, cat="Binary")
            else:
                continue
            units[(i, origin_id, target)] = var
            terms.append(var)
        problem += pulp.lpSum(terms) == line.quantity * chosen

    legs = {key: pulp.LpVariable(f"y_{key[0]}_{key[1]}", cat="Binary") for key in leg_cost}
    for (i, origin_id, target), var in units.items():
        if target != -1:
            problem += var <= lines[i].quantity * legs[(origin_id, target)]
    for variant in {line.variant_id for line in lines}:
        for origin_id, available in (stock.get(variant) or {}).items():
            use = [
                var
                for (i, o, _), var in units.items()
                if o == origin_id and lines[i].variant_id == variant
            ]
            if use:
                problem += pulp.lpSum(use) <= available
    for origin_id, origin in locations.items():
        if origin.capacity is not None:
            use = [var for (_, o, t), var in units.items() if o == origin_id and t != -1]
            if use:
                problem += pulp.lpSum(use) <= origin.capacity
    targets = {target for _, target in leg_cost}
    if not policy.allow_split:
        for target in targets:
            problem += pulp.lpSum(y for (_, t), y in legs.items() if t == target) <= 1
    if policy.max_shipments is not None:
        problem += pulp.lpSum(y for (_, t), y in legs.items() if t is None) <= policy.max_shipments
    penalties = [
        unit_penalty(locations[o], policy) * var for (_, o, t), var in units.items() if t != -1
    ]
    worst = sum(leg_cost.values()) + policy.store_unit_penalty * sum(q.quantity for q in lines)
    big = worst + 1.0
    problem += (
        pulp.lpSum(leg_cost[key] * y for key, y in legs.items())
        + pulp.lpSum(penalties)
        - big * pulp.lpSum(filled.values())
        # among equal costs, fewer shipments
        + 1e-6 * pulp.lpSum(legs.values())
    )
    status = problem.solve(pulp.PULP_CBC_CMD(msg=False, gapRel=0.0, gapAbs=0.0))
    if pulp.LpStatus[status] != "Optimal":
        raise RuntimeError(f"the optimiser did not solve the instance: {pulp.LpStatus[status]}")

    carried: dict[tuple[int, int | None], int] = {}
    store_units = 0
    for (_, origin_id, target), var in units.items():
        amount = round(pulp.value(var) or 0)
        if amount and target != -1:
            carried[(origin_id, target)] = carried.get((origin_id, target), 0) + amount
            if locations[origin_id].type == "store":
                store_units += amount
    cost = sum(leg_cost[key] for key in carried) + policy.store_unit_penalty * store_units
    count = sum(round(pulp.value(z) or 0) for z in filled.values())
    return Optimum(count, cost, len(carried))


def _quality_order(
    rng: random.Random, network: Network, subset: Mapping[int, Location], ids: Sequence[int]
) -> BenchOrder:
    holders = [i for i in ids if network.held.get(i)]
    variants = [rng.choice(network.held[rng.choice(holders)]) for _ in range(5)]
    pickup_stores = [i for i in ids if subset[i].can_pickup and subset[i].active]
    lines, shipped = _lines(rng, variants, pickup_stores)
    return BenchOrder(lines, _destination(rng) if shipped else None)


def _percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def run_routing_benchmark(
    *,
    locations: int = 200,
    variants: int = 2000,
    orders: int = 10_000,
    quality_orders: int = 200,
    quality_locations: int = 25,
    seed: int = 42,
) -> dict[str, Any]:
    """Run both measurements and return the JSON-ready summary."""
    started = time.perf_counter()
    rng = random.Random(seed)
    network = generate_network(rng, locations, variants)
    workload = generate_orders(rng, network, orders)

    timings: list[float] = []
    plans: list[SourcingPlan] = []
    clock = time.perf_counter
    for order in workload:
        t0 = clock()
        plan = source_order(
            order.lines, order.destination, network.locations, network.stock, BENCH_POLICY
        )
        timings.append(clock() - t0)
        plans.append(plan)
    elapsed = sum(timings)
    invalid = sum(
        1
        for order, plan in zip(workload, plans, strict=True)
        if verify_plan(
            plan, order.lines, order.destination, network.locations, network.stock, BENCH_POLICY
        )
    )

    overall = _Tally()
    per_policy = {name: _Tally() for name, _, _ in QUALITY_POLICIES}
    worst = 1.0
    unfilled = below = matched = compared = 0
    quality_rng = random.Random(seed + 1)
    for n in range(quality_orders):
        name, policy, exclude = QUALITY_POLICIES[n % len(QUALITY_POLICIES)]
        subset, ids = _subnetwork(quality_rng, network, quality_locations)
        order = _quality_order(quality_rng, network, subset, ids)
        stock = _restrict(network.stock, order.lines, ids)
        excluded = frozenset(quality_rng.sample(ids, exclude)) if exclude else frozenset()
        plan = source_order(
            order.lines, order.destination, subset, stock, policy, excluded=excluded
        )
        if verify_plan(
            plan, order.lines, order.destination, subset, stock, policy, excluded=excluded
        ):
            invalid += 1
        best = solve_exact(order.lines, order.destination, subset, stock, policy, excluded)
        engine_filled = len(plan.lines)
        if engine_filled < best.filled:
            unfilled += 1
            continue
        # Only possible if the optimiser or the engine broke a rule: reported, never hidden.
        if engine_filled > best.filled or plan.cost < best.cost - 1e-6:
            below += 1
        compared += 1
        overall.add(plan, best)
        per_policy[name].add(plan, best)
        if abs(plan.cost - best.cost) <= 1e-6:
            matched += 1
        elif best.cost > 0:
            worst = max(worst, plan.cost / best.cost)

    return {
        "locations": len(network.locations),
        "variants": variants,
        "orders": orders,
        "orders_per_s": round(orders / elapsed, 1) if elapsed else 0.0,
        "p50_ms": round(statistics.median(timings) * 1000, 4) if timings else 0.0,
        "p99_ms": round(_percentile(timings, 0.99) * 1000, 4) if timings else 0.0,
        "mean_lines": round(statistics.fmean(len(o.lines) for o in workload), 3)
        if workload
        else 0.0,
        "split_orders": sum(1 for p in plans if p.customer_shipment_count > 1),
        "orders_not_fully_filled": sum(1 for p in plans if p.unfilled),
        "invalid_plans": invalid,
        "quality_orders": quality_orders,
        "quality_locations": quality_locations,
        **overall.ratios(),
        "worst_cost_ratio": round(worst, 4),
        "optimal_share": round(matched / compared, 4) if compared else 1.0,
        "unfilled": unfilled,
        "below_optimum": below,
        "quality_by_policy": {name: tally.ratios() for name, tally in per_policy.items()},
        "solver": f"CBC via PuLP {version('pulp')}",
        "seed": seed,
        "seconds": round(time.perf_counter() - started, 2),
    }
