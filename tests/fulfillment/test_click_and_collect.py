"""Click & collect: the customer gets the pickup code, uncollected orders expire by the
clock, and an order that is partly collected and partly shipped completes in either order."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from mercato.db import utcnow
from mercato.flows import cancellation
from mercato.fulfillment import pickup
from mercato.fulfillment import service as fulfillment
from mercato.marketing.models import Message
from tests.commerce.conftest import DemoWorld
from tests.commerce.helpers import BERLIN, ok, register
from tests.fulfillment.conftest import (
    drain,
    item,
    level,
    order_of,
    place,
    staff,
    tasks,
    track,
)

pytestmark = pytest.mark.slow


def _pickup_order(
    world: DemoWorld, *, ship_too: bool = False, customer: bool = True
) -> tuple[dict[str, Any], dict[str, int]]:
    berlin = world.location_id("ST-BERLIN")
    collect = item(world, {"ST-BERLIN": 2}, {"EU": {"EUR": "39.00"}})
    lines: list[dict[str, Any]] = [
        {
            "variant_id": collect,
            "quantity": 1,
            "delivery_mode": "pickup",
            "pickup_location_id": berlin,
        }
    ]
    variants = {"collect": collect}
    if ship_too:
        parcel = item(world, {"WH-FRA": 2}, {"EU": {"EUR": "25.00"}})
        lines.append({"variant_id": parcel, "quantity": 1})
        variants["parcel"] = parcel
    email = f"collect-{uuid.uuid4().hex[:8]}@example.com"
    headers = register(world.client, world.key("web-de"), email) if customer else None
    order = place(
        world,
        "web-de",
        lines,
        address=BERLIN if ship_too else None,
        email=email,
        customer=headers,
    )
    return order, variants


def _messages(world: DemoWorld, task_id: int) -> list[Message]:
    with world.database.read() as session:
        found = session.scalars(
            select(Message).where(
                Message.reference_type == "fulfillment_order",
                Message.reference_id == str(task_id),
            )
        ).all()
        for m in found:
            session.expunge(m)
        return list(found)


def test_the_customer_is_sent_the_pickup_code(demo_world: DemoWorld) -> None:
    order, _ = _pickup_order(demo_world)
    [task] = tasks(demo_world, order["id"], "pickup")
    associate = staff(demo_world, "berlin.manager")
    ready = ok(
        demo_world.client.post(f"/v1/fulfillment/orders/{task['id']}/ready", headers=associate)
    )
    code = ready["pickup_code"]
    [message] = _messages(demo_world, task["id"])
    # A service message: no marketing consent asked (she never gave any).
    assert message.purpose is None and message.status == "queued"
    assert message.template == "ready_for_pickup"
    assert message.customer_id == order["customer_id"]
    assert message.recipient == order["email"]
    # In the order's language (the German web store), with code, store and deadline.
    assert message.locale == "de"
    assert order["number"] in message.subject and "Abholung" in message.subject
    assert code in message.body_text and code in (message.body_html or "")
    assert "Berlin" in message.body_text and "Abholen bis" in message.body_text
    expires = datetime.fromisoformat(ready["expires_at"])
    assert str(expires.year) in message.body_text
    # Only the message carries the code: the event does not.
    with demo_world.database.read() as session:
        stored = fulfillment.get_task(session, task["id"])
        assert stored.pickup_code_hash != code


def test_a_guest_gets_the_code_and_an_erasure_takes_the_message_with_her(
    demo_world: DemoWorld,
) -> None:
    order, _ = _pickup_order(demo_world, customer=False)
    assert order["customer_id"] is None
    [task] = tasks(demo_world, order["id"], "pickup")
    manager = staff(demo_world, "berlin.manager")
    ready = ok(
        demo_world.client.post(f"/v1/fulfillment/orders/{task['id']}/ready", headers=manager)
    )
    [message] = _messages(demo_world, task["id"])
    assert message.customer_id is None  # a guest: the message belongs to no profile
    assert message.recipient == order["email"] and message.purpose is None
    assert ready["pickup_code"] in message.body_text and message.locale == "de"

    # She collects it, registers later and asks for her data to be erased (an order still
    # to collect would hold the erasure back): the guest message goes too.
    client, key, owner = demo_world.client, demo_world.key("web-de"), staff(demo_world)
    ok(
        client.post(
            f"/v1/fulfillment/orders/{task['id']}/handover",
            headers=manager,
            json={"code": ready["pickup_code"]},
        )
    )
    me = ok(
        client.get(
            "/v1/store/customers/me", headers={**key, **register(client, key, order["email"])}
        )
    )["id"]
    document = ok(client.post(f"/v1/customers/{me}/privacy/export", headers=owner, json={}))
    assert message.id in [m["id"] for m in document["data"]["marketing"]["messages"]]
    ok(
        client.post(
            f"/v1/customers/{me}/privacy/erase",
            headers=owner,
            json={"reason": "GDPR art. 17", "confirm_customer_id": me},
        ),
        201,
    )
    [erased] = _messages(demo_world, task["id"])
    assert erased.recipient != order["email"]
    assert ready["pickup_code"] not in erased.body_text


def test_an_uncollected_order_expires_after_the_pickup_days(
    demo_world: DemoWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = demo_world.client
    order, variants = _pickup_order(demo_world)
    [task] = tasks(demo_world, order["id"], "pickup")
    manager = staff(demo_world, "berlin.manager")
    ok(client.post(f"/v1/fulfillment/orders/{task['id']}/ready", headers=manager))
    assert level(demo_world, variants["collect"], "ST-BERLIN").reserved == 1
    days = ok(client.get("/v1/fulfillment/policy", headers=staff(demo_world)))["pickup_days"]
    registered = [
        j.name
        for j in client.app.state.dispatcher._periodic  # type: ignore[attr-defined]
    ]
    assert "expire-pickups" in registered
    start = utcnow()

    def run_at(when: datetime) -> None:
        monkeypatch.setattr(pickup, "utcnow", lambda: when)
        cancellation.expire_pickups(demo_world.database)
        drain(demo_world)

    run_at(start + timedelta(days=days) - timedelta(hours=1))
    assert tasks(demo_world, order["id"], "pickup")[0]["status"] == "ready_for_pickup"
    assert order_of(demo_world, order["id"])["status"] == "allocated"
    run_at(start + timedelta(days=days, hours=1))
    assert tasks(demo_world, order["id"], "pickup")[0]["status"] == "cancelled"
    assert order_of(demo_world, order["id"])["status"] == "cancelled"
    snapshot = level(demo_world, variants["collect"], "ST-BERLIN")
    assert (snapshot.on_hand, snapshot.reserved) == (2, 0)  # back on the shelf
    payments = ok(
        client.get(f"/v1/payments?reference={order['number']}", headers=staff(demo_world))
    )
    assert [p["status"] for p in payments["items"]] == ["voided"]


@pytest.mark.parametrize("parcel_first", [True, False], ids=["parcel-first", "pickup-first"])
def test_a_mixed_order_completes_whichever_part_finishes_last(
    demo_world: DemoWorld, parcel_first: bool
) -> None:
    client = demo_world.client
    order, _ = _pickup_order(demo_world, ship_too=True)
    [ship_task] = tasks(demo_world, order["id"], "ship")
    [pickup_task] = tasks(demo_world, order["id"], "pickup")
    owner = staff(demo_world)
    shipped = ok(
        client.post(f"/v1/fulfillment/orders/{ship_task['id']}/ship", headers=owner, json={})
    )
    number = shipped["shipments"][0]["tracking_number"]
    code = ok(client.post(f"/v1/fulfillment/orders/{pickup_task['id']}/ready", headers=owner))[
        "pickup_code"
    ]

    def collect() -> None:
        ok(
            client.post(
                f"/v1/fulfillment/orders/{pickup_task['id']}/handover",
                headers=owner,
                json={"code": code},
            )
        )

    if parcel_first:
        track(demo_world, number, "delivered")
        assert order_of(demo_world, order["id"])["status"] == "partially_fulfilled"
        collect()
    else:
        collect()
        assert order_of(demo_world, order["id"])["status"] == "fulfilled"
        track(demo_world, number, "delivered")
    assert order_of(demo_world, order["id"])["status"] == "delivered"
