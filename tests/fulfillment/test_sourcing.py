from __future__ import annotations

import random
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mercato.fulfillment.sourcing import (
    Allocation,
    Destination,
    Location,
    OrderLine,
    SourcingPlan,
    SourcingPolicy,
    UnfilledReason,
    distance_km,
    haversine_km,
    index_locations,
    shipment_cost,
    source_order,
    stock_table,
    verify_plan,
)

FRA = Location(1, "warehouse", "DE", 50.11, 8.68, can_ship=True, code="WH-FRA")
BERLIN = Location(
    2, "store", "DE", 52.52, 13.405, can_pickup=True, can_ship_from_store=True, code="ST-BERLIN"
)
HAMBURG = Location(
    3, "store", "DE", 53.55, 9.99, can_pickup=True, can_ship_from_store=True, code="ST-HAMBURG"
)
METZ = Location(4, "warehouse", "FR", 49.12, 6.18, can_ship=True, code="WH-METZ")
LEIPZIG = Location(5, "warehouse", "DE", 51.34, 12.37, can_ship=True, code="WH-LEIPZIG")
NETWORK = index_locations([FRA, BERLIN, HAMBURG, METZ, LEIPZIG])

KREUZBERG = Destination("DE", 52.49, 13.40)
SAARBRUECKEN = Destination("DE", 49.23, 7.00)

POLICY = SourcingPolicy(
    cost_per_shipment=5.0, cost_per_km=0.01, store_unit_penalty=1.0, min_store_units=2
)


def plan_for(
    lines: list[OrderLine],
    stock: dict[int, dict[int, int]],
    destination: Destination | None = KREUZBERG,
    policy: SourcingPolicy = POLICY,
    locations: dict[int, Location] | None = None,
    excluded: frozenset[int] = frozenset(),
) -> SourcingPlan:
    network = NETWORK if locations is None else locations
    plan = source_order(lines, destination, network, stock, policy, excluded=excluded)
    assert verify_plan(plan, lines, destination, network, stock, policy, excluded=excluded) == []
    return plan


def sources(plan: SourcingPlan, line_id: str) -> list[tuple[int, int, str]]:
    line = plan.line(line_id)
    assert line is not None, plan.explain()
    return [(a.location_id, a.quantity, a.method) for a in line.allocations]


def unfilled_reason(plan: SourcingPlan, line_id: str) -> UnfilledReason:
    return next(u.reason for u in plan.unfilled if u.line_id == line_id)


# --------------------------------------------------------------------------- the story


def test_germany_out_of_stock_online_is_shipped_from_the_berlin_store() -> None:
    stock = {7: {FRA.id: 0, BERLIN.id: 3}, 8: {FRA.id: 10}}
    plan = plan_for([OrderLine("L1", 7, 1)], stock)
    assert sources(plan, "L1") == [(BERLIN.id, 1, "ship")]
    assert plan.shipment_count == 1
    assert plan.cost == pytest.approx(
        shipment_cost(BERLIN, KREUZBERG, POLICY) + POLICY.store_unit_penalty
    )

    # The same line where the channel does not allow ship-from-store: nothing can ship it.
    forbidden = plan_for([OrderLine("L1", 7, 1, allow_ship_from_store=False)], stock)
    assert unfilled_reason(forbidden, "L1") is UnfilledReason.NO_ELIGIBLE_STOCK
    assert "ST-BERLIN rejected: line does not allow ship-from-store" in forbidden.unfilled[0].detail

    # Click & collect at Berlin: Berlin's own stock, no shipment at all.
    pickup = plan_for([OrderLine("L1", 7, 1, "pickup", BERLIN.id)], stock, destination=None)
    assert sources(pickup, "L1") == [(BERLIN.id, 1, "pickup")]
    assert pickup.shipments == () and pickup.cost == 0.0


def test_a_mixed_order_ships_together_and_explains_why() -> None:
    stock = {1: {FRA.id: 5, BERLIN.id: 1}, 2: {FRA.id: 5}, 3: {FRA.id: 5}}
    lines = [OrderLine("A", 1, 2), OrderLine("B", 2, 1), OrderLine("C", 3, 1)]
    plan = plan_for(lines, stock)
    assert [s.origin_id for s in plan.shipments] == [FRA.id]
    explanation = plan.lines[0].explanation
    assert explanation.startswith("WH-FRA: all 3 lines in one shipment, ")
    assert "ST-BERLIN rejected: only 1 unit (< min 2)" in explanation
    assert "cost" in plan.explain()


