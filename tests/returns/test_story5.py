"""Story 5: an order bought online is returned in a store: the refund goes to the original
payment and the stock goes back into that store."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tests.commerce.conftest import DemoWorld
from tests.commerce.helpers import BERLIN, ok
from tests.conftest import assert_problem
from tests.returns.conftest import (
    events,
    fulfil,
    level,
    line,
    payments_of,
    place,
    product,
    receive,
    refund,
    ship_and_deliver,
    staff_login,
    start_return,
)

pytestmark = pytest.mark.slow


def _movements(
    world: DemoWorld, variant_id: int, location: str, number: str
) -> list[dict[str, Any]]:
    page = ok(
        world.client.get(
            f"/v1/inventory/movements?variant_id={variant_id}"
            f"&location_id={world.location_id(location)}&reference_id={number}",
            headers=staff_login(world),
        )
    )
    moves: list[dict[str, Any]] = page["items"]
    return sorted(moves, key=lambda m: int(m["id"]))


def test_web_order_returned_in_a_shibuya_store(demo_world: DemoWorld) -> None:
    client = demo_world.client
    sizes = product(demo_world, {"M": {"JPY": "4800"}, "L": {"JPY": "4800"}}, {"WH-TYO": 10})
    order = place(demo_world, [(sizes["M"], 2), (sizes["L"], 1)])
    assert order.body["status"] == "confirmed"
    shop_before = level(demo_world, sizes["M"], "ST-SHIBUYA").on_hand
    [task] = ship_and_deliver(demo_world, order)
    # Routed to the Tokyo warehouse, which shipped both lines: the units left its stock.
    assert task["location_id"] == demo_world.location_id("WH-TYO")
    assert task["status"] == "shipped"
    assert level(demo_world, sizes["M"], "WH-TYO").on_hand == 8
    assert level(demo_world, sizes["L"], "WH-TYO").on_hand == 9
    assert level(demo_world, sizes["M"], "WH-TYO").reserved == 0
    staff_view = ok(client.get(f"/v1/orders/{order.id}", headers=staff_login(demo_world)))
    assert staff_view["status"] == "delivered"
    card = payments_of(demo_world, order.number)[0]
    assert card["status"] == "captured" and card["method"] == "test_gateway"
    assert level(demo_world, sizes["M"], "ST-SHIBUYA").on_hand == shop_before
    warehouse_before = level(demo_world, sizes["M"], "WH-TYO").on_hand

    associate = staff_login(demo_world, "shibuya.associate")
    ret = start_return(demo_world, associate, order, [line(order, sizes["M"], 1, "changed_mind")])
    assert ret["status"] == "approved"  # the default policy approves at once
    assert [t["to_status"] for t in ret["timeline"]] == ["requested", "approved"]

    received = ok(receive(demo_world, associate, ret, "ST-SHIBUYA"))
    assert received["status"] == "inspected"
    assert received["location_id"] == demo_world.location_id("ST-SHIBUYA")
    paid_per_unit = Decimal(order.lines[0]["total"]) / 2
    assert Decimal(received["lines"][0]["paid"]) == paid_per_unit
    assert received["refund_total"] == str(paid_per_unit.quantize(Decimal(1)))

    # Stock came back into the store that took the return, not the warehouse that shipped.
    assert level(demo_world, sizes["M"], "ST-SHIBUYA").on_hand == shop_before + 1
    assert level(demo_world, sizes["M"], "WH-TYO").on_hand == warehouse_before
    moves = _movements(demo_world, sizes["M"], "ST-SHIBUYA", ret["number"])
    assert [(m["reason"], m["on_hand_delta"], m["reference_type"]) for m in moves] == [
        ("return", 1, "return")
    ]

    done = ok(refund(demo_world, associate, ret))
    assert done["status"] == "refunded" and done["refunded_total"] == received["refund_total"]
    card = payments_of(demo_world, order.number)[0]
    assert Decimal(card["refunded"]) == paid_per_unit
    assert card["status"] == "partially_refunded"
    staff_view = ok(client.get(f"/v1/orders/{order.id}", headers=staff_login(demo_world)))
    assert staff_view["lines"][0]["returned_quantity"] == 1
    timeline = [(t["from_status"], t["to_status"], t["actor_type"]) for t in done["timeline"]]
    assert timeline[-3:] == [
        ("approved", "received", "staff"),
        ("received", "inspected", "staff"),
        ("inspected", "refunded", "staff"),
    ]

    # The loyalty domain reverses points from this event.
    [refunded] = events(demo_world, "return.refunded", ret["id"])
    assert refunded["customer_id"] == order.body["customer_id"]
    assert refunded["currency"] == "JPY" and refunded["order_id"] == order.id
    assert [(x["variant_id"], x["quantity"], x["amount"]) for x in refunded["lines"]] == [
        (sizes["M"], 1, received["refund_total"])
    ]
    assert [e["status"] for e in events(demo_world, "return.received", ret["id"])] == ["received"]
    # A second refund of the same return is refused and moves no money.
    assert_problem(refund(demo_world, associate, ret), 409, "already-settled")
    assert Decimal(payments_of(demo_world, order.number)[0]["refunded"]) == paid_per_unit
    # The return is on her customer timeline, with the store's channel of origin.
    timeline = ok(
        client.get(
            f"/v1/customers/{order.body['customer_id']}/timeline",
            headers=staff_login(demo_world),
        )
    )["items"]
    (entry,) = [e for e in timeline if e["kind"] == "return"]
    assert entry["ref_id"] == str(ret["id"]) and "refunded" in entry["summary"]


def test_german_web_order_returned_in_the_berlin_store(demo_world: DemoWorld) -> None:
    hoodie = product(
        demo_world, {"S": {"EUR": "59.90"}}, {"WH-FRA": 5}, price_list="EU", category="hoodies"
    )
    order = place(demo_world, [(hoodie["S"], 1)], channel="web-de", address=BERLIN)
    ship_and_deliver(demo_world, order)
    assert level(demo_world, hoodie["S"], "WH-FRA").on_hand == 4
    manager = staff_login(demo_world, "berlin.manager")
    before = level(demo_world, hoodie["S"], "ST-BERLIN").on_hand
    ret = start_return(demo_world, manager, order, [line(order, hoodie["S"], 1, "size_fit")])
    ok(receive(demo_world, manager, ret, "ST-BERLIN"))
    done = ok(refund(demo_world, manager, ret))
    assert done["refunded_total"] == order.lines[0]["total"] == "59.90"
    assert level(demo_world, hoodie["S"], "ST-BERLIN").on_hand == before + 1
    card = payments_of(demo_world, order.number)[0]
    assert card["refunded"] == "59.90"
    # Returned for the customer's own reason: any shipping charge is kept.
    shipping_kept = Decimal(order.body["shipping_total"]) > 0
    assert card["status"] == ("partially_refunded" if shipping_kept else "refunded")
    assert done["shipping_refund"] == "0.00"


def test_a_store_of_another_channel_takes_a_marketplace_return(demo_world: DemoWorld) -> None:
    """Marketplace Japan sells from the Tokyo warehouse only; the Shibuya store (POS and
    web channels) still takes its returns and the units join the store's stock."""
    mug = product(demo_world, {"ONE": {"JPY": "1980"}}, {"WH-TYO": 5})
    order = place(demo_world, [(mug["ONE"], 1)], channel="marketplace-jp")
    fulfil(demo_world, order)
    associate = staff_login(demo_world, "shibuya.associate")
    before = level(demo_world, mug["ONE"], "ST-SHIBUYA").on_hand
    ret = start_return(demo_world, associate, order, [line(order, mug["ONE"], 1, "damaged")])
    ok(receive(demo_world, associate, ret, "ST-SHIBUYA", condition="damaged"))
    # Damaged: received (a return movement) and written off (a damage movement).
    moves = _movements(demo_world, mug["ONE"], "ST-SHIBUYA", ret["number"])
    assert [(m["reason"], m["on_hand_delta"]) for m in moves] == [("return", 1), ("damage", -1)]
    assert level(demo_world, mug["ONE"], "ST-SHIBUYA").on_hand == before
    done = ok(refund(demo_world, associate, ret))
    # The whole order came back for the merchant's fault: shipping is refunded too.
    assert Decimal(done["shipping_refund"]) > 0
    assert Decimal(done["refunded_total"]) == Decimal(order.body["grand_total"])
    assert payments_of(demo_world, order.number)[0]["status"] == "refunded"


