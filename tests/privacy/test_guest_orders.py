"""A person who bought as a guest, then registered: her guest orders are hers in an export
and an erasure, and join her profile (figures, timeline) once her email is verified; a
guest order placed with an email already verified for a profile joins it at once."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from mercato.carts.models import Cart
from mercato.crypto import EncryptedJSON, EncryptedString
from mercato.orders.models import Order
from tests.commerce.conftest import DemoWorld
from tests.commerce.helpers import TOKYO, add, new_cart, ok, pay, register, ship_to
from tests.helpers import drain

pytestmark = pytest.mark.slow


def _guest_order(world: DemoWorld, email: str, item: int) -> dict[str, Any]:
    client, web = world.client, world.key("web-jp")
    token = new_cart(client, web)["token"]
    add(client, web, token, item, 1)
    cart = ship_to(client, web, token, TOKYO, email)
    return dict(
        ok(
            pay(client, web, token, cart["grand_total"]["amount"], idempotency_key=token),
            201,
        )
    )


def _decrypted_copies(world: DemoWorld, email: str) -> list[str]:
    found = []
    with world.database.read() as session:
        for model in (Order, Cart):
            table = model.__table__
            for column in table.columns:
                if not isinstance(column.type, EncryptedString | EncryptedJSON):
                    continue
                for value in session.scalars(select(column).where(column.is_not(None))):
                    if email in str(value).lower():
                        found.append(f"{table.name}.{column.name}")
                        break
    return found


def test_guest_orders_are_exported_and_erased_with_the_person(demo_world: DemoWorld) -> None:
    client, staff = demo_world.client, demo_world.staff()
    item = demo_world.new_product({"WH-TYO": 10}, {"JP": {"JPY": "2000"}})
    email = f"guest-{uuid.uuid4().hex[:8]}@example.jp"
    guest = _guest_order(demo_world, email, item)
    # Someone else's guest order stays out of her answer.
    other = _guest_order(demo_world, f"other-{uuid.uuid4().hex[:8]}@example.jp", item)
    headers = {**demo_world.key("web-jp"), **register(client, demo_world.key("web-jp"), email)}
    me = ok(client.get("/v1/store/customers/me", headers=headers))
    drain(demo_world)

    document = ok(client.post(f"/v1/customers/{me['id']}/privacy/export", headers=staff, json={}))
    assert [o["number"] for o in document["data"]["orders"]] == [guest["number"]]
    assert document["data"]["orders"][0]["email"] == email
    assert [c["order_id"] for c in document["data"]["carts"]] == [guest["id"]]
    # Registering proves nothing about the email: her own download holds only what is
    # attached to her profile, never another person's guest orders under her address.
    mine = ok(client.post("/v1/store/customers/me/data-export", headers=headers))
    assert mine["data"]["orders"] == []

    # The order is not shipped yet: cancelled first, or the erasure would wait for it.
    ok(
        client.post(
            f"/v1/orders/{guest['id']}/cancel", headers=staff, json={"reason": "before erasure"}
        )
    )
    erased = ok(
        client.post(
            f"/v1/customers/{me['id']}/privacy/erase",
            headers=staff,
            json={"reason": "GDPR art. 17", "confirm_customer_id": me["id"]},
        ),
        201,
    )
    assert erased["summary"]["orders"] == 1
    drain(demo_world)
    assert _decrypted_copies(demo_world, email) == []
    with demo_world.database.read() as session:
        kept = session.get(Order, guest["id"])
        untouched = session.get(Order, other["id"])
        assert kept is not None and untouched is not None
        assert kept.email is None and kept.email_index is None
        assert kept.grand_total > 0 and kept.customer_id is None
        assert untouched.email is not None and untouched.email.startswith("other-")


def test_guest_orders_join_the_profile_once_the_email_is_verified(
    demo_world: DemoWorld,
) -> None:
    client, staff = demo_world.client, demo_world.staff()
    item = demo_world.new_product({"WH-TYO": 10}, {"JP": {"JPY": "2000"}})
    email = f"later-{uuid.uuid4().hex[:8]}@example.jp"
    first = _guest_order(demo_world, email, item)
    headers = {**demo_world.key("web-jp"), **register(client, demo_world.key("web-jp"), email)}
    customer_id = ok(client.get("/v1/store/customers/me", headers=headers))["id"]
    drain(demo_world)
    profile = ok(client.get(f"/v1/customers/{customer_id}/profile", headers=staff))
    assert profile["figures"]["order_count"] == 0
    assert ok(client.get(f"/v1/orders/{first['id']}", headers=staff))["customer_id"] is None

    # Staff confirm the email (she answered from it): her guest order joins her profile.
    ok(
        client.post(
            f"/v1/customers/{customer_id}/identities",
            headers=staff,
            json={"type": "email", "value": email, "verified": True},
        ),
        201,
    )
    drain(demo_world)
    assert ok(client.get(f"/v1/orders/{first['id']}", headers=staff))["customer_id"] == customer_id
    profile = ok(client.get(f"/v1/customers/{customer_id}/profile", headers=staff))
    assert profile["figures"]["order_count"] == 1
    assert Decimal(profile["figures"]["lifetime_value"][0]["lifetime_value"]) == Decimal(
        first["grand_total"]
    )
    timeline = ok(client.get(f"/v1/customers/{customer_id}/timeline", headers=staff))["items"]
    assert first["number"] in {e["data"].get("number") for e in timeline if e["kind"] == "order"}
    with demo_world.database.read() as session:
        cart = session.scalar(select(Cart).where(Cart.order_id == first["id"]))
        assert cart is not None and cart.customer_id == customer_id

    # A later guest order with the verified email joins at once; her own download has both.
    second = _guest_order(demo_world, email.upper(), item)
    drain(demo_world)
    assert ok(client.get(f"/v1/orders/{second['id']}", headers=staff))["customer_id"] == (
        customer_id
    )
    profile = ok(client.get(f"/v1/customers/{customer_id}/profile", headers=staff))
    assert profile["figures"]["order_count"] == 2
    mine = ok(client.post("/v1/store/customers/me/data-export", headers=headers))
    assert sorted(o["number"] for o in mine["data"]["orders"]) == sorted(
        [first["number"], second["number"]]
    )
    # Redelivered events count nothing twice.
    drain(demo_world)
    assert (
        ok(client.get(f"/v1/customers/{customer_id}/profile", headers=staff))["figures"][
            "order_count"
        ]
        == 2
    )


def test_a_gift_shipped_to_someone_with_her_phone_stays_the_buyers(
    demo_world: DemoWorld,
) -> None:
    """The phone on a shipping address is the recipient's: it never makes a guest order
    hers, nor puts the buyer's email in her data."""
    client, staff, web = demo_world.client, demo_world.staff(), demo_world.key("web-jp")
    item = demo_world.new_product({"WH-TYO": 10}, {"JP": {"JPY": "2000"}})
    tag = uuid.uuid4().hex[:8]
    alice_phone = f"+8170{int(tag, 16) % 90000000 + 10000000}"
    alice = {**web, **register(client, web, f"alice-{tag}@example.jp")}
    alice_id = ok(client.get("/v1/store/customers/me", headers=alice))["id"]
    ok(
        client.post(
            f"/v1/customers/{alice_id}/identities",
            headers=staff,
            json={"type": "phone", "value": alice_phone, "verified": True},
        ),
        201,
    )
    bob_email = f"bob-{tag}@example.jp"
    token = new_cart(client, web)["token"]
    add(client, web, token, item, 1)
    cart = ship_to(client, web, token, {**TOKYO, "phone": alice_phone}, bob_email)
    gift = ok(pay(client, web, token, cart["grand_total"]["amount"], idempotency_key=token), 201)
    drain(demo_world)

    assert ok(client.get(f"/v1/orders/{gift['id']}", headers=staff))["customer_id"] is None
    mine = ok(client.post("/v1/store/customers/me/data-export", headers=alice))
    assert mine["data"]["orders"] == []
    assert bob_email not in str(mine)
    document = ok(client.post(f"/v1/customers/{alice_id}/privacy/export", headers=staff, json={}))
    assert bob_email not in str(document)
