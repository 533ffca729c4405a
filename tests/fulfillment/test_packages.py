"""Several packages for one fulfilment order: their contents partition the shipped units,
and the order counts each unit once."""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import select

from mercato.events import OutboxEvent
from tests.commerce.conftest import DemoWorld
from tests.commerce.helpers import BERLIN, ok
from tests.conftest import assert_problem
from tests.fulfillment.conftest import item, level, order_of, place, staff, tasks, track


def _two_line_order(world: DemoWorld) -> tuple[dict[str, Any], dict[str, int], dict[str, Any]]:
    shirt = item(world, {"WH-FRA": 5}, {"EU": {"EUR": "20.00"}})
    mug = item(world, {"WH-FRA": 5}, {"EU": {"EUR": "12.00"}})
    order = place(
        world,
        "web-de",
        [{"variant_id": shirt, "quantity": 2}, {"variant_id": mug, "quantity": 1}],
        address=BERLIN,
    )
    [task] = tasks(world, order["id"], "ship")
    return order, {"shirt": shirt, "mug": mug}, task


def _line(order: dict[str, Any], variant: int) -> int:
    return int(next(x["id"] for x in order["lines"] if x["variant_id"] == variant))


def _shipped_units(shipments: list[dict[str, Any]]) -> Counter[int]:
    units: Counter[int] = Counter()
    for s in shipments:
        for x in s["lines"]:
            units[x["order_line_id"]] += x["quantity"]
    return units


def _shipped_events(world: DemoWorld, order_id: int) -> list[dict[str, Any]]:
    with world.database.read() as session:
        rows = session.scalars(
            select(OutboxEvent).where(OutboxEvent.type == "shipment.shipped")
        ).all()
        return [dict(r.data) for r in rows if r.data.get("order_id") == order_id]


def test_packages_that_list_their_items_become_one_shipment_each(demo_world: DemoWorld) -> None:
    client = demo_world.client
    order, v, task = _two_line_order(demo_world)
    shirts, mugs = _line(order, v["shirt"]), _line(order, v["mug"])
    packages = [
        {"weight_g": 700, "items": [{"order_line_id": shirts, "quantity": 1}]},
        {
            "weight_g": 900,
            "items": [
                {"order_line_id": shirts, "quantity": 1},
                {"order_line_id": mugs, "quantity": 1},
            ],
        },
    ]
    owner = staff(demo_world)
    ok(
        client.post(
            f"/v1/fulfillment/orders/{task['id']}/pack", headers=owner, json={"packages": packages}
        )
    )
    shipped = ok(client.post(f"/v1/fulfillment/orders/{task['id']}/ship", headers=owner, json={}))
    shipments = shipped["shipments"]
    assert len(shipments) == 2
    assert [[(x["order_line_id"], x["quantity"]) for x in s["lines"]] for s in shipments] == [
        [(shirts, 1)],
        sorted([(shirts, 1), (mugs, 1)]),
    ]
    assert _shipped_units(shipments) == {shirts: 2, mugs: 1}
    assert len({s["tracking_number"] for s in shipments}) == 2
    events = _shipped_events(demo_world, order["id"])
    assert _shipped_units(events) == {shirts: 2, mugs: 1}  # events never double count
    lines = {x["id"]: x for x in order_of(demo_world, order["id"])["lines"]}
    assert (lines[shirts]["fulfilled_quantity"], lines[mugs]["fulfilled_quantity"]) == (2, 1)
    assert level(demo_world, v["shirt"], "WH-FRA").on_hand == 3
    # Each parcel arrives on its own; the order is delivered with the last one.
    track(demo_world, shipments[0]["tracking_number"], "delivered")
    assert order_of(demo_world, order["id"])["status"] == "fulfilled"
    track(demo_world, shipments[1]["tracking_number"], "delivered")
    assert order_of(demo_world, order["id"])["status"] == "delivered"


def test_packages_without_contents_travel_as_one_shipment(demo_world: DemoWorld) -> None:
    client = demo_world.client
    order, v, task = _two_line_order(demo_world)
    shirts, mugs = _line(order, v["shirt"]), _line(order, v["mug"])
    owner = staff(demo_world)
    shipped = ok(
        client.post(
            f"/v1/fulfillment/orders/{task['id']}/ship",
            headers=owner,
            json={"packages": [{"weight_g": 700}, {"weight_g": 900}]},
        )
    )
    [shipment] = shipped["shipments"]
    assert _shipped_units([shipment]) == {shirts: 2, mugs: 1}
    parcels = shipment["packages"]
    assert [p["weight_g"] for p in parcels] == [700, 900]
    numbers = [p["tracking_number"] for p in parcels]
    assert len(set(numbers)) == 2 and shipment["tracking_number"] == numbers[0]
    assert _shipped_units(_shipped_events(demo_world, order["id"])) == {shirts: 2, mugs: 1}
    # The shipment is delivered once both of its parcels are.
    track(demo_world, numbers[1], "delivered")
    assert tasks(demo_world, order["id"], "ship")[0]["shipments"][0]["status"] == "in_transit"
    assert order_of(demo_world, order["id"])["status"] == "fulfilled"
    track(demo_world, numbers[0], "delivered")
    assert tasks(demo_world, order["id"], "ship")[0]["shipments"][0]["status"] == "delivered"
    assert order_of(demo_world, order["id"])["status"] == "delivered"


def test_contents_that_do_not_add_up_are_refused(demo_world: DemoWorld) -> None:
    client = demo_world.client
    order, v, task = _two_line_order(demo_world)
    shirts, mugs = _line(order, v["shirt"]), _line(order, v["mug"])
    owner = staff(demo_world)
    url = f"/v1/fulfillment/orders/{task['id']}/ship"
    twice = [
        {"weight_g": 700, "items": [{"order_line_id": shirts, "quantity": 2}]},
        {
            "weight_g": 700,
            "items": [
                {"order_line_id": shirts, "quantity": 2},
                {"order_line_id": mugs, "quantity": 1},
            ],
        },
    ]
    problem = assert_problem(client.post(url, headers=owner, json={"packages": twice}), 422)
    assert problem["errors"][0]["field"] == "body.packages"
    half = [
        {"weight_g": 700, "items": [{"order_line_id": shirts, "quantity": 2}]},
        {"weight_g": 300},
    ]
    problem = assert_problem(client.post(url, headers=owner, json={"packages": half}), 422)
    assert problem["errors"][0]["field"] == "body.packages[1].items"
    stranger = [{"weight_g": 700, "items": [{"order_line_id": 10**9, "quantity": 1}]}]
    problem = assert_problem(client.post(url, headers=owner, json={"packages": stranger}), 422)
    assert problem["errors"][0]["field"] == "body.packages[0].items[0].order_line_id"
    # Nothing shipped, nothing left stock.
    assert tasks(demo_world, order["id"], "ship")[0]["status"] == "open"
    assert level(demo_world, v["shirt"], "WH-FRA").on_hand == 5
    assert _shipped_events(demo_world, order["id"]) == []
