"""The messages card of the order page in Chromium: a support agent resends the lost
ready-for-pickup email (a new copy waits in the outbox, to the same address, and the
timeline says so); the analyst sees the messages but not to whom, and no Resend button."""

from __future__ import annotations

import uuid
from typing import Any

from playwright.sync_api import expect
from sqlalchemy import select

from mercato.fulfillment import service as fulfillment
from mercato.marketing import notifier
from mercato.marketing.models import Message
from tests.commerce.helpers import add, card_token, new_cart, ok
from tests.demo_world import DemoWorld, staff_login
from tests.helpers import drain
from tests.web.browser import Browser, assert_accessible, screenshot

PRICES = {"EU": {"EUR": "39.00"}}


def _ready_pickup(world: DemoWorld) -> tuple[dict[str, Any], int]:
    """A web order collected in Berlin, made ready (its email sent); (order, message id)."""
    item = world.new_product({"ST-BERLIN": 3}, PRICES)
    client, key = world.client, world.key("web-de")
    token = new_cart(client, key)["token"]
    line = add(client, key, token, item, 1)["lines"][0]
    client.patch(
        f"/v1/store/carts/{token}/lines/{line['id']}",
        headers=key,
        json={"delivery_mode": "pickup", "pickup_location_id": world.location_id("ST-BERLIN")},
    )
    email = f"lena-{uuid.uuid4().hex[:8]}@example.de"
    cart = ok(client.patch(f"/v1/store/carts/{token}", headers=key, json={"email": email}))
    tender = {
        "method": "test_gateway",
        "amount": cart["grand_total"]["amount"],
        "token": card_token(client, key),
    }
    order: dict[str, Any] = ok(
        client.post(
            f"/v1/store/carts/{token}/checkout",
            headers={**key, "Idempotency-Key": str(uuid.uuid4())},
            json={"payments": [tender]},
        ),
        201,
    )
    drain(world)
    with world.database.read() as session:
        tasks = fulfillment.tasks_for_order(session, order["id"])
        [task_id] = [t.id for t in tasks if t.kind == "pickup"]
    owner = staff_login(world)
    ok(client.post(f"/v1/fulfillment/orders/{task_id}/ready", headers=owner))
    with world.database.read() as session:
        message_id = session.scalars(
            select(Message.id).where(Message.order_id == order["id"])
        ).one()
    # What the sender records once the email went out.
    notifier._record_sent(world.database, message_id, "smtp-test")
    return order, message_id


def _copies(world: DemoWorld, message_id: int) -> list[Message]:
    with world.database.read() as session:
        found = list(session.scalars(select(Message).where(Message.resent_from_id == message_id)))
        for m in found:
            session.expunge(m)
        return found


def test_a_support_agent_resends_the_pickup_code(browser: Browser) -> None:
    world = browser.world
    order, sent = _ready_pickup(world)
    page = browser.open("support", f"/admin/orders/{order['id']}")
    card = page.get_by_test_id("messages")
    row = card.get_by_test_id(f"message-{sent}")
    expect(row).to_contain_text("Ready for pickup")
    expect(row).to_contain_text(order["email"])
    expect(row).to_contain_text("Sent")
    assert_accessible(page)
    card.scroll_into_view_if_needed()
    screenshot(page, "order-messages")
    row.get_by_role("button", name="Resend").click()
    expect(page.locator("#flash")).to_contain_text("Message queued again, to the same address.")
    [copy] = _copies(world, sent)
    assert copy.status == "queued" and copy.recipient == order["email"]
    assert copy.template == "ready_for_pickup" and copy.order_id == order["id"]
    expect(page.get_by_test_id(f"message-{copy.id}")).to_contain_text("Waiting to be sent")
    expect(page.get_by_test_id("timeline")).to_contain_text("Message sent again")
    # The copy waits for the sender: it has no Resend button of its own yet.
    expect(page.get_by_test_id(f"message-{copy.id}").get_by_role("button")).to_have_count(0)


def test_the_analyst_sees_no_recipient_and_cannot_resend(browser: Browser) -> None:
    world = browser.world
    order, sent = _ready_pickup(world)
    page = browser.open("analyst", f"/admin/orders/{order['id']}")
    row = page.get_by_test_id(f"message-{sent}")
    expect(row).to_contain_text("Ready for pickup")
    expect(page.get_by_test_id("messages")).not_to_contain_text(order["email"])
    expect(page.get_by_test_id("messages").get_by_role("columnheader", name="To")).to_have_count(0)
    expect(page.get_by_role("button", name="Resend")).to_have_count(0)
    assert_accessible(page)
    # Called anyway (with the page's own CSRF token), the resend is refused: nothing queued.
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    assert token
    response = page.request.post(
        f"/admin/orders/{order['id']}/messages/{sent}/resend",
        form={"csrf_token": token, "idempotency_key": str(uuid.uuid4())},
    )
    assert response.status == 403
    # The role's refusal (the permission it lacks), not the CSRF check's.
    assert "orders:write" in response.text()
    assert _copies(world, sent) == []


def test_the_card_speaks_german(browser: Browser) -> None:
    order, sent = _ready_pickup(browser.world)
    page = browser.open("admin", f"/admin/orders/{order['id']}", language="de")
    expect(page.get_by_role("heading", name="Nachrichten")).to_be_visible()
    expect(page.get_by_test_id(f"message-{sent}")).to_contain_text("Abholbereit")
