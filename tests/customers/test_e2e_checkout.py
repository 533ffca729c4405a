"""End to end on the demo business: a real checkout feeds the unified profile."""

from __future__ import annotations

from typing import Any

import pytest

from tests.commerce.conftest import DemoWorld
from tests.commerce.helpers import BERLIN, add, new_cart, ok, pay, register, ship_to
from tests.helpers import drain

pytestmark = pytest.mark.slow


def test_a_checkout_shows_up_in_the_profile_and_the_timeline(
    demo_world: DemoWorld,
) -> None:
    world = demo_world
    key = {**world.key("web-de"), **register(world.client, world.key("web-de"), "c360@example.com")}
    variant = world.new_product({"WH-FRA": 5}, {"EU": {"EUR": "20.00"}})
    token = new_cart(world.client, key)["token"]
    add(world.client, key, token, variant, 2)
    total = ship_to(world.client, key, token, BERLIN)["grand_total"]["amount"]
    order = pay(world.client, key, token, total)
    assert order.status_code == 201, order.text
    drain(world)

    staff = world.staff()
    me = ok(world.client.get("/v1/store/customers/me", headers=key))
    profile = ok(world.client.get(f"/v1/customers/{me['id']}/profile", headers=staff))
    figures = profile["figures"]
    assert figures["order_count"] == 1
    assert figures["lifetime_value"] == [
        {"currency": "EUR", "order_count": 1, "lifetime_value": total, "average_order_value": total}
    ]
    assert figures["favourite_channel_id"] == order.json()["channel_id"]
    assert figures["segment"] == "new"
    timeline = world.client.get(f"/v1/customers/{me['id']}/timeline", headers=staff)
    entries: list[dict[str, Any]] = timeline.json()["items"]
    assert [e["kind"] for e in entries][:2] == ["order", "cart"]
    assert entries[0]["ref_id"] == str(order.json()["id"])
