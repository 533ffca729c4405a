"""An order's messages through the staff API: listed per order, resent to the same address
(or the order's current email), once per Idempotency-Key, audited and in the timeline."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import select

from mercato.auth.models import AuditEntry
from mercato.marketing import notifier
from mercato.marketing.models import Message
from tests.commerce.conftest import DemoWorld
from tests.commerce.helpers import ok
from tests.conftest import assert_problem
from tests.fulfillment.conftest import item, place, staff, tasks

pytestmark = pytest.mark.slow


def ready_pickup(world: DemoWorld) -> tuple[dict[str, Any], int]:
    """A click & collect order made ready in Berlin, its message marked sent; (order, id)."""
    berlin = world.location_id("ST-BERLIN")
    collect = item(world, {"ST-BERLIN": 2}, {"EU": {"EUR": "39.00"}})
    line = {"variant_id": collect, "quantity": 1, "delivery_mode": "pickup"}
    email = f"collect-{uuid.uuid4().hex[:8]}@example.com"
    order = place(world, "web-de", [{**line, "pickup_location_id": berlin}], email=email)
    [task] = tasks(world, order["id"], "pickup")
    ok(world.client.post(f"/v1/fulfillment/orders/{task['id']}/ready", headers=staff(world)))
    with world.database.read() as session:
        message_id = session.scalars(
            select(Message.id).where(
                Message.reference_type == "fulfillment_order",
                Message.reference_id == str(task["id"]),
            )
        ).one()
    # What the sender records once the email went out.
    notifier._record_sent(world.database, message_id, "smtp-1")
    return order, message_id


def _message(world: DemoWorld, message_id: int) -> Message:
    with world.database.read() as session:
        found = session.get(Message, message_id)
        assert found is not None
        session.expunge(found)
        return found


def test_staff_list_an_orders_messages_and_resend_the_pickup_code(
    demo_world: DemoWorld,
) -> None:
    client = demo_world.client
    order, sent = ready_pickup(demo_world)
    base = f"/v1/orders/{order['id']}/messages"
    listed = ok(client.get(base, headers=staff(demo_world)))["items"]
    assert [m["id"] for m in listed] == [sent]
    assert listed[0]["template"] == "ready_for_pickup" and listed[0]["status"] == "sent"
    assert listed[0]["recipient"] == order["email"] and listed[0]["order_id"] == order["id"]

    # The analyst sees the messages, not to whom nor what they say.
    [seen] = ok(client.get(base, headers=staff(demo_world, "analyst")))["items"]
    assert seen["recipient"] is None and seen["body_text"] is None
    # ... and may not resend.
    denied = client.post(f"{base}/{sent}/resend", headers=staff(demo_world, "analyst"))
    assert_problem(denied, 403, "forbidden")

    support = {**staff(demo_world, "support"), "Idempotency-Key": str(uuid.uuid4())}
    copy = ok(client.post(f"{base}/{sent}/resend", headers=support), 201)
    again = ok(client.post(f"{base}/{sent}/resend", headers=support), 201)
    assert again["id"] == copy["id"]  # the same key: one copy
    assert copy["status"] == "queued" and copy["resent_from_id"] == sent
    assert copy["recipient"] == order["email"] and copy["template"] == "ready_for_pickup"
    original, queued = _message(demo_world, sent), _message(demo_world, copy["id"])
    assert queued.body_text == original.body_text and queued.subject == original.subject
    listed = ok(client.get(base, headers=staff(demo_world)))["items"]
    assert [m["id"] for m in listed] == [copy["id"], sent]

    # Audited (without the address) and written in the order's timeline.
    with demo_world.database.read() as session:
        entry = session.scalars(
            select(AuditEntry).where(
                AuditEntry.action == "message.resent", AuditEntry.entity_id == str(copy["id"])
            )
        ).one()
        assert entry.changes["resent_from_id"] == sent
        assert order["email"] not in str(entry.changes)
    activity = ok(client.get(f"/v1/orders/{order['id']}", headers=staff(demo_world)))["activity"]
    [note] = [a for a in activity if a["kind"] == "message_resent"]
    assert "pickup code" in note["text"] and str(copy["id"]) in note["text"]

    # A copy still waiting is not resent again; an unknown message or order is not found.
    waiting = client.post(f"{base}/{copy['id']}/resend", headers=staff(demo_world))
    assert_problem(waiting, 409, "message-still-queued")
    assert_problem(client.post(f"{base}/999999999/resend", headers=staff(demo_world)), 404)
    other, _ = ready_pickup(demo_world)
    wrong = client.post(
        f"/v1/orders/{other['id']}/messages/{sent}/resend", headers=staff(demo_world)
    )
    assert_problem(wrong, 404)


def test_a_resend_to_the_orders_current_email(demo_world: DemoWorld) -> None:
    order, sent = ready_pickup(demo_world)
    # The address the message went to was mistyped and later corrected on the order.
    with demo_world.database.transaction() as session:
        message = session.get(Message, sent)
        assert message is not None
        message.recipient = "typo@example.com"
    url = f"/v1/orders/{order['id']}/messages/{sent}/resend"
    same = ok(demo_world.client.post(url, headers=staff(demo_world)), 201)
    assert same["recipient"] == "typo@example.com"
    current = ok(
        demo_world.client.post(url, headers=staff(demo_world), json={"to_current_email": True}),
        201,
    )
    assert current["recipient"] == order["email"]


def test_marketing_messages_are_not_resent(demo_world: DemoWorld) -> None:
    order, _ = ready_pickup(demo_world)
    with demo_world.database.transaction() as session:
        offer = notifier.queue_message(
            session,
            notifier.NewMessage(
                customer_id=order["customer_id"],
                channel=notifier.MessageChannel.EMAIL,
                recipient=order["email"],
                template="personal_offer",
                locale="de",
                subject="Ihr Code",
                body_text="CODE-123",
                purpose="marketing_email",
                order_id=order["id"],
            ),
        )
        offer.status = "sent"
        offer_id = offer.id
    url = f"/v1/orders/{order['id']}/messages/{offer_id}/resend"
    refused = demo_world.client.post(url, headers=staff(demo_world))
    assert_problem(refused, 409, "message-not-resendable")
