"""Story 2: out of stock online, in stock nearby — pick up in a store today, or have the
store ship it; the order is routed there, the store sees the task, stock is held."""

from __future__ import annotations

import uuid

import pytest

from mercato.auth import service as auth_service
from mercato.auth.permissions import Role
from mercato.auth.principal import Principal
from mercato.inventory import service as inventory
from mercato.shipping import service as shipping
from tests.commerce.conftest import DemoWorld
from tests.commerce.helpers import BERLIN, add, card_token, new_cart, ok, ship_to
from tests.conftest import assert_problem
from tests.helpers import all_items, drain

pytestmark = pytest.mark.slow

POTSDAM = (52.39, 13.06)


def _associate(world: DemoWorld, store: str) -> dict[str, str]:
    email = f"assoc-{uuid.uuid4().hex[:6]}@example.com"
    with world.database.transaction() as session:
        auth_service.create_user(
            session,
            Principal.system("tests"),
            email=email,
            name=email,
            password="a long password",
            role=Role.STORE_ASSOCIATE,
            location_ids=[world.location_id(store)],
        )
    body = ok(
        world.client.post("/v1/auth/login", json={"email": email, "password": "a long password"})
    )
    return {"Authorization": f"Bearer {body['token']}"}


def _level(world: DemoWorld, variant: int, code: str) -> inventory.LevelSnapshot:
    with world.database.read() as session:
        return inventory.get_level(session, variant, world.location_id(code))


def _pay(world: DemoWorld, key: dict[str, str], token: str, total: str) -> dict:
    return ok(
        world.client.post(
            f"/v1/store/carts/{token}/checkout",
            headers={**key, "Idempotency-Key": str(uuid.uuid4())},
            json={
                "email": "lena@example.de",
                "payments": [
                    {
                        "method": "test_gateway",
                        "amount": total,
                        "token": card_token(world.client, key),
                    }
                ],
            },
        ),
        201,
    )


def test_click_and_collect_in_the_nearest_store(demo_world: DemoWorld) -> None:
    client, key = demo_world.client, demo_world.key("web-de")
    item = demo_world.new_product({"ST-BERLIN": 2, "ST-MUNICH": 5}, {"EU": {"EUR": "89.00"}})
    token = new_cart(client, key)["token"]
    cart = add(client, key, token, item, 1)
    line = cart["lines"][0]
    options = ok(
        client.get(
            f"/v1/store/carts/{token}/delivery-options?latitude={POTSDAM[0]}"
            f"&longitude={POTSDAM[1]}",
            headers=key,
        )
    )
    stores = options["lines"][0]["pickup_stores"]
    assert [s["code"] for s in stores][:2] == ["ST-BERLIN", "ST-MUNICH"]  # nearest first
    assert stores[0]["distance_km"] < 40 and options["lines"][0]["ship_from_store"]
    berlin = demo_world.location_id("ST-BERLIN")
    cart = ok(
        client.patch(
            f"/v1/store/carts/{token}/lines/{line['id']}",
            headers=key,
            json={"delivery_mode": "pickup", "pickup_location_id": berlin},
        )
    )
    assert cart["can_checkout"] is False  # a guest still needs an email
    cart = ok(
        client.patch(f"/v1/store/carts/{token}", headers=key, json={"email": "lena@example.de"})
    )
    assert cart["can_checkout"], cart  # no shipping address needed for a pickup
    order = _pay(demo_world, key, token, cart["grand_total"]["amount"])
    assert _level(demo_world, item, "ST-BERLIN").reserved == 1  # held for her
    drain(demo_world)
    staff = demo_world.staff()
    routed = ok(client.get(f"/v1/orders/{order['id']}", headers=staff))
    assert routed["status"] == "allocated"
    decision = ok(client.get(f"/v1/orders/{order['id']}/routing", headers=staff))["items"][0]
    assert "ST-BERLIN" in decision["explanation"]
    # The Berlin store sees the pick task; Munich does not.
    associate = _associate(demo_world, "ST-BERLIN")
    tasks = all_items(client, "/v1/fulfillment/orders?kind=pickup", associate)
    task = next(t for t in tasks if t["order_id"] == order["id"])
    assert task["location_id"] == berlin and task["lines"][0]["quantity"] == 1
    munich = _associate(demo_world, "ST-MUNICH")
    assert all(
        t["order_id"] != order["id"]
        for t in all_items(client, "/v1/fulfillment/orders", munich)
    )
    assert_problem(client.post(f"/v1/fulfillment/orders/{task['id']}/ready", headers=munich), 403)
    ready = ok(client.post(f"/v1/fulfillment/orders/{task['id']}/ready", headers=associate))
    code = ready["pickup_code"]
    assert ready["status"] == "ready_for_pickup" and len(code) == 6
    wrong = "000000" if code != "000000" else "111111"
    assert_problem(
        client.post(
            f"/v1/fulfillment/orders/{task['id']}/handover", headers=associate, json={"code": wrong}
        ),
        403,
        "pickup-code-mismatch",
    )
    assert _level(demo_world, item, "ST-BERLIN").on_hand == 2
    done = ok(
        client.post(
            f"/v1/fulfillment/orders/{task['id']}/handover", headers=associate, json={"code": code}
        )
    )
    assert done["status"] == "picked_up"
    level = _level(demo_world, item, "ST-BERLIN")
    assert (level.on_hand, level.reserved) == (1, 0)  # sold in the store, through the ledger
    final = ok(client.get(f"/v1/orders/{order['id']}", headers=staff))
    assert final["status"] == "picked_up"
    payments = ok(client.get(f"/v1/payments?reference={final['number']}", headers=staff))
    assert payments["items"][0]["status"] == "captured"


