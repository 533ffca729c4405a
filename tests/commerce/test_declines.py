"""A declined payment says why, and a declined checkout attempt is nobody's order."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.commerce.conftest import DemoWorld
from tests.commerce.helpers import TOKYO, add, card_token, new_cart, ok, pay, register, ship_to
from tests.conftest import assert_problem
from tests.demo_world import staff_login

Headers = dict[str, str]


def _ready_cart(world: DemoWorld, headers: Headers, price: str = "1200") -> tuple[str, str]:
    item = world.new_product({"WH-TYO": 10}, {"JP": {"JPY": price}})
    token = new_cart(world.client, headers)["token"]
    add(world.client, headers, token, item, 1)
    cart = ship_to(world.client, headers, token, TOKYO)
    return token, cart["grand_total"]["amount"]


def _checkout(world: DemoWorld, headers: Headers, token: str, tender: dict[str, Any]) -> Any:
    return world.client.post(
        f"/v1/store/carts/{token}/checkout",
        headers={**headers, "Idempotency-Key": str(uuid.uuid4())},
        json={"payments": [tender]},
    )


def test_a_declined_card_says_why(demo_world: DemoWorld) -> None:
    key = demo_world.key("web-jp")
    token, total = _ready_cart(demo_world, key)
    for card, code in (("declined", "card_declined"), ("no-funds", "insufficient_funds")):
        problem = assert_problem(
            pay(demo_world.client, key, token, total, card=card, idempotency_key=str(uuid.uuid4())),
            402,
            "payment-declined",
        )
        assert problem["provider_code"] == code
        (decline,) = problem["declines"]
        assert (decline["method"], decline["status"], decline["provider_code"]) == (
            "test_gateway",
            "declined",
            code,
        )
        assert decline["message"] and code in problem["detail"]


@pytest.mark.slow
def test_spending_more_points_than_one_has_says_so(demo_world: DemoWorld) -> None:
    key = demo_world.key("web-jp")
    email = f"points-{uuid.uuid4().hex[:8]}@example.com"
    shopper = {**key, **register(demo_world.client, key, email)}
    me = ok(demo_world.client.get("/v1/store/customers/me", headers=shopper))
    granted = demo_world.client.post(
        f"/v1/loyalty/accounts/{me['id']}/adjustments",
        headers=staff_login(demo_world),
        json={"points": 100, "reason": "welcome"},
    )
    assert granted.status_code == 201, granted.text
    token, total = _ready_cart(demo_world, shopper)
    problem = assert_problem(
        _checkout(demo_world, shopper, token, {"method": "loyalty_points", "amount": total}),
        402,
        "payment-declined",
    )
    assert problem["provider_code"] == "insufficient_points"
    assert problem["declines"][0]["method"] == "loyalty_points"


def test_a_failed_three_d_secure_says_why_on_complete(demo_world: DemoWorld) -> None:
    key = demo_world.key("web-jp")
    token, total = _ready_cart(demo_world, key)
    pending = pay(demo_world.client, key, token, total, card="3ds", idempotency_key="3ds-" + token)
    assert pending.status_code == 202, pending.text
    action = pending.json()["payments"][0]
    ok(
        demo_world.client.post(
            f"/v1/store/payments/{action['payment_id']}/complete-action",
            headers=key,
            json={"client_secret": action["client_secret"], "outcome": "failed"},
        )
    )
    number = pending.json()["number"]
    for _ in range(2):  # the first answer and its replay
        problem = assert_problem(
            demo_world.client.post(f"/v1/store/orders/{number}/complete", headers=key), 402
        )
        assert problem["provider_code"] == "authentication_failed"


@pytest.mark.slow
def test_declined_attempts_are_not_orders(demo_world: DemoWorld) -> None:
    client, key, staff = demo_world.client, demo_world.key("web-jp"), staff_login(demo_world)
    email = f"declined-{uuid.uuid4().hex[:8]}@example.com"
    shopper = {**key, **register(client, key, email)}
    customer_id = ok(client.get("/v1/store/customers/me", headers=shopper))["id"]
    token, total = _ready_cart(demo_world, shopper)
    attempts = []
    for card in ("declined", "no-funds"):
        tender = {"method": "test_gateway", "amount": total, "token": card_token(client, key, card)}
        again = {**shopper, "Idempotency-Key": str(uuid.uuid4())}
        url = f"/v1/store/carts/{token}/checkout"
        first = client.post(url, headers=again, json={"payments": [tender]})
        replay = client.post(url, headers=again, json={"payments": [tender]})
        assert first.status_code == replay.status_code == 402, first.text
        # A retried key still answers what its attempt became, reason included.
        assert replay.json()["provider_code"] == first.json()["provider_code"]
        attempts.append(first.json()["order_number"])
    paid = ok(pay(client, shopper, token, total, idempotency_key=str(uuid.uuid4())), 201)

    def listed(query: str) -> list[str]:
        page = ok(client.get(f"/v1/orders?{query}", headers=staff))
        return [o["number"] for o in page["items"]]

    assert listed(f"customer_id={customer_id}") == [paid["number"]]
    assert sorted(listed(f"customer_id={customer_id}&status=payment_failed")) == sorted(attempts)
    assert listed(f"number={attempts[0]}") == [attempts[0]]
    assert attempts[0] not in listed("limit=100")
    timeline = ok(client.get(f"/v1/customers/{customer_id}/timeline", headers=staff))["items"]
    shown = [e["data"].get("number") for e in timeline if e["kind"] == "order"]
    assert shown == [paid["number"]]
    overview = ok(client.get(f"/v1/support/customers/{customer_id}/overview", headers=staff))
    assert [o["number"] for o in overview["recent_orders"]] == [paid["number"]]
    # Nothing is lost: each attempt is still there, with its payments.
    failed = ok(client.get(f"/v1/orders/by-number/{attempts[0]}", headers=staff))
    assert failed["status"] == "payment_failed"
    mine = ok(client.get(f"/v1/payments?order_id={paid['id']}", headers=staff))["items"]
    assert [(p["status"], p["order_id"]) for p in mine] == [("authorized", paid["id"])]
    theirs = ok(client.get(f"/v1/payments?order_id={failed['id']}", headers=staff))["items"]
    assert [(p["status"], p["failure_code"]) for p in theirs] == [("declined", "card_declined")]


def test_payments_are_found_by_their_order_id(demo_world: DemoWorld) -> None:
    client, key, staff = demo_world.client, demo_world.key("web-jp"), staff_login(demo_world)
    token, total = _ready_cart(demo_world, key)
    tender = {"method": "test_gateway", "amount": total, "token": card_token(client, key)}
    order = ok(_checkout(demo_world, key, token, tender), 201)
    other_token, other_total = _ready_cart(demo_world, key)
    ok(pay(client, key, other_token, other_total, idempotency_key=str(uuid.uuid4())), 201)
    found = ok(client.get(f"/v1/payments?order_id={order['id']}", headers=staff))["items"]
    assert [p["reference"] for p in found] == [order["number"]]
    assert ok(client.get("/v1/payments?order_id=999999999", headers=staff))["items"] == []