def test_a_shopper_returns_a_web_order_from_the_app(demo_world: DemoWorld) -> None:
    client = demo_world.client
    tee = product(demo_world, {"M": {"JPY": "2900"}}, {"WH-TYO": 5})
    order = place(demo_world, [(tee["M"], 1)])
    fulfil(demo_world, order)
    app = {**demo_world.key("app"), **order.customer}
    body = {"order_number": order.number, "lines": [line(order, tee["M"], 1, "not_as_described")]}
    ret = ok(client.post("/v1/store/returns", headers=app, json=body), 201)
    assert ret["origin_channel_id"] != ret["channel_id"] == order.body["channel_id"]
    mine = ok(client.get("/v1/store/returns", headers=app))
    assert [r["number"] for r in mine["items"]] == [ret["number"]]
    assert ok(client.get(f"/v1/store/returns/{ret['number']}", headers=app))["id"] == ret["id"]
    # Another customer sees neither the order nor the return.
    stranger = place(demo_world, [(tee["M"], 1)]).customer
    other = {**demo_world.key("app"), **stranger}
    assert_problem(client.post("/v1/store/returns", headers=other, json=body), 404)
    assert_problem(client.get(f"/v1/store/returns/{ret['number']}", headers=other), 404)
    assert_problem(client.post("/v1/store/returns", headers=demo_world.key("app"), json=body), 401)
    cancelled = ok(client.post(f"/v1/store/returns/{ret['number']}/cancel", headers=app))
    assert cancelled["status"] == "cancelled"
    # The units promised to the cancelled return can be returned again.
    again = ok(client.post("/v1/store/returns", headers=app, json=body), 201)
    assert again["status"] == "approved"