# --------------------------------------------------------------------------- rules


def test_stock_is_never_exceeded_and_lines_split_only_when_needed() -> None:
    short = plan_for([OrderLine("L1", 1, 5)], {1: {FRA.id: 3}})
    assert unfilled_reason(short, "L1") is UnfilledReason.INSUFFICIENT_STOCK
    assert short.lines == ()

    split = plan_for([OrderLine("L1", 1, 5)], {1: {FRA.id: 3, LEIPZIG.id: 2}})
    assert sorted(sources(split, "L1")) == [(FRA.id, 3, "ship"), (LEIPZIG.id, 2, "ship")]

    # Two lines of one variant share its stock.
    shared = plan_for(
        [OrderLine("L1", 1, 2), OrderLine("L2", 1, 2)], {1: {LEIPZIG.id: 2, FRA.id: 1}}
    )
    assert sources(shared, "L1") == [(LEIPZIG.id, 2, "ship")]
    assert unfilled_reason(shared, "L2") is UnfilledReason.TAKEN_BY_OTHER_LINES


def test_capabilities_decide_who_may_ship() -> None:
    no_ship = replace(FRA, can_ship=False)
    no_sfs = replace(BERLIN, can_ship_from_store=False)
    network = index_locations([no_ship, no_sfs, LEIPZIG])
    stock = {1: {FRA.id: 5, BERLIN.id: 5, LEIPZIG.id: 5}}
    plan = plan_for([OrderLine("L1", 1, 1)], stock, locations=network)
    assert sources(plan, "L1") == [(LEIPZIG.id, 1, "ship")]

    nothing = plan_for([OrderLine("L1", 1, 1)], {1: {FRA.id: 5, BERLIN.id: 5}}, locations=network)
    detail = nothing.unfilled[0].detail
    assert "ST-BERLIN rejected: no ship-from-store" in detail
    assert "WH-FRA rejected: cannot ship" in detail


def test_inactive_locations_are_never_used() -> None:
    network = index_locations([replace(BERLIN, active=False), FRA])
    plan = plan_for([OrderLine("L1", 1, 1)], {1: {BERLIN.id: 5, FRA.id: 5}}, locations=network)
    assert sources(plan, "L1") == [(FRA.id, 1, "ship")]


def test_capacity_counts_units_across_lines() -> None:
    tight = replace(BERLIN, capacity=2)
    network = index_locations([tight, FRA])
    stock = {1: {BERLIN.id: 5, FRA.id: 5}, 2: {BERLIN.id: 5}}
    lines = [OrderLine("L1", 1, 2), OrderLine("L2", 2, 2)]
    plan = plan_for(lines, stock, locations=network)
    # Berlin has the stock for both lines but can only dispatch two units today.
    assert sources(plan, "L2") == [(BERLIN.id, 2, "ship")]
    assert sources(plan, "L1") == [(FRA.id, 2, "ship")]

    closed = index_locations([replace(BERLIN, capacity=0), FRA])
    none_left = plan_for([OrderLine("L1", 2, 1)], stock, locations=closed)
    assert "ST-BERLIN rejected: no capacity left today" in none_left.unfilled[0].detail


def test_stores_below_the_minimum_do_not_ship_but_serve_their_own_pickups() -> None:
    stock = {1: {BERLIN.id: 1, FRA.id: 4}}
    shipped = plan_for([OrderLine("L1", 1, 1)], stock)
    assert sources(shipped, "L1") == [(FRA.id, 1, "ship")]
    picked = plan_for([OrderLine("L1", 1, 1, "pickup", BERLIN.id)], stock, destination=None)
    assert sources(picked, "L1") == [(BERLIN.id, 1, "pickup")]

    no_minimum = plan_for([OrderLine("L1", 1, 1)], stock, policy=replace(POLICY, min_store_units=1))
    assert sources(no_minimum, "L1") == [(BERLIN.id, 1, "ship")]


