"""Story 4: a customer opens a support request in the app, then calls. The phone agent sees
the case, its messages and her orders and carries on; she never repeats herself."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import select

from mercato.events import OutboxEvent
from tests.commerce.conftest import DemoWorld
from tests.commerce.helpers import TOKYO, add, login, new_cart, ok, pay, register, ship_to

pytestmark = pytest.mark.slow


def _agent(world: DemoWorld) -> dict[str, str]:
    response = world.client.post(
        "/v1/auth/login",
        json={"email": "support@mercato.example", "password": world.credentials.staff_password},
    )
    return {"Authorization": f"Bearer {ok(response)['token']}"}


def test_support_without_repeating_yourself(demo_world: DemoWorld) -> None:
    client = demo_world.client
    web, app = demo_world.key("web-jp"), demo_world.key("app")
    beans = demo_world.new_product({"WH-TYO": 20}, {"JP": {"JPY": "2380"}}, tax_class="food")
    email = f"aiko-{uuid.uuid4().hex[:6]}@example.jp"

    # She bought coffee beans on the Japanese web store.
    on_web = {**web, **register(client, web, email)}
    token = new_cart(client, web)["token"]
    add(client, on_web, token, beans, 2)
    ok(client.post(f"/v1/store/carts/{token}/customer", headers=on_web))
    cart = ship_to(client, on_web, token, TOKYO, email)
    order = ok(
        pay(
            client, on_web, token, cart["grand_total"]["amount"], idempotency_key=f"story4-{token}"
        ),
        201,
    )

    # Later, in the app, she asks about that order.
    in_app = {**app, **login(client, app, email)}
    case = ok(
        client.post(
            "/v1/store/support/cases",
            headers=in_app,
            json={
                "subject": "Where are my coffee beans?",
                "order_number": order["number"],
                "message": {"body": "I ordered two bags a week ago and nothing has arrived."},
            },
        ),
        201,
    )
    assert (case["status"], case["source"]) == ("new", "app")
    assert case["orders"] == [{"order_id": order["id"], "number": order["number"]}]

    # Then she calls and reads out her case number. The agent sees everything at once.
    agent = _agent(demo_world)
    found = ok(client.get(f"/v1/support/cases/by-number/{case['number']}", headers=agent))
    overview = ok(
        client.get(f"/v1/support/customers/{found['customer_id']}/overview", headers=agent)
    )
    assert overview["customer"]["email"] == email and overview["customer"]["order_count"] >= 1
    [open_case] = overview["open_cases"]
    assert open_case["number"] == case["number"] and open_case["subject"] == (
        "Where are my coffee beans?"
    )
    assert [m["body"] for m in open_case["messages"]] == [
        "I ordered two bags a week ago and nothing has arrived."
    ]
    assert open_case["orders"][0]["number"] == order["number"]
    [recent] = [o for o in overview["recent_orders"] if o["number"] == order["number"]]
    assert recent["grand_total"] == order["grand_total"] and recent["currency"] == "JPY"
    assert [(x["quantity"], x["total"]) for x in recent["lines"]] == [
        (2, order["lines"][0]["total"])
    ]

    # The agent carries on in the same case: the call, a note for colleagues, the answer.
    url = f"/v1/support/cases/{case['id']}"
    for body, direction in [
        ("Customer called about the missing beans.", "inbound"),
        ("Carrier lost the parcel; reship from WH-TYO.", "internal"),
        ("We are sending two new bags today, sorry for the wait.", "outbound"),
    ]:
        ok(
            client.post(
                f"{url}/messages",
                headers=agent,
                json={"body": body, "direction": direction, "channel": "phone"},
            ),
            201,
        )
    assert ok(client.get(url, headers=agent))["status"] == "open"
    ok(client.post(f"{url}/status", headers=agent, json={"status": "resolved"}))

    # In the app she sees the call and the answer, never the internal note.
    mine = ok(client.get(f"/v1/store/support/cases/{case['id']}", headers=in_app))
    assert [(m["direction"], m["channel"]) for m in mine["messages"]] == [
        ("inbound", "app"),
        ("inbound", "phone"),
        ("outbound", "phone"),
    ]
    assert "Carrier lost the parcel" not in json.dumps(mine)
    assert mine["messages"][-1]["body"].startswith("We are sending two new bags")
    assert mine["can_rate"] is False

    # Closed, she rates it once.
    ok(client.post(f"{url}/status", headers=agent, json={"status": "closed"}))
    rated = ok(
        client.post(
            f"/v1/store/support/cases/{case['id']}/rating",
            headers=in_app,
            json={"satisfaction": 5, "comment": "Quick and kind."},
        )
    )
    assert rated["satisfaction"] == 5 and rated["can_rate"] is False
    history = ok(
        client.get(f"/v1/support/customers/{found['customer_id']}/overview", headers=agent)
    )
    assert history["open_cases"] == []
    assert history["recent_cases"][0]["satisfaction"] == 5

    with demo_world.database.read() as session:
        events = session.scalars(
            select(OutboxEvent)
            .where(
                OutboxEvent.aggregate_type == "support_case",
                OutboxEvent.aggregate_id == str(case["id"]),
            )
            .order_by(OutboxEvent.id)
        ).all()
        types = [e.type for e in events]
        payloads = json.dumps([e.data for e in events])
    assert types[0] == "support.case_opened" and types[-1] == "support.case_rated"
    assert types.count("support.message_added") == 4
    assert "coffee" not in payloads and "bags" not in payloads  # no message text in events
