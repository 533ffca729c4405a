"""The order list as the back office uses it: found by the buyer's email or phone (guest
orders by their keyed hash, and the orders of the profile holding it) and by payment
state; store staff read only their stores' orders; the call centre's quote is what the
order then costs, and keeps nothing."""

from __future__ import annotations

import random
import uuid
from decimal import Decimal
from typing import Any

import pytest

from mercato.channels import service as channels
from mercato.flows import staff_orders
from tests.commerce.conftest import DemoWorld
from tests.commerce.helpers import BERLIN, add, card_token, new_cart, ok
from tests.demo_world import SYSTEM, staff_login
from tests.helpers import drain

pytestmark = pytest.mark.slow


def _order(world: DemoWorld, variant: int, email: str, phone: str | None) -> dict[str, Any]:
    client, key = world.client, world.key("web-de")
    token = new_cart(client, key)["token"]
    add(client, key, token, variant, 1)
    patch: dict[str, Any] = {"email": email, "shipping_address": BERLIN}
    if phone:
        patch["billing_address"] = {**BERLIN, "name": "Billing", "phone": phone}
    cart = ok(client.patch(f"/v1/store/carts/{token}", headers=key, json=patch))
    option = {"shipping_option_id": cart["shipping_options"][0]["option_id"]}
    cart = ok(client.patch(f"/v1/store/carts/{token}", headers=key, json=option))
    tender = {
        "method": "test_gateway",
        "amount": cart["grand_total"]["amount"],
        "token": card_token(client, key),
    }
    order = ok(
        client.post(
            f"/v1/store/carts/{token}/checkout",
            headers={**key, "Idempotency-Key": str(uuid.uuid4())},
            json={"payments": [tender]},
        ),
        201,
    )
    drain(world)
    return order


def _ids(world: DemoWorld, who: str = "owner", **params: Any) -> set[int]:
    page = ok(world.client.get("/v1/orders", headers=staff_login(world, who), params=params))
    return {o["id"] for o in page["items"]}


def test_orders_are_found_by_email_phone_and_payment_state(demo_world: DemoWorld) -> None:
    item = demo_world.new_product({"WH-FRA": 5}, {"EU": {"EUR": "12.00"}})
    email = f"finder-{uuid.uuid4().hex[:8]}@example.de"
    phone = f"+4930{random.randint(1_000_000, 9_999_999)}"
    with_phone = _order(demo_world, item, email, phone)
    without = _order(demo_world, item, email.upper(), None)
    assert _ids(demo_world, email=email) == {with_phone["id"], without["id"]}
    assert _ids(demo_world, phone=phone) == {with_phone["id"]}
    # Written as the caller says it: spaces and all.
    assert _ids(demo_world, phone=phone[:3] + " " + phone[3:]) == {with_phone["id"]}
    assert _ids(demo_world, phone="+4930000") == set()
    authorised = _ids(demo_world, email=email, payment_status="authorized")
    assert authorised == {with_phone["id"], without["id"]}
    assert _ids(demo_world, email=email, payment_status="captured") == set()


def test_store_staff_read_only_their_stores_orders(demo_world: DemoWorld) -> None:
    in_store = demo_world.new_product({"ST-BERLIN": 2}, {"EU": {"EUR": "14.00"}})
    warehouse = demo_world.new_product({"WH-FRA": 2}, {"EU": {"EUR": "15.00"}})
    email = f"scope-{uuid.uuid4().hex[:8]}@example.de"
    berlin = _order(demo_world, in_store, email, None)
    frankfurt = _order(demo_world, warehouse, email, None)
    assert _ids(demo_world, "berlin.manager", email=email) == {berlin["id"]}
    assert _ids(demo_world, "owner", email=email) == {berlin["id"], frankfurt["id"]}
    manager = staff_login(demo_world, "berlin.manager")
    client = demo_world.client
    assert client.get(f"/v1/orders/{berlin['id']}", headers=manager).status_code == 200
    for path in ("", "/notes", "/routing"):
        assert client.get(f"/v1/orders/{frankfurt['id']}{path}", headers=manager).status_code == 404
    assert (
        client.get(f"/v1/orders/by-number/{frankfurt['number']}", headers=manager).status_code
        == 404
    )


def test_a_hold_shows_on_the_order(demo_world: DemoWorld) -> None:
    item = demo_world.new_product({"WH-FRA": 2}, {"EU": {"EUR": "16.00"}})
    order = _order(demo_world, item, f"hold-{uuid.uuid4().hex[:6]}@example.de", None)
    owner = staff_login(demo_world)
    held = ok(
        demo_world.client.post(
            f"/v1/orders/{order['id']}/hold", headers=owner, json={"reason": "check"}
        )
    )
    assert held["on_hold"] is True
    assert order["id"] in _ids(demo_world, on_hold="true", limit=200)
    released = ok(demo_world.client.post(f"/v1/orders/{order['id']}/release", headers=owner))
    assert released["on_hold"] is False


def test_the_call_centre_quote_is_the_orders_total_and_keeps_nothing(
    demo_world: DemoWorld,
) -> None:
    item = demo_world.new_product({"WH-FRA": 4}, {"GLOBAL": {"EUR": "30.00"}})
    with demo_world.database.read() as session:
        centre = channels.channel_by_code(session, "call-centre")
        assert centre is not None
        centre_id = centre.id
    phone = f"+4930{random.randint(1_000_000, 9_999_999)}"
    body: dict[str, Any] = {
        "channel_id": centre_id,
        "currency": "EUR",
        "identities": [{"type": "phone", "value": phone}],
        "customer_name": "Jonas Becker",
        "lines": [{"variant_id": item, "quantity": 2}],
        "shipping_address": {**BERLIN, "phone": phone},
        "payments": [{"method": "cash_on_delivery", "amount": "1"}],
    }
    owner = staff_login(demo_world)
    quote = staff_orders.quote_staff_order(
        demo_world.database, SYSTEM, staff_orders.StaffOrderIn.model_validate(body)
    )
    assert quote.currency == "EUR" and quote.issues == []
    assert quote.grand_total >= Decimal("60.00")
    # Nothing kept: no profile for the phone yet, no stock held.
    assert _ids(demo_world, phone=phone) == set()
    body["payments"] = [{"method": "cash_on_delivery", "amount": str(quote.grand_total)}]
    created = demo_world.client.post(
        "/v1/orders", headers={**owner, "Idempotency-Key": str(uuid.uuid4())}, json=body
    )
    assert created.status_code == 201, created.text
    assert Decimal(created.json()["grand_total"]) == quote.grand_total
    assert _ids(demo_world, phone=phone) == {created.json()["id"]}
