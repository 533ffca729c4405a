"""The fraud check hook at checkout: review holds the order before fulfilment, deny
refuses it with nothing taken (stock, codes, gift cards)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any, Literal

import pytest

from mercato.checkout.fraud import AllowAll, FraudDecision, OrderScreening, set_fraud_check
from mercato.inventory import service as inventory
from tests.commerce.conftest import DemoWorld
from tests.commerce.helpers import TOKYO, add, card_token, new_cart, ok, ship_to
from tests.commerce.test_checkout_abandoned import _balance, _gift_card, _one_use_code
from tests.conftest import assert_problem
from tests.helpers import drain

pytestmark = pytest.mark.slow


class Screen:
    def __init__(self, action: Literal["allow", "review", "deny"]) -> None:
        self.action = action
        self.seen: list[OrderScreening] = []

    def screen(self, order: OrderScreening) -> FraudDecision:
        self.seen.append(order)
        return FraudDecision(self.action, 0.9, ("velocity",))


@pytest.fixture
def install() -> Iterator[Any]:
    def put(action: Literal["allow", "review", "deny"]) -> Screen:
        screen = Screen(action)
        set_fraud_check(screen)
        return screen

    try:
        yield put
    finally:
        set_fraud_check(AllowAll())


def _available(world: DemoWorld, variant_id: int) -> int:
    with world.database.read() as session:
        return inventory.availability(session, [variant_id], [world.location_id("WH-TYO")])[
            variant_id
        ]


def _checkout(world: DemoWorld, token: str, payments: list[dict[str, Any]]) -> Any:
    return world.client.post(
        f"/v1/store/carts/{token}/checkout",
        headers={**world.key("web-jp"), "Idempotency-Key": str(uuid.uuid4())},
        json={"payments": payments},
    )


def test_review_holds_the_order_until_staff_approve_it(demo_world: DemoWorld, install: Any) -> None:
    client, key, staff = demo_world.client, demo_world.key("web-jp"), demo_world.staff()
    item = demo_world.new_product({"WH-TYO": 3}, {"JP": {"JPY": "4000"}})
    token = new_cart(client, key)["token"]
    add(client, key, token, item, 2)
    cart = ship_to(client, key, token, TOKYO)
    screen = install("review")
    tender = {
        "method": "test_gateway",
        "amount": cart["grand_total"]["amount"],
        "token": card_token(client, key),
    }
    order = ok(_checkout(demo_world, token, [tender]), 201)
    assert order["status"] == "fraud_review"
    assert [(s.units, s.grand_total, s.ship_country) for s in screen.seen] == [
        (2, Decimal(cart["grand_total"]["amount"]), "JP")
    ]
    assert _available(demo_world, item) == 1  # paid and held for the order
    drain(demo_world)
    held = ok(client.get(f"/v1/orders/{order['id']}", headers=staff))
    assert held["status"] == "fraud_review"
    assert ok(client.get(f"/v1/orders/{order['id']}/routing", headers=staff))["items"] == []

    approved = ok(
        client.post(
            f"/v1/orders/{order['id']}/transitions",
            headers=staff,
            json={"to": "confirmed", "reason": "called the customer"},
        )
    )
    assert approved["status"] == "confirmed"
    drain(demo_world)
    assert ok(client.get(f"/v1/orders/{order['id']}/routing", headers=staff))["items"]
    assert ok(client.get(f"/v1/orders/{order['id']}", headers=staff))["status"] == "allocated"


def test_deny_refuses_the_order_and_takes_nothing(demo_world: DemoWorld, install: Any) -> None:
    client, key = demo_world.client, demo_world.key("web-jp")
    item = demo_world.new_product({"WH-TYO": 1}, {"JP": {"JPY": "3000"}})
    code = _one_use_code(demo_world)
    gift = _gift_card(demo_world, "500")
    token = new_cart(client, key)["token"]
    add(client, key, token, item, 1)
    ship_to(client, key, token, TOKYO)
    cart = ok(client.post(f"/v1/store/carts/{token}/codes", headers=key, json={"code": code}))
    total = Decimal(cart["grand_total"]["amount"])

    def tenders() -> list[dict[str, Any]]:
        return [
            {"method": "gift_card", "amount": "500", "gift_card_code": gift},
            {
                "method": "test_gateway",
                "amount": str(total - 500),
                "token": card_token(client, key),
            },
        ]

    install("deny")
    refused = assert_problem(_checkout(demo_world, token, tenders()), 403, "checkout-refused")
    assert refused["reasons"] == ["velocity"]
    assert _available(demo_world, item) == 1
    assert _balance(demo_world, gift) == 500
    again = ok(client.get(f"/v1/store/carts/{token}", headers=key))
    assert again["status"] == "open" and again["codes"][0]["applied"], again

    # Another shopper may use the one-use code: the refused order never reserved it.
    other = new_cart(client, key)["token"]
    add(client, key, other, demo_world.new_product({"WH-TYO": 1}, {"JP": {"JPY": "3000"}}), 1)
    ship_to(client, key, other, TOKYO)
    ok(client.post(f"/v1/store/carts/{other}/codes", headers=key, json={"code": code}))

    install("allow")
    placed = ok(_checkout(demo_world, token, tenders()), 201)
    assert placed["status"] == "confirmed" and placed["promotions"][0]["code"] == code
    assert _balance(demo_world, gift) == 0 and _available(demo_world, item) == 0