def test_pickup_store_is_fixed_and_short_stock_is_transferred_to_it() -> None:
    stock = {1: {HAMBURG.id: 0, FRA.id: 9, BERLIN.id: 9}}
    plan = plan_for([OrderLine("L1", 1, 2, "pickup", HAMBURG.id)], stock, destination=None)
    # Berlin is nearer to Hamburg but a store pays a penalty per unit: Frankfurt sends it.
    assert sources(plan, "L1") == [(FRA.id, 2, "transfer")]
    [transfer] = plan.shipments
    assert transfer.destination_id == HAMBURG.id and transfer.origin_id == FRA.id
    assert transfer.distance_km == pytest.approx(distance_km(FRA, HAMBURG))
    assert plan.customer_shipment_count == 0 and plan.transfer_count == 1

    # With splitting allowed the store hands over what it has and receives the rest.
    partial = plan_for(
        [OrderLine("L1", 1, 3, "pickup", HAMBURG.id)], {1: {HAMBURG.id: 1, FRA.id: 9}}, None
    )
    assert sources(partial, "L1") == [(HAMBURG.id, 1, "pickup"), (FRA.id, 2, "transfer")]

    closed = index_locations([replace(HAMBURG, active=False), FRA])
    gone = plan_for([OrderLine("L1", 1, 1, "pickup", HAMBURG.id)], stock, None, locations=closed)
    assert unfilled_reason(gone, "L1") is UnfilledReason.PICKUP_STORE_UNAVAILABLE


def test_excluded_locations_are_rerouted() -> None:
    stock = {1: {LEIPZIG.id: 5, FRA.id: 5}}
    first = plan_for([OrderLine("L1", 1, 1)], stock)
    assert sources(first, "L1") == [(LEIPZIG.id, 1, "ship")]
    rerouted = plan_for([OrderLine("L1", 1, 1)], stock, excluded=frozenset({LEIPZIG.id}))
    assert sources(rerouted, "L1") == [(FRA.id, 1, "ship")]

    # A pickup store that could not find the item receives a transfer instead.
    pickup = [OrderLine("P1", 1, 1, "pickup", BERLIN.id)]
    stock_at_store = {1: {BERLIN.id: 1, LEIPZIG.id: 5}}
    again = plan_for(pickup, stock_at_store, None, excluded=frozenset({BERLIN.id}))
    assert sources(again, "P1") == [(LEIPZIG.id, 1, "transfer")]


def test_split_allowed_or_not() -> None:
    stock = {1: {FRA.id: 5}, 2: {LEIPZIG.id: 5}}
    lines = [OrderLine("L1", 1, 1), OrderLine("L2", 2, 1)]
    split = plan_for(lines, stock)
    assert split.customer_shipment_count == 2 and split.fully_filled

    whole = plan_for(lines, stock, policy=replace(POLICY, allow_split=False))
    assert len(whole.lines) == 1 and whole.customer_shipment_count == 1
    assert whole.unfilled[0].reason is UnfilledReason.SPLIT_NOT_ALLOWED

    one_line = plan_for(
        [OrderLine("L1", 1, 4)],
        {1: {FRA.id: 2, LEIPZIG.id: 2}},
        policy=replace(POLICY, allow_split=False),
    )
    assert unfilled_reason(one_line, "L1") is UnfilledReason.SPLIT_NOT_ALLOWED


def test_max_shipments() -> None:
    stock = {1: {FRA.id: 5}, 2: {LEIPZIG.id: 5}, 3: {METZ.id: 5}}
    lines = [OrderLine("L1", 1, 1), OrderLine("L2", 2, 1), OrderLine("L3", 3, 1)]
    assert plan_for(lines, stock).customer_shipment_count == 3
    capped = plan_for(lines, stock, policy=replace(POLICY, max_shipments=2))
    assert capped.customer_shipment_count == 2 and len(capped.lines) == 2
    assert capped.unfilled[0].reason is UnfilledReason.MAX_SHIPMENTS


def test_cross_border_penalty_and_domestic_only() -> None:
    stock = {1: {METZ.id: 5, FRA.id: 5}}
    line = [OrderLine("L1", 1, 1)]
    assert sources(plan_for(line, stock, SAARBRUECKEN), "L1") == [(METZ.id, 1, "ship")]

    penalised = plan_for(line, stock, SAARBRUECKEN, replace(POLICY, cross_border_penalty=5.0))
    assert sources(penalised, "L1") == [(FRA.id, 1, "ship")]

    domestic = replace(POLICY, domestic_only=True)
    assert sources(plan_for(line, stock, SAARBRUECKEN, domestic), "L1") == [(FRA.id, 1, "ship")]
    only_abroad = plan_for(line, {1: {METZ.id: 5}}, SAARBRUECKEN, domestic)
    assert "WH-METZ rejected: in FR, domestic shipping only" in only_abroad.unfilled[0].detail


