"""Checkout: idempotent, all or nothing, no transaction across the payment call."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from mercato.inventory import service as inventory
from mercato.orders.models import Order
from mercato.payments.models import Payment
from tests.commerce.conftest import DemoWorld
from tests.commerce.helpers import TOKYO, add, card_token, new_cart, ok, pay, register, ship_to
from tests.conftest import assert_problem


def _available(world: DemoWorld, variant_id: int) -> int:
    with world.database.read() as session:
        return inventory.availability(session, [variant_id], [world.location_id("WH-TYO")])[
            variant_id
        ]


def _count(world: DemoWorld, model: type, **where: object) -> int:
    with world.database.read() as session:
        query = select(func.count()).select_from(model)
        for name, value in where.items():
            query = query.where(getattr(model, name) == value)
        return int(session.scalar(query) or 0)


def _ready_cart(world: DemoWorld, variant_id: int, quantity: int = 1) -> tuple[str, str]:
    key = world.key("web-jp")
    token = new_cart(world.client, key)["token"]
    add(world.client, key, token, variant_id, quantity)
    cart = ship_to(world.client, key, token, TOKYO)
    assert cart["can_checkout"], cart
    return token, cart["grand_total"]["amount"]


def test_a_retried_checkout_returns_the_same_order_and_charges_once(demo_world: DemoWorld) -> None:
    key = demo_world.key("web-jp")
    item = demo_world.new_product({"WH-TYO": 10}, {"JP": {"JPY": "1200"}})
    token, total = _ready_cart(demo_world, item, 2)
    tender = {
        "method": "test_gateway",
        "amount": total,
        "token": card_token(demo_world.client, key),
    }
    headers = {**key, "Idempotency-Key": f"retry-{uuid.uuid4()}"}
    first = demo_world.client.post(
        f"/v1/store/carts/{token}/checkout", headers=headers, json={"payments": [tender]}
    )
    second = demo_world.client.post(
        f"/v1/store/carts/{token}/checkout", headers=headers, json={"payments": [tender]}
    )
    assert first.status_code == second.status_code == 201, first.text
    assert first.json() == second.json()
    number = first.json()["number"]
    assert _count(demo_world, Payment, reference=number) == 1
    with demo_world.database.read() as session:
        cart_id = session.scalar(select(Order.cart_id).where(Order.number == number))
        orders_for_cart = session.scalars(
            select(Order.number).where(Order.cart_id == cart_id)
        ).all()
    assert orders_for_cart == [number]
    assert _available(demo_world, item) == 8
    # The same key with another body is a client bug, not a second order.
    other = demo_world.client.post(
        f"/v1/store/carts/{token}/checkout",
        headers=headers,
        json={"payments": [{**tender, "amount": "1"}]},
    )
    assert_problem(other, 422, "idempotency-key-reused")
    # A completed cart cannot be checked out again with a new key either.
    again = pay(demo_world.client, key, token, total, idempotency_key=str(uuid.uuid4()))
    assert again.status_code == 409


def test_declined_payment_releases_everything(demo_world: DemoWorld) -> None:
    key = demo_world.key("web-jp")
    item = demo_world.new_product({"WH-TYO": 3}, {"JP": {"JPY": "5000"}})
    token, total = _ready_cart(demo_world, item, 3)
    declined = pay(
        demo_world.client, key, token, total, card="declined", idempotency_key=str(uuid.uuid4())
    )
    problem = assert_problem(declined, 402, "payment-declined")
    assert _available(demo_world, item) == 3  # holds released at once
    cart = ok(demo_world.client.get(f"/v1/store/carts/{token}", headers=key))
    assert cart["status"] == "open" and cart["can_checkout"]
    with demo_world.database.read() as session:
        failed = session.scalar(select(Order.status).where(Order.number == problem["order_number"]))
    assert failed == "payment_failed"
    paid = ok(pay(demo_world.client, key, token, total, idempotency_key=str(uuid.uuid4())), 201)
    assert paid["status"] == "confirmed" and _available(demo_world, item) == 0


def test_three_d_secure_then_complete(demo_world: DemoWorld) -> None:
    key = demo_world.key("web-jp")
    item = demo_world.new_product({"WH-TYO": 4}, {"JP": {"JPY": "2000"}})
    token, total = _ready_cart(demo_world, item)
    pending = pay(
        demo_world.client, key, token, total, card="3ds", idempotency_key=str(uuid.uuid4())
    )
    assert pending.status_code == 202, pending.text
    body = pending.json()
    assert body["status"] == "pending_payment"
    action = body["payments"][0]
    assert action["status"] == "requires_action"
    assert _available(demo_world, item) == 3  # held while the shopper authenticates
    done = demo_world.client.post(
        f"/v1/store/payments/{action['payment_id']}/complete-action",
        headers=key,
        json={"client_secret": action["client_secret"]},
    )
    assert done.status_code == 200, done.text
    placed = ok(
        demo_world.client.post(f"/v1/store/orders/{body['number']}/complete", headers=key), 201
    )
    assert placed["status"] == "confirmed"
    again = ok(
        demo_world.client.post(f"/v1/store/orders/{body['number']}/complete", headers=key), 201
    )
    assert again["number"] == placed["number"]


def test_bad_input_changes_nothing(demo_world: DemoWorld) -> None:
    client, key = demo_world.client, demo_world.key("web-jp")
    item = demo_world.new_product({"WH-TYO": 5}, {"JP": {"JPY": "990"}})
    assert_problem(client.post("/v1/store/carts", json={"currency": "XYZ"}, headers=key), 422)
    assert_problem(client.post("/v1/store/carts", json={"currency": "EUR"}, headers=key), 422)
    token = new_cart(client, key)["token"]
    for quantity in (0, 10**9, -1):
        problem = assert_problem(
            client.post(
                f"/v1/store/carts/{token}/lines",
                headers=key,
                json={"variant_id": item, "quantity": quantity},
            ),
            422,
        )
        assert problem["errors"][0]["field"] == "body.quantity"
    assert_problem(
        client.post(
            f"/v1/store/carts/{token}/lines", headers=key, json={"variant_id": 10**8, "quantity": 1}
        ),
        422,
    )
    add(client, key, token, item, 2)
    cart = ship_to(client, key, token, TOKYO)
    wrong = Decimal(cart["grand_total"]["amount"]) - 1
    problem = assert_problem(
        pay(client, key, token, str(wrong), idempotency_key=str(uuid.uuid4())), 422
    )
    assert problem["errors"][0]["field"].startswith("body.payments")
    assert _available(demo_world, item) == 5
    assert ok(client.get(f"/v1/store/carts/{token}", headers=key))["status"] == "open"
    too_precise = assert_problem(
        pay(client, key, token, f"{wrong + 1}.5", idempotency_key=str(uuid.uuid4())), 422
    )
    assert too_precise["status"] == 422


@pytest.mark.slow
def test_a_cart_of_another_customer_is_refused(demo_world: DemoWorld) -> None:
    client, key = demo_world.client, demo_world.key("web-jp")
    owner = register(client, key, f"owner-{uuid.uuid4().hex[:6]}@example.com")
    intruder = register(client, key, f"other-{uuid.uuid4().hex[:6]}@example.com")
    token = new_cart(client, {**key, **owner})["token"]
    assert_problem(
        client.get(f"/v1/store/carts/{token}", headers={**key, **intruder}),
        403,
        "cart-of-another-customer",
    )
    assert_problem(client.get(f"/v1/store/carts/{token}", headers=key), 403)
    assert ok(client.get(f"/v1/store/carts/{token}", headers={**key, **owner}))["token"] == token
    assert_problem(client.get("/v1/store/carts/crt_nonexistent", headers=key), 404)
