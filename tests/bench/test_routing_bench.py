from __future__ import annotations

import json
import random

from typer.testing import CliRunner

from mercato.bench.cli import bench_app
from mercato.bench.routing import (
    BENCH_POLICY,
    generate_network,
    generate_orders,
    run_routing_benchmark,
    solve_exact,
)
from mercato.fulfillment.sourcing import (
    Destination,
    Location,
    OrderLine,
    index_locations,
    source_order,
)

KEYS = {
    "locations",
    "orders",
    "orders_per_s",
    "p50_ms",
    "p99_ms",
    "quality_orders",
    "cost_ratio_to_optimal",
    "shipments_ratio_to_optimal",
    "worst_cost_ratio",
    "unfilled",
    "seed",
}


def test_small_run_matches_the_optimum() -> None:
    result = run_routing_benchmark(
        locations=30, variants=150, orders=60, quality_orders=10, quality_locations=12, seed=3
    )
    assert result.keys() >= KEYS
    assert result["locations"] == 30 and result["orders"] == 60 and result["seed"] == 3
    assert result["orders_per_s"] > 0
    assert 1.0 <= result["cost_ratio_to_optimal"] <= 1.05
    assert 1.0 <= result["shipments_ratio_to_optimal"] <= 1.05
    assert result["worst_cost_ratio"] >= 1.0
    assert result["unfilled"] == 0
    assert result["invalid_plans"] == 0
    json.dumps(result)


def test_the_optimiser_prices_plans_like_the_engine() -> None:
    warehouse = Location(1, "warehouse", "DE", 50.11, 8.68, can_ship=True)
    store = Location(2, "store", "DE", 52.52, 13.40, can_ship_from_store=True, can_pickup=True)
    locations = index_locations([warehouse, store])
    stock = {1: {1: 5, 2: 5}, 2: {2: 5}}
    lines = [OrderLine("A", 1, 2), OrderLine("B", 2, 1), OrderLine("C", 1, 1, "pickup", 2)]
    destination = Destination("DE", 52.5, 13.4)
    plan = source_order(lines, destination, locations, stock, BENCH_POLICY)
    best = solve_exact(lines, destination, locations, stock, BENCH_POLICY)
    assert best.filled == len(plan.lines) == 3
    assert abs(best.cost - plan.cost) < 1e-6
    assert best.shipments == plan.shipment_count


def test_generated_data_is_seeded() -> None:
    first = generate_network(random.Random(5), 40, 100)
    again = generate_network(random.Random(5), 40, 100)
    assert first == again
    kinds = {loc.type for loc in first.locations.values()}
    assert kinds == {"warehouse", "store", "dropship"}
    orders = generate_orders(random.Random(5), first, 50)
    assert all(1 <= len(order.lines) <= 5 for order in orders)


def test_cli_prints_one_json_object() -> None:
    args = ["routing", "--locations", "20", "--variants", "80", "--orders", "20"]
    args += ["--quality-orders", "3", "--quality-locations", "10", "--seed", "9"]
    result = CliRunner().invoke(bench_app, args)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload.keys() >= KEYS and payload["seed"] == 9