def test_store_penalty_prefers_warehouses() -> None:
    stock = {1: {BERLIN.id: 5, LEIPZIG.id: 5}}
    line = [OrderLine("L1", 1, 3)]
    assert sources(plan_for(line, stock), "L1") == [(LEIPZIG.id, 3, "ship")]
    free = replace(POLICY, store_unit_penalty=0.0)
    assert sources(plan_for(line, stock, policy=free), "L1") == [(BERLIN.id, 3, "ship")]


def test_cost_function() -> None:
    stock = {1: {FRA.id: 5}, 2: {BERLIN.id: 5}}
    policy = replace(POLICY, cross_border_penalty=2.0)
    plan = plan_for([OrderLine("L1", 1, 1), OrderLine("L2", 2, 2)], stock, policy=policy)
    fra_km = haversine_km(FRA.lat or 0, FRA.lng or 0, KREUZBERG.lat or 0, KREUZBERG.lng or 0)
    expected = (
        2 * policy.cost_per_shipment
        + policy.cost_per_km * (fra_km + distance_km(BERLIN, KREUZBERG))
        + 2 * policy.store_unit_penalty
    )
    assert plan.cost == pytest.approx(expected)
    assert plan.store_units == 2
    assert 410 < fra_km < 430


def test_missing_coordinates_use_the_fallback_distance() -> None:
    supplier = Location(9, "dropship", "DE", can_ship=True, code="DS")
    network = index_locations([supplier, FRA])
    plan = plan_for([OrderLine("L1", 1, 1)], {1: {9: 50}}, locations=network)
    assert plan.shipments[0].distance_km == POLICY.unknown_distance_km


def test_unfillable_lines_are_reported_and_the_rest_is_planned() -> None:
    stock = {1: {FRA.id: 5}}
    lines = [OrderLine("L1", 1, 1), OrderLine("L2", 99, 1)]
    plan = plan_for(lines, stock)
    assert sources(plan, "L1") == [(FRA.id, 1, "ship")]
    assert unfilled_reason(plan, "L2") is UnfilledReason.NO_ELIGIBLE_STOCK
    no_address = plan_for([OrderLine("L1", 1, 1)], stock, destination=None)
    assert unfilled_reason(no_address, "L1") is UnfilledReason.NO_DESTINATION


def test_bad_input_is_rejected() -> None:
    with pytest.raises(ValueError):
        OrderLine("L1", 1, 0)
    with pytest.raises(ValueError):
        OrderLine("L1", 1, 1, "pickup")
    with pytest.raises(ValueError):
        SourcingPolicy(max_shipments=0)
    with pytest.raises(ValueError, match="duplicate"):
        source_order([OrderLine("L1", 1, 1), OrderLine("L1", 2, 1)], KREUZBERG, NETWORK, {})


def test_verify_plan_catches_a_broken_plan() -> None:
    stock = {1: {FRA.id: 1}}
    lines = [OrderLine("L1", 1, 1)]
    plan = plan_for(lines, stock)
    line = replace(plan.lines[0], allocations=(Allocation(FRA.id, 2, "ship"),))
    broken = replace(plan, lines=(line,))
    problems = verify_plan(broken, lines, KREUZBERG, NETWORK, stock, POLICY)
    assert any("allocates 2 of 1" in p for p in problems)
    assert any("over stock" in p for p in problems)


def test_stock_table_from_rows() -> None:
    assert stock_table([(1, 10, 2), (1, 10, 1), (2, 11, 0)]) == {1: {10: 3}}


# --------------------------------------------------------------------------- determinism


def _random_case(seed: int) -> tuple[list[OrderLine], Destination, dict[int, Location], dict]:
    rng = random.Random(seed)
    locations = []
    for i in range(1, 41):
        kind = "warehouse" if i <= 4 else "store"
        locations.append(
            Location(
                i,
                kind,
                rng.choice(["DE", "FR"]),
                rng.uniform(46, 54),
                rng.uniform(2, 14),
                can_ship=kind == "warehouse",
                can_pickup=kind == "store",
                can_ship_from_store=True,
                capacity=rng.choice([None, 1, 3, 10]),
            )
        )
    stock = {
        v: {loc.id: rng.randint(1, 4) for loc in locations if rng.random() < 0.3}
        for v in range(1, 8)
    }
    lines = [OrderLine(f"L{n}", rng.randint(1, 7), rng.randint(1, 3)) for n in range(4)]
    return lines, Destination("DE", 51.0, 10.0), index_locations(locations), stock


