"""A shopper holds a cart's stock for a while: all or nothing, released on change, on
expiry and at checkout (where it becomes the order's hold without a gap)."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select

from mercato.carts import service as carts
from mercato.carts.models import Cart
from mercato.channels import service as channels
from mercato.db import utcnow
from mercato.inventory import service as inventory
from mercato.inventory.models import Reservation
from tests.commerce.helpers import TOKYO, add, new_cart, ok, pay, register, ship_to
from tests.demo_world import DemoWorld


def _free(world: DemoWorld, variant_id: int) -> int:
    with world.database.read() as session:
        return inventory.availability(session, [variant_id], [world.location_id("WH-TYO")])[
            variant_id
        ]


def _active(world: DemoWorld, token: str) -> list[tuple[int, int]]:
    with world.database.read() as session:
        cart_id = session.scalar(select(Cart.id).where(Cart.token == token))
        rows = inventory.active_reservations_for(session, "cart", str(cart_id))
        return [(r.variant_id, r.quantity) for r in rows]


@pytest.mark.slow
def test_a_hold_takes_the_units_until_checkout_turns_it_into_the_orders(
    demo_world: DemoWorld,
) -> None:
    client, key = demo_world.client, demo_world.key("web-jp")
    item = demo_world.new_product({"WH-TYO": 3}, {"JP": {"JPY": "2000"}})
    token = new_cart(client, key)["token"]
    add(client, key, token, item, 1)
    add(client, key, token, item, 1, delivery_mode="ship")  # same line grows: 2 units

    held = ok(client.post(f"/v1/store/carts/{token}/hold", headers=key, json={}))
    assert held["held_until"] is not None
    assert [(h["variant_id"], h["quantity"]) for h in held["holds"]] == [(item, 2)]
    assert _free(demo_world, item) == 1
    assert ok(client.get(f"/v1/store/carts/{token}", headers=key))["held_until"] is not None

    # Another shopper can have the last unit, not two.
    rival = new_cart(client, key)["token"]
    add(client, key, rival, item, 2)
    refused = client.post(f"/v1/store/carts/{rival}/hold", headers=key, json={})
    assert refused.status_code == 409, refused.text
    assert refused.json()["code"] == "insufficient-stock"
    assert _active(demo_world, rival) == []
    assert _free(demo_world, item) == 1

    # The held cart's own view does not count its hold against itself.
    cart = ship_to(client, key, token, TOKYO)
    assert cart["lines"][0]["issues"] == []
    assert cart["can_checkout"] is True

    order = ok(pay(client, key, token, cart["grand_total"]["amount"]), 201)
    assert order["status"] in {"confirmed", "allocated"}
    assert _active(demo_world, token) == []
    assert _free(demo_world, item) == 1  # two units on the order, the hold gone
    assert ok(client.get(f"/v1/store/carts/{token}/hold", headers=key)) == {
        "token": token,
        "held_until": None,
        "holds": [],
    }


def test_changing_lines_lets_the_hold_go_and_holding_again_matches_them(
    demo_world: DemoWorld,
) -> None:
    client, key = demo_world.client, demo_world.key("web-jp")
    item = demo_world.new_product({"WH-TYO": 5}, {"JP": {"JPY": "900"}})
    token = new_cart(client, key)["token"]
    line = add(client, key, token, item, 2)["lines"][0]["id"]
    ok(client.post(f"/v1/store/carts/{token}/hold", headers=key, json={"ttl_seconds": 120}))
    assert _free(demo_world, item) == 3

    cart = ok(
        client.patch(f"/v1/store/carts/{token}/lines/{line}", headers=key, json={"quantity": 4})
    )
    assert cart["held_until"] is None
    assert _active(demo_world, token) == []
    assert _free(demo_world, item) == 5

    ok(client.post(f"/v1/store/carts/{token}/hold", headers=key, json={}))
    ok(client.post(f"/v1/store/carts/{token}/hold", headers=key, json={}))  # replaces, not adds
    assert _active(demo_world, token) == [(item, 4)]
    assert _free(demo_world, item) == 1

    released = ok(client.delete(f"/v1/store/carts/{token}/hold", headers=key))
    assert released["holds"] == [] and released["held_until"] is None
    assert _free(demo_world, item) == 5


def test_an_expired_hold_gives_the_units_back_by_itself(demo_world: DemoWorld) -> None:
    client, key = demo_world.client, demo_world.key("web-jp")
    item = demo_world.new_product({"WH-TYO": 2}, {"JP": {"JPY": "700"}})
    token = new_cart(client, key)["token"]
    add(client, key, token, item, 2)
    ok(client.post(f"/v1/store/carts/{token}/hold", headers=key, json={"ttl_seconds": 60}))
    assert _free(demo_world, item) == 0
    with demo_world.database.transaction() as session:
        assert inventory.expire_holds(session, now=utcnow() + timedelta(seconds=61)) >= 1
    assert _free(demo_world, item) == 2
    assert ok(client.get(f"/v1/store/carts/{token}", headers=key))["held_until"] is None
    assert ok(client.get(f"/v1/store/carts/{token}/hold", headers=key))["holds"] == []


def test_bad_holds_are_refused_and_change_nothing(demo_world: DemoWorld) -> None:
    client, key = demo_world.client, demo_world.key("web-jp")
    empty = new_cart(client, key)["token"]
    r = client.post(f"/v1/store/carts/{empty}/hold", headers=key, json={})
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == "lines"

    item = demo_world.new_product({"WH-TYO": 2}, {"JP": {"JPY": "700"}})
    token = new_cart(client, key)["token"]
    add(client, key, token, item, 1)
    for body in ({"ttl_seconds": 5}, {"ttl_seconds": 7200}, {"minutes": 3}):
        r = client.post(f"/v1/store/carts/{token}/hold", headers=key, json=body)
        assert r.status_code == 422, r.text
    assert _free(demo_world, item) == 2

    owner = register(client, key, f"hold-{uuid.uuid4().hex[:6]}@example.jp")
    theirs = new_cart(client, {**key, **owner})["token"]
    add(client, {**key, **owner}, theirs, item, 1)
    r = client.post(f"/v1/store/carts/{theirs}/hold", headers=key, json={})
    assert r.status_code in (401, 403), r.text
    assert _free(demo_world, item) == 2
    assert client.post("/v1/store/carts/crt-nope/hold", headers=key, json={}).status_code == 404


def test_a_retried_hold_with_its_key_holds_once(demo_world: DemoWorld) -> None:
    client, key = demo_world.client, demo_world.key("web-jp")
    item = demo_world.new_product({"WH-TYO": 4}, {"JP": {"JPY": "700"}})
    token = new_cart(client, key)["token"]
    add(client, key, token, item, 3)
    headers = {**key, "Idempotency-Key": f"hold-{uuid.uuid4()}"}
    first = ok(client.post(f"/v1/store/carts/{token}/hold", headers=headers, json={}))
    again = client.post(f"/v1/store/carts/{token}/hold", headers=headers, json={})
    assert again.status_code == 200 and again.headers.get("Idempotent-Replayed") == "true"
    assert again.json() == first
    assert _free(demo_world, item) == 1
    with demo_world.database.read() as session:
        movements = inventory.verify(session)[1]
    assert movements == []


@pytest.mark.slow
def test_concurrent_holds_never_hold_more_than_there_is(demo_world: DemoWorld) -> None:
    """Twelve carts race for five units, one unit each, from twelve threads."""
    client, key = demo_world.client, demo_world.key("web-jp")
    item = demo_world.new_product({"WH-TYO": 5}, {"JP": {"JPY": "700"}})
    tokens = []
    for _ in range(12):
        token = new_cart(client, key)["token"]
        add(client, key, token, item, 1)
        tokens.append(token)
    with demo_world.database.read() as session:
        channel = channels.context_for_key(session, key["X-Channel-Key"])
    outcomes: list[str] = []
    lock = threading.Lock()

    def shopper(token: str) -> None:
        try:
            with demo_world.database.transaction() as session:
                cart = session.scalar(select(Cart).where(Cart.token == token))
                assert cart is not None
                carts.hold_stock(session, cart, channel, timedelta(minutes=5))
            outcome = "held"
        except inventory.InsufficientStock:
            outcome = "refused"
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=shopper, args=(t,)) for t in tokens]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["held"] * 5 + ["refused"] * 7
    assert _free(demo_world, item) == 0
    with demo_world.database.read() as session:
        assert inventory.verify(session)[1] == []
        held = session.scalars(
            select(Reservation.quantity).where(
                Reservation.variant_id == item, Reservation.status == "held"
            )
        ).all()
    assert sum(held) == 5


def test_a_hold_is_capped_per_line_and_needs_an_open_cart(demo_world: DemoWorld) -> None:
    client, key = demo_world.client, demo_world.key("web-jp")
    item = demo_world.new_product({"WH-TYO": 40}, {"JP": {"JPY": "500"}})
    token = new_cart(client, key)["token"]
    add(client, key, token, item, carts.MAX_HELD_UNITS_PER_LINE + 1)
    r = client.post(f"/v1/store/carts/{token}/hold", headers=key, json={})
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == "lines[0].quantity"
    assert _free(demo_world, item) == 40

    bought = new_cart(client, key)["token"]
    add(client, key, bought, item, 1)
    cart = ship_to(client, key, bought, TOKYO)
    ok(pay(client, key, bought, cart["grand_total"]["amount"]), 201)
    for method in ("post", "delete"):
        r = client.request(method.upper(), f"/v1/store/carts/{bought}/hold", headers=key, json={})
        assert r.status_code == 409, r.text
        assert r.json()["code"] == "cart-closed"
    assert _free(demo_world, item) == 39


def test_two_holds_of_one_cart_at_once_hold_its_units_once(demo_world: DemoWorld) -> None:
    client, key = demo_world.client, demo_world.key("web-jp")
    item = demo_world.new_product({"WH-TYO": 9}, {"JP": {"JPY": "500"}})
    token = new_cart(client, key)["token"]
    add(client, key, token, item, 3)
    with demo_world.database.read() as session:
        channel = channels.context_for_key(session, key["X-Channel-Key"])
    barrier = threading.Barrier(4)
    failures: list[BaseException] = []

    def hold_again() -> None:
        barrier.wait()
        try:
            with demo_world.database.transaction() as session:
                cart = session.scalar(select(Cart).where(Cart.token == token))
                assert cart is not None
                carts.hold_stock(session, cart, channel, timedelta(minutes=5))
        except BaseException as exc:  # collected: the thread must not swallow it
            failures.append(exc)

    threads = [threading.Thread(target=hold_again) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert _active(demo_world, token) == [(item, 3)]
    assert _free(demo_world, item) == 6
