"""One order system: cancellation (whole or per line), holds, notes, staff-taken and
imported orders, pickup expiry — each with its stock and money consequences."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import update

from mercato.db import utcnow
from mercato.flows import cancellation
from mercato.fulfillment.models import FulfillmentOrder
from mercato.inventory import service as inventory
from tests.commerce.conftest import DemoWorld
from tests.commerce.helpers import BERLIN, TOKYO, add, card_token, new_cart, ok, ship_to
from tests.commerce.test_story2_store_fulfilment import _associate, _level, _pay
from tests.conftest import assert_problem
from tests.helpers import all_items, drain

pytestmark = pytest.mark.slow


def _order(
    world: DemoWorld,
    stock: dict[str, int],
    lines: list[tuple[int, int]],
    key: str = "web-de",
    address: dict | None = None,
) -> dict:
    client, channel_key = world.client, world.key(key)
    token = new_cart(client, channel_key)["token"]
    for variant, qty in lines:
        add(client, channel_key, token, variant, qty)
    cart = ship_to(client, channel_key, token, address or BERLIN, "ops@example.de")
    return _pay(world, channel_key, token, cart["grand_total"]["amount"])


def test_cancel_a_whole_order(demo_world: DemoWorld) -> None:
    item = demo_world.new_product({"WH-FRA": 4}, {"EU": {"EUR": "30.00"}})
    order = _order(demo_world, {}, [(item, 2)])
    drain(demo_world)
    staff = demo_world.staff()
    assert _level(demo_world, item, "WH-FRA").reserved == 2
    result = ok(
        demo_world.client.post(
            f"/v1/orders/{order['id']}/cancel", headers=staff, json={"reason": "customer called"}
        )
    )
    assert result["order"]["status"] == "cancelled"
    assert _level(demo_world, item, "WH-FRA").reserved == 0
    payments = ok(
        demo_world.client.get(f"/v1/payments?reference={order['number']}", headers=staff)
    )["items"]
    assert payments[0]["status"] == "voided"
    assert_problem(
        demo_world.client.post(
            f"/v1/orders/{order['id']}/cancel", headers=staff, json={"reason": "again"}
        ),
        409,
    )
    fra = demo_world.location_id("WH-FRA")
    tasks = all_items(demo_world.client, f"/v1/fulfillment/orders?location_id={fra}", staff)
    assert all(t["status"] == "cancelled" for t in tasks if t["order_id"] == order["id"])


def test_cancel_one_line_then_capture_only_what_ships(demo_world: DemoWorld) -> None:
    keep = demo_world.new_product({"WH-FRA": 5}, {"EU": {"EUR": "40.00"}})
    drop = demo_world.new_product({"WH-FRA": 5}, {"EU": {"EUR": "25.00"}})
    order = _order(demo_world, {}, [(keep, 1), (drop, 2)])
    drain(demo_world)
    staff = demo_world.staff()
    full = ok(demo_world.client.get(f"/v1/orders/{order['id']}", headers=staff))
    line = next(x for x in full["lines"] if x["variant_id"] == drop)
    over = demo_world.client.post(
        f"/v1/orders/{order['id']}/lines/cancel",
        headers=staff,
        json={"lines": [{"order_line_id": line["id"], "quantity": 3}], "reason": "too many"},
    )
    assert_problem(over, 409, "cancel-exceeds-open")
    result = ok(
        demo_world.client.post(
            f"/v1/orders/{order['id']}/lines/cancel",
            headers=staff,
            json={
                "lines": [{"order_line_id": line["id"], "quantity": 2}],
                "reason": "out of stock",
            },
        )
    )
    assert Decimal(result["refund_due"]) == Decimal("50.00")
    assert result["order"]["status"] == "allocated"
    assert _level(demo_world, drop, "WH-FRA").reserved == 0
    # The warehouse ships what is left; only its value (and shipping) is captured.
    fra = demo_world.location_id("WH-FRA")
    task = next(
        t
        for t in all_items(demo_world.client, f"/v1/fulfillment/orders?location_id={fra}", staff)
        if t["order_id"] == order["id"] and t["status"] != "cancelled"
    )
    assert [x["variant_id"] for x in task["lines"] if x["status"] == "open"] == [keep]
    ok(demo_world.client.post(f"/v1/fulfillment/orders/{task['id']}/ship", headers=staff, json={}))
    shipped = ok(demo_world.client.get(f"/v1/orders/{order['id']}", headers=staff))
    assert shipped["status"] == "fulfilled"
    keep_line = next(x for x in shipped["lines"] if x["variant_id"] == keep)
    expected = Decimal(keep_line["total"]) + Decimal(shipped["shipping_total"])
    payment = ok(demo_world.client.get(f"/v1/payments?reference={order['number']}", headers=staff))[
        "items"
    ][0]
    assert Decimal(payment["captured"]) == expected


def test_a_hold_stops_fulfilment_until_released(demo_world: DemoWorld) -> None:
    item = demo_world.new_product({"WH-FRA": 3}, {"EU": {"EUR": "12.00"}})
    order = _order(demo_world, {}, [(item, 1)])
    drain(demo_world)
    staff, client = demo_world.staff(), demo_world.client
    ok(
        client.post(
            f"/v1/orders/{order['id']}/hold", headers=staff, json={"reason": "address looks wrong"}
        )
    )
    ok(
        client.post(
            f"/v1/orders/{order['id']}/notes",
            headers=staff,
            json={"body": "Called the customer, waiting for a reply"},
        ),
        201,
    )
    fra = demo_world.location_id("WH-FRA")
    task = next(
        t
        for t in all_items(client, f"/v1/fulfillment/orders?location_id={fra}", staff)
        if t["order_id"] == order["id"]
    )
    assert_problem(
        client.post(f"/v1/fulfillment/orders/{task['id']}/ship", headers=staff, json={}),
        409,
        "order-on-hold",
    )
    ok(client.post(f"/v1/orders/{order['id']}/release", headers=staff))
    ok(client.post(f"/v1/fulfillment/orders/{task['id']}/ship", headers=staff, json={}))
    notes = ok(client.get(f"/v1/orders/{order['id']}/notes", headers=staff))["items"]
    assert notes[0]["body"].startswith("Called") and notes[0]["author_type"] == "staff"


def test_call_centre_order_for_a_customer_is_idempotent(demo_world: DemoWorld) -> None:
    client, staff = demo_world.client, demo_world.staff()
    item = demo_world.new_product({"WH-TYO": 5}, {"GLOBAL": {"EUR": "20.00", "JPY": "3200"}})
    with demo_world.database.read() as session:
        from mercato.channels import service as channels

        centre = channels.channel_by_code(session, "call-centre")
        assert centre is not None
        centre_id = centre.id
    body = {
        "channel_id": centre_id,
        "email": "phone@example.jp",
        "currency": "JPY",
        "lines": [{"variant_id": item, "quantity": 2}],
        "shipping_address": TOKYO,
        "payments": [{"method": "cash_on_delivery", "amount": "0"}],
    }
    # A tender of 0 is refused before anything is created.
    probe = client.post(
        "/v1/orders", headers={**staff, "Idempotency-Key": str(uuid.uuid4())}, json=body
    )
    assert assert_problem(probe, 422)["errors"][0]["field"] == "body.payments[0].amount"
    assert _level(demo_world, item, "WH-TYO").reserved == 0
    # The amount must match the total: the call centre quotes it from a cart first.
    cart_key = demo_world.key("call-centre")
    token = new_cart(demo_world.client, cart_key, currency="JPY")["token"]
    add(demo_world.client, cart_key, token, item, 2)
    quoted = ship_to(demo_world.client, cart_key, token, TOKYO)
    total = Decimal(quoted["grand_total"]["amount"])
    body["payments"] = [{"method": "cash_on_delivery", "amount": str(total)}]
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = client.post("/v1/orders", headers={**staff, **key}, json=body)
    again = client.post("/v1/orders", headers={**staff, **key}, json=body)
    assert first.status_code == again.status_code == 201, first.text
    assert first.json()["number"] == again.json()["number"]
    assert first.json()["source"] == "staff"
    assert _level(demo_world, item, "WH-TYO").reserved == 2


def test_imported_marketplace_order_is_idempotent_and_routed(demo_world: DemoWorld) -> None:
    client, staff = demo_world.client, demo_world.staff()
    item = demo_world.new_product({"WH-TYO": 4}, {"JP": {"JPY": "1000"}})
    with demo_world.database.read() as session:
        from mercato.catalog import service as catalog
        from mercato.channels import service as channels

        sku = catalog.variant_infos(session, [item])[item].sku
        market = channels.channel_by_code(session, "marketplace-jp")
        assert market is not None
        market_id = market.id
    external = f"MKT-{uuid.uuid4().hex[:8]}"
    body = {
        "channel_id": market_id,
        "external_id": external,
        "currency": "JPY",
        "lines": [{"sku": sku, "quantity": 2, "unit_price": "980", "tax": "145"}],
        "shipping_total": "500",
        "shipping_address": TOKYO,
        "email": "buyer@example.jp",
    }
    created = client.post("/v1/orders/import", headers=staff, json=body)
    assert created.status_code == 201, created.text
    order = created.json()
    assert (order["status"], order["grand_total"], order["source"]) == (
        "confirmed",
        "2460",
        "import",
    )
    again = client.post("/v1/orders/import", headers=staff, json=body)
    assert again.status_code == 200 and again.json()["id"] == order["id"]
    bad = dict(
        body, external_id=f"{external}-2", lines=[{"sku": "NOPE", "quantity": 1, "unit_price": "1"}]
    )
    problem = assert_problem(client.post("/v1/orders/import", headers=staff, json=bad), 422)
    assert problem["errors"][0]["field"] == "body.lines[0].sku"
    drain(demo_world)
    assert ok(client.get(f"/v1/orders/{order['id']}", headers=staff))["status"] == "allocated"
    assert _level(demo_world, item, "WH-TYO").reserved == 2
    payment = ok(client.get(f"/v1/payments?reference={order['number']}", headers=staff))["items"][0]
    assert (payment["method"], payment["status"]) == ("paid_elsewhere", "captured")


def test_an_uncollected_pickup_expires(demo_world: DemoWorld) -> None:
    client, key = demo_world.client, demo_world.key("web-de")
    item = demo_world.new_product({"ST-BERLIN": 2}, {"EU": {"EUR": "15.00"}})
    berlin = demo_world.location_id("ST-BERLIN")
    token = new_cart(client, key)["token"]
    add(client, key, token, item, 1, delivery_mode="pickup", pickup_location_id=berlin)
    cart = ok(
        client.patch(f"/v1/store/carts/{token}", headers=key, json={"email": "late@example.de"})
    )
    order = ok(
        client.post(
            f"/v1/store/carts/{token}/checkout",
            headers={**key, "Idempotency-Key": str(uuid.uuid4())},
            json={
                "payments": [
                    {
                        "method": "test_gateway",
                        "amount": cart["grand_total"]["amount"],
                        "token": card_token(client, key),
                    }
                ]
            },
        ),
        201,
    )
    drain(demo_world)
    associate = _associate(demo_world, "ST-BERLIN")
    task = next(
        t
        for t in all_items(client, "/v1/fulfillment/orders?kind=pickup", associate)
        if t["order_id"] == order["id"]
    )
    ok(client.post(f"/v1/fulfillment/orders/{task['id']}/ready", headers=associate))
    with demo_world.database.transaction() as session:
        session.execute(
            update(FulfillmentOrder)
            .where(FulfillmentOrder.id == task["id"])
            .values(expires_at=utcnow() - timedelta(minutes=1))
        )
    assert cancellation.expire_pickups(demo_world.database) == 1
    staff = demo_world.staff()
    assert ok(client.get(f"/v1/orders/{order['id']}", headers=staff))["status"] == "cancelled"
    level = _level(demo_world, item, "ST-BERLIN")
    assert (level.on_hand, level.reserved) == (2, 0)
    with demo_world.database.read() as session:
        _, mismatches = inventory.verify(session)
    assert not mismatches