def test_plans_are_deterministic_whatever_the_input_order() -> None:
    for seed in range(20):
        lines, destination, locations, stock = _random_case(seed)
        first = source_order(lines, destination, locations, stock, POLICY)
        assert source_order(lines, destination, locations, stock, POLICY) == first
        shuffled_locations = dict(reversed(list(locations.items())))
        shuffled_stock = {v: dict(reversed(list(h.items()))) for v, h in reversed(stock.items())}
        again = source_order(lines, destination, shuffled_locations, shuffled_stock, POLICY)
        assert again == first


def test_ties_go_to_the_lower_location_id() -> None:
    twin = replace(FRA, id=11, code="WH-FRA-2")
    network = index_locations([twin, FRA])
    plan = plan_for([OrderLine("L1", 1, 1)], {1: {11: 5, FRA.id: 5}}, locations=network)
    assert sources(plan, "L1") == [(FRA.id, 1, "ship")]


# --------------------------------------------------------------------------- property

_coords = st.one_of(st.none(), st.tuples(st.floats(45, 55), st.floats(0, 16)))


@st.composite
def _orders(draw: st.DrawFn) -> tuple:
    locations = []
    for i in range(1, draw(st.integers(1, 6)) + 1):
        kind = draw(st.sampled_from(["warehouse", "store", "dropship"]))
        point = draw(_coords)
        locations.append(
            Location(
                i,
                kind,
                draw(st.sampled_from(["DE", "FR"])),
                point[0] if point else None,
                point[1] if point else None,
                can_ship=draw(st.booleans()),
                can_pickup=draw(st.booleans()),
                can_ship_from_store=draw(st.booleans()),
                capacity=draw(st.one_of(st.none(), st.integers(0, 6))),
                active=draw(st.integers(0, 9)) > 0,
            )
        )
    ids = [loc.id for loc in locations]
    stock = {
        v: draw(st.dictionaries(st.sampled_from(ids), st.integers(0, 6), max_size=len(ids)))
        for v in range(1, 4)
    }
    lines = []
    for n in range(draw(st.integers(1, 4))):
        pickup = draw(st.booleans())
        lines.append(
            OrderLine(
                f"L{n}",
                draw(st.integers(1, 3)),
                draw(st.integers(1, 5)),
                "pickup" if pickup else "ship",
                draw(st.sampled_from(ids)) if pickup else None,
                draw(st.booleans()),
            )
        )
    destination = draw(
        st.one_of(st.none(), st.builds(Destination, st.sampled_from(["DE", "FR"]), *_latlng()))
    )
    policy = SourcingPolicy(
        store_unit_penalty=draw(st.sampled_from([0.0, 1.0, 5.0])),
        min_store_units=draw(st.integers(0, 3)),
        allow_split=draw(st.booleans()),
        max_shipments=draw(st.one_of(st.none(), st.integers(1, 3))),
        domestic_only=draw(st.booleans()),
        cross_border_penalty=draw(st.sampled_from([0.0, 3.0])),
    )
    excluded = frozenset(draw(st.lists(st.sampled_from(ids), max_size=2)))
    return lines, destination, index_locations(locations), stock, policy, excluded


def _latlng() -> tuple[st.SearchStrategy[float], st.SearchStrategy[float]]:
    return st.floats(45, 55), st.floats(0, 16)


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(_orders())
def test_plans_never_exceed_stock_or_the_order(case: tuple) -> None:
    lines, destination, locations, stock, policy, excluded = case
    plan = source_order(lines, destination, locations, stock, policy, excluded=excluded)
    ordered = {line.line_id: line for line in lines}
    used: dict[tuple[int, int], int] = {}
    for line_plan in plan.lines:
        line = ordered[line_plan.line_id]
        assert sum(a.quantity for a in line_plan.allocations) == line.quantity
        for allocation in line_plan.allocations:
            assert 0 < allocation.quantity <= line.quantity
            key = (line.variant_id, allocation.location_id)
            used[key] = used.get(key, 0) + allocation.quantity
    for (variant, location), units in used.items():
        assert units <= stock[variant].get(location, 0)
    assert len(plan.lines) + len(plan.unfilled) == len(lines)
    assert verify_plan(plan, lines, destination, locations, stock, policy, excluded=excluded) == []
