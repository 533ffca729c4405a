"""An erasure waits for what the person's contract still needs: an order not yet
delivered, collected or cancelled ships to her name and address, a return in progress is
sent back and refunded to her. Asking then is a 409 that lists each of them and changes
nothing; once they are finished the same request erases her."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import select

from mercato.auth.models import AuditEntry
from mercato.events import OutboxEvent
from mercato.privacy.models import PrivacyRequest
from tests.commerce.conftest import DemoWorld
from tests.commerce.helpers import TOKYO, add, new_cart, ok, pay, register, ship_to
from tests.conftest import assert_problem
from tests.returns.conftest import (
    Placed,
    line,
    place,
    product,
    ship_and_deliver,
    staff_login,
    start_return,
)

pytestmark = pytest.mark.slow


def _erase(world: DemoWorld, customer_id: int) -> Any:
    return world.client.post(
        f"/v1/customers/{customer_id}/privacy/erase",
        headers=staff_login(world),
        json={"reason": "GDPR art. 17 request", "confirm_customer_id": customer_id},
    )


def _guest_order(world: DemoWorld, variant: int, email: str, address: dict[str, Any]) -> Any:
    client, web = world.client, world.key("web-jp")
    token = new_cart(client, web)["token"]
    add(client, web, token, variant, 1)
    cart = ship_to(client, web, token, address, email)
    return ok(pay(client, web, token, cart["grand_total"]["amount"], idempotency_key=token), 201)


def _snapshot(world: DemoWorld, customer_id: int, order_ids: list[int]) -> dict[str, Any]:
    """What an erasure would change, read through the API and the tables it writes."""
    client, staff = world.client, staff_login(world)
    with world.database.read() as session:
        erasures = session.scalars(
            select(PrivacyRequest.id).where(PrivacyRequest.customer_id == customer_id)
        ).all()
        audited = session.scalars(
            select(AuditEntry.id).where(
                AuditEntry.action == "privacy.erase",
                AuditEntry.entity_id == str(customer_id),
            )
        ).all()
        announced = [
            e.id
            for e in session.scalars(
                select(OutboxEvent).where(OutboxEvent.type == "customer.erased")
            )
            if e.data["customer_id"] == customer_id
        ]
    return {
        "customer": ok(client.get(f"/v1/customers/{customer_id}", headers=staff)),
        "orders": [ok(client.get(f"/v1/orders/{i}", headers=staff)) for i in order_ids],
        "requests": list(erasures),
        "audit": list(audited),
        "events": announced,
    }


def test_erasure_waits_for_undelivered_orders_and_returns_in_progress(
    demo_world: DemoWorld,
) -> None:
    client, staff = demo_world.client, staff_login(demo_world)
    tag = uuid.uuid4().hex[:8]
    email = f"blocked-{tag}@example.jp"
    address = {**TOKYO, "name": f"Mei Ishikawa{tag}", "phone": "+81 90 5555 0101"}
    sizes = product(demo_world, {"M": {"JPY": "4000"}}, {"WH-TYO": 20})
    me = register(client, demo_world.key("web-jp"), email)
    mine = {**demo_world.key("web-jp"), **me}
    customer_id = ok(client.get("/v1/store/customers/me", headers=mine))["id"]

    # Delivered, then partly returned: the return is in progress.
    delivered = place(demo_world, [(sizes["M"], 2)], address=address, customer=me)
    ship_and_deliver(demo_world, delivered)
    returned = start_return(
        demo_world, staff, delivered, [line(delivered, sizes["M"], 1, "size_fit")]
    )
    # Paid, routed, not shipped yet.
    waiting: Placed = place(demo_world, [(sizes["M"], 1)], address=address, customer=me)
    # Placed as a guest with her email: hers too.
    guest = _guest_order(demo_world, sizes["M"], email, address)
    orders = [delivered.id, waiting.id, guest["id"]]
    before = _snapshot(demo_world, customer_id, orders)

    problem = assert_problem(_erase(demo_world, customer_id), 409, "erasure-blocked")
    blocking = {(b["kind"], b["number"]): b for b in problem["blocking"]}
    assert set(blocking) == {
        ("order", waiting.number),
        ("order", guest["number"]),
        ("return", returned["number"]),
    }
    assert blocking[("order", waiting.number)]["id"] == waiting.id
    assert blocking[("return", returned["number"])]["status"] == returned["status"]
    for number in (waiting.number, guest["number"], returned["number"]):
        assert number in problem["detail"]
    # Nothing changed: her profile, her addresses on every order, no request logged.
    assert _snapshot(demo_world, customer_id, orders) == before
    assert before["orders"][1]["shipping_address"]["name"] == address["name"]
    assert before["requests"] == before["audit"] == before["events"] == []

    # The return is settled (here: cancelled), one order cancelled: the guest order still
    # waits, and it alone is listed.
    ok(client.post(f"/v1/returns/{returned['id']}/cancel", headers=staff, json={}))
    ok(client.post(f"/v1/orders/{waiting.id}/cancel", headers=staff, json={"reason": "asked"}))
    problem = assert_problem(_erase(demo_world, customer_id), 409, "erasure-blocked")
    assert [(b["kind"], b["number"]) for b in problem["blocking"]] == [
        ("order", guest["number"])
    ]

    ok(client.post(f"/v1/orders/{guest['id']}/cancel", headers=staff, json={"reason": "asked"}))
    erased = ok(_erase(demo_world, customer_id), 201)
    assert erased["summary"]["orders"] == 3
    for order_id in orders:
        kept = ok(client.get(f"/v1/orders/{order_id}", headers=staff))
        assert kept["shipping_address"]["name"] == erased["reference"]