def test_ship_from_store_when_the_warehouse_is_empty(demo_world: DemoWorld) -> None:
    client, key = demo_world.client, demo_world.key("web-de")
    item = demo_world.new_product({"ST-BERLIN": 3}, {"EU": {"EUR": "49.00"}})
    token = new_cart(client, key)["token"]
    add(client, key, token, item, 2)
    cart = ship_to(client, key, token, BERLIN, "lena@example.de")
    order = _pay(demo_world, key, token, cart["grand_total"]["amount"])
    drain(demo_world)
    staff = demo_world.staff()
    associate = _associate(demo_world, "ST-BERLIN")
    task = next(
        t
        for t in all_items(client, "/v1/fulfillment/orders?kind=ship", associate)
        if t["order_id"] == order["id"]
    )
    ok(
        client.post(
            f"/v1/fulfillment/orders/{task['id']}/pack",
            headers=associate,
            json={"packages": [{"weight_g": 900}]},
        )
    )
    shipped = ok(
        client.post(f"/v1/fulfillment/orders/{task['id']}/ship", headers=associate, json={})
    )
    assert shipped["status"] == "shipped" and shipped["shipments"][0]["tracking_number"]
    assert _level(demo_world, item, "ST-BERLIN").on_hand == 1
    assert ok(client.get(f"/v1/orders/{order['id']}", headers=staff))["status"] == "fulfilled"
    number = shipped["shipments"][0]["tracking_number"]
    with demo_world.database.transaction() as session:
        from datetime import UTC, datetime

        shipping.record_tracking_event(
            session, number, "delivered", datetime.now(UTC), description="delivered to the door"
        )
    drain(demo_world)
    assert ok(client.get(f"/v1/orders/{order['id']}", headers=staff))["status"] == "delivered"


def test_a_store_that_rejects_a_line_hands_it_to_another(demo_world: DemoWorld) -> None:
    client, key = demo_world.client, demo_world.key("web-de")
    item = demo_world.new_product({"ST-BERLIN": 1, "ST-MUNICH": 1}, {"EU": {"EUR": "19.00"}})
    token = new_cart(client, key)["token"]
    add(client, key, token, item, 1)
    cart = ship_to(client, key, token, BERLIN, "lena@example.de")
    order = _pay(demo_world, key, token, cart["grand_total"]["amount"])
    drain(demo_world)
    berlin = _associate(demo_world, "ST-BERLIN")
    task = next(
        t
        for t in all_items(client, "/v1/fulfillment/orders", berlin)
        if t["order_id"] == order["id"]
    )
    ok(
        client.post(
            f"/v1/fulfillment/orders/{task['id']}/reject",
            headers=berlin,
            json={
                "order_line_ids": [task["lines"][0]["order_line_id"]],
                "reason": "damaged in the store",
            },
        )
    )
    staff = demo_world.staff()
    decisions = ok(client.get(f"/v1/orders/{order['id']}/routing", headers=staff))["items"]
    assert decisions[-1]["trigger"] == "reroute"
    assert demo_world.location_id("ST-BERLIN") in decisions[-1]["excluded_location_ids"]
    munich = _associate(demo_world, "ST-MUNICH")
    assert any(
        t["order_id"] == order["id"]
        for t in all_items(client, "/v1/fulfillment/orders", munich)
    )
    assert _level(demo_world, item, "ST-BERLIN").reserved == 0
    assert _level(demo_world, item, "ST-MUNICH").reserved == 1
    assert ok(client.get(f"/v1/orders/{order['id']}", headers=staff))["status"] == "allocated"
