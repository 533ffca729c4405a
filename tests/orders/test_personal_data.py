"""Orders show personal data (email, addresses, notes, reasons typed by staff) only to
roles with customers:pii: an analyst reads the same orders without them."""

from __future__ import annotations

import uuid

import pytest

from tests.commerce.conftest import DemoWorld
from tests.commerce.helpers import TOKYO, add, new_cart, ok, pay, ship_to

pytestmark = pytest.mark.slow


def _login(world: DemoWorld, who: str) -> dict[str, str]:
    body = ok(
        world.client.post(
            "/v1/auth/login",
            json={"email": f"{who}@mercato.example", "password": world.credentials.staff_password},
        )
    )
    return {"Authorization": f"Bearer {body['token']}"}


def test_analysts_read_orders_without_personal_data(demo_world: DemoWorld) -> None:
    client, web, staff = demo_world.client, demo_world.key("web-jp"), demo_world.staff()
    item = demo_world.new_product({"WH-TYO": 10}, {"JP": {"JPY": "2000"}})
    email = f"pii-{uuid.uuid4().hex[:8]}@example.jp"
    token = new_cart(client, web)["token"]
    add(client, web, token, item, 1)
    address = {**TOKYO, "phone": "+81 90 1234 5678"}
    cart = ship_to(client, web, token, address, email)
    order = ok(pay(client, web, token, cart["grand_total"]["amount"], idempotency_key=token), 201)
    ok(
        client.post(
            f"/v1/orders/{order['id']}/notes",
            headers=staff,
            json={"body": "Aiko Tanaka called from +81 90 1234 5678"},
        ),
        201,
    )
    ok(
        client.post(
            f"/v1/orders/{order['id']}/cancel",
            headers=staff,
            json={"reason": "Aiko Tanaka asked to cancel"},
        )
    )
    analyst, agent = _login(demo_world, "analyst"), _login(demo_world, "support")

    for path in (f"/v1/orders/{order['id']}", f"/v1/orders/by-number/{order['number']}"):
        seen = ok(client.get(path, headers=analyst))
        assert seen["email"] is None
        assert seen["shipping_address"] == {"country": "JP"}
        assert seen["billing_address"] in (None, {"country": "JP"})
        assert seen["grand_total"] == order["grand_total"]
        assert [t["reason"] for t in seen["timeline"] if t["actor_type"] == "staff"] == [None]
        assert "Tanaka" not in str(seen) and "1234" not in str(seen)

        full = ok(client.get(path, headers=agent))
        assert full["email"] == email
        assert full["shipping_address"]["name"] == "Aiko Tanaka"
        assert full["shipping_address"]["phone"] == "+819012345678"
        assert "Aiko Tanaka asked to cancel" in [t["reason"] for t in full["timeline"]]

    notes = ok(client.get(f"/v1/orders/{order['id']}/notes", headers=analyst))["items"]
    assert [n["body"] for n in notes] == [None]
    assert notes[0]["author_type"] == "staff"
    notes = ok(client.get(f"/v1/orders/{order['id']}/notes", headers=agent))["items"]
    assert [n["body"] for n in notes] == ["Aiko Tanaka called from +81 90 1234 5678"]
    found = ok(client.get("/v1/orders", headers=analyst, params={"number": order["number"]}))
    assert [o["id"] for o in found["items"]] == [order["id"]]
    assert "email" not in found["items"][0] and "Tanaka" not in str(found)
