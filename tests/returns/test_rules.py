"""Bad requests get a clear 4xx and change nothing; store roles act only at their stores."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from mercato.orders import service as orders
from mercato.returns.models import Return
from tests.commerce.conftest import DemoWorld
from tests.commerce.helpers import ok
from tests.conftest import assert_problem
from tests.returns.conftest import (
    SYSTEM,
    fulfil,
    level,
    line,
    place,
    product,
    receive,
    refund,
    staff_login,
    start_return,
)


def _count(world: DemoWorld, order_id: int) -> int:
    with world.database.read() as session:
        query = select(func.count()).select_from(Return).where(Return.order_id == order_id)
        return int(session.scalar(query) or 0)


def test_quantities_are_checked_against_what_was_bought_and_delivered(
    demo_world: DemoWorld,
) -> None:
    client, staff = demo_world.client, staff_login(demo_world)
    item = product(demo_world, {"ONE": {"JPY": "1200"}}, {"WH-TYO": 9})
    order = place(demo_world, [(item["ONE"], 3)])

    def attempt(quantity: int, **extra: Any) -> dict[str, Any]:
        body = {
            "order_number": order.number,
            "lines": [line(order, item["ONE"], quantity, "changed_mind", **extra)],
        }
        return assert_problem(client.post("/v1/returns", headers=staff, json=body), 422)

    assert attempt(1)["code"] == "return-exceeds-returnable"  # nothing delivered yet
    with demo_world.database.transaction() as session:
        orders.record_fulfilled(session, SYSTEM, order.id, {order.lines[0]["id"]: 2})
    too_many = attempt(4)
    assert too_many["errors"] == [{"field": "body.lines[0].quantity", "reason": "only 3 bought"}]
    undelivered = attempt(3)
    assert undelivered["errors"][0]["reason"].startswith("only 2 delivered")
    assert attempt(0)["errors"][0]["field"] == "body.lines[0].quantity"
    unknown = {
        "order_number": order.number,
        "lines": [{"order_line_id": 10**9, "quantity": 1, "reason": "other"}],
    }
    problem = assert_problem(client.post("/v1/returns", headers=staff, json=unknown), 422)
    assert problem["errors"][0]["field"] == "body.lines[0].order_line_id"
    bad_reason = {"order_number": order.number, "lines": [line(order, item["ONE"], 1, "bored")]}
    assert_problem(client.post("/v1/returns", headers=staff, json=bad_reason), 422)
    assert attempt(1, exchange_variant_id=item["ONE"])["errors"][0]["field"] == (
        "body.lines[0].exchange_variant_id"
    )
    other = product(demo_world, {"ONE": {"JPY": "1200"}}, {"WH-TYO": 1})
    assert "same product" in attempt(1, exchange_variant_id=other["ONE"])["errors"][0]["reason"]
    both_ids = {
        "order_id": order.id,
        "order_number": order.number,
        "lines": [line(order, item["ONE"], 1, "other")],
    }
    assert_problem(client.post("/v1/returns", headers=staff, json=both_ids), 422)
    assert_problem(
        client.post(
            "/v1/returns",
            headers=staff,
            json={"order_number": "MXXXX-XXXX", "lines": [line(order, item["ONE"], 1, "other")]},
        ),
        404,
    )
    assert _count(demo_world, order.id) == 0

    # Units on an open return are not offered twice.
    start_return(demo_world, staff, order, [line(order, item["ONE"], 2, "changed_mind")])
    assert attempt(1)["errors"][0]["reason"].startswith("only 0 delivered")
    assert _count(demo_world, order.id) == 1


def test_receiving_needs_a_location_that_takes_returns(demo_world: DemoWorld) -> None:
    staff = staff_login(demo_world)
    item = product(demo_world, {"ONE": {"JPY": "1600"}}, {"WH-TYO": 4})
    order = place(demo_world, [(item["ONE"], 1)])
    fulfil(demo_world, order)
    ret = start_return(demo_world, staff, order, [line(order, item["ONE"], 1, "changed_mind")])
    problem = assert_problem(
        receive(demo_world, staff, ret, "DS-DALAT"), 422, "location-refuses-returns"
    )
    assert problem["errors"][0]["field"] == "body.location_id"
    bad = demo_world.client.post(
        f"/v1/returns/{ret['id']}/receive",
        headers=staff,
        json={"location_id": demo_world.location_id("WH-TYO"), "lines": []},
    )
    assert_problem(bad, 422)
    unknown = demo_world.client.post(
        f"/v1/returns/{ret['id']}/receive",
        headers=staff,
        json={
            "location_id": 10**8,
            "lines": [{"return_line_id": ret["lines"][0]["id"], "condition": "restock"}],
        },
    )
    assert_problem(unknown, 422)
    after = ok(demo_world.client.get(f"/v1/returns/{ret['id']}", headers=staff))
    assert (after["status"], after["location_id"]) == ("approved", None)
    # To the vendor: received and refunded, never in stock.
    before = level(demo_world, item["ONE"], "WH-TYO").on_hand
    ok(receive(demo_world, staff, ret, "WH-TYO", condition="to_vendor"))
    assert level(demo_world, item["ONE"], "WH-TYO").on_hand == before
    assert_problem(receive(demo_world, staff, ret, "WH-TYO"), 409, "already-received")


def test_store_staff_act_only_at_their_own_store(demo_world: DemoWorld) -> None:
    client = demo_world.client
    item = product(demo_world, {"ONE": {"JPY": "2600"}}, {"WH-TYO": 4})
    order = place(demo_world, [(item["ONE"], 1)])
    fulfil(demo_world, order)
    shibuya = staff_login(demo_world, "shibuya.associate")
    berlin = staff_login(demo_world, "berlin.manager")
    # Anyone with orders:write may open the return, wherever the order came from.
    ret = start_return(demo_world, berlin, order, [line(order, item["ONE"], 1, "changed_mind")])
    denied = assert_problem(
        receive(demo_world, berlin, ret, "ST-SHIBUYA"), 403, "location-forbidden"
    )
    assert denied["location_id"] == demo_world.location_id("ST-SHIBUYA")
    ok(receive(demo_world, shibuya, ret, "ST-SHIBUYA"))
    assert_problem(refund(demo_world, berlin, ret), 403, "location-forbidden")
    assert_problem(
        client.post(f"/v1/returns/{ret['id']}/close", headers=berlin, json={"reason": "no"}), 403
    )
    analyst = staff_login(demo_world, "analyst")
    assert ok(client.get(f"/v1/returns/{ret['id']}", headers=analyst))["status"] == "inspected"
    forbidden = assert_problem(refund(demo_world, analyst, ret), 403)
    assert forbidden["permission"] == "orders:write"
    assert_problem(
        client.post(
            "/v1/returns",
            headers=analyst,
            json={"order_number": order.number, "lines": [line(order, item["ONE"], 1, "other")]},
        ),
        403,
    )
    assert ok(refund(demo_world, shibuya, ret))["status"] == "refunded"


def test_transitions_follow_the_life_cycle(demo_world: DemoWorld) -> None:
    client, staff = demo_world.client, staff_login(demo_world)
    item = product(demo_world, {"ONE": {"JPY": "900"}}, {"WH-TYO": 4})
    order = place(demo_world, [(item["ONE"], 2)])
    fulfil(demo_world, order)
    ret = start_return(demo_world, staff, order, [line(order, item["ONE"], 1, "other")])
    assert_problem(
        client.post(f"/v1/returns/{ret['id']}/approve", headers=staff), 409, "illegal-transition"
    )
    assert_problem(refund(demo_world, staff, ret), 409, "illegal-transition")
    ok(receive(demo_world, staff, ret, "WH-TYO"))
    assert_problem(client.post(f"/v1/returns/{ret['id']}/cancel", headers=staff), 409)
    closed = ok(
        client.post(
            f"/v1/returns/{ret['id']}/close",
            headers=staff,
            json={"reason": "goodwill exchange in store"},
        )
    )
    assert closed["status"] == "closed" and closed["refunded_total"] == "0"
    assert_problem(refund(demo_world, staff, ret), 409, "already-settled")
    listed = ok(client.get(f"/v1/returns?order_id={order.id}&status=closed", headers=staff))
    assert [r["id"] for r in listed["items"]] == [ret["id"]]
    assert_problem(client.get("/v1/returns?colour=red", headers=staff), 422)
