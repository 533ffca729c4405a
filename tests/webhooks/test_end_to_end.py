"""Webhooks inside the running application: real domain events, real HTTP, real threads."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from mercato.app import create_app
from mercato.auth import service as auth_service
from mercato.db import Database
from mercato.events import Event, OutboxEvent
from mercato.orders import service as orders
from mercato.settings import Settings
from mercato.webhooks import service
from mercato.webhooks.config import WebhookConfig
from mercato.webhooks.events import worker_for
from mercato.webhooks.worker import WebhookWorker
from tests.commerce.helpers import TOKYO, add, new_cart, pay, ship_to
from tests.conftest import OWNER_EMAIL, PASSWORD, login
from tests.demo_world import DemoWorld
from tests.helpers import make_location
from tests.webhooks.conftest import deliveries
from tests.webhooks.receiver import Receiver, check_signature

pytestmark = pytest.mark.slow


@pytest.fixture
def live_app(
    settings: Settings, db: Database, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[TestClient, Any]]:
    """The app with its dispatcher thread running and millisecond webhook back-off."""
    for name, value in {
        "BACKOFF_BASE_SECONDS": "0.005",
        "BACKOFF_CAP_SECONDS": "0.02",
        "POLL_SECONDS": "0.01",
        "TIMEOUT_SECONDS": "2",
        "LEASE_SECONDS": "10",
    }.items():
        monkeypatch.setenv(f"MERCATO_WEBHOOKS_{name}", value)
    app = create_app(settings, database=db)
    with TestClient(app) as client:
        dispatcher = app.state.dispatcher
        dispatcher.start(poll_seconds=0.01)
        try:
            yield client, app
        finally:
            dispatcher.stop()
            worker = worker_for(dispatcher)
            assert worker is not None
            worker.stop()


def test_the_app_delivers_domain_events_in_the_background_and_retries(
    live_app: tuple[TestClient, Any], db: Database, receiver: Receiver
) -> None:
    client, app = live_app
    with db.transaction() as session:
        auth_service.bootstrap_owner(session, OWNER_EMAIL, "Olivia Owner", PASSWORD)
    staff = login(client, OWNER_EMAIL)
    sub = client.post(
        "/v1/webhooks/subscriptions",
        json={"url": receiver.url, "event_types": ["location.*"]},
        headers=staff,
    ).json()
    receiver.fail_next(2)

    location = make_location(client, staff, "WH-HOOK")
    assert receiver.wait_for(1), receiver.requests
    worker = worker_for(app.state.dispatcher)
    assert worker is not None and worker.config.backoff_base_seconds == 0.005
    worker.stop()  # let the pass that recorded the success finish

    assert [r.answered for r in receiver.requests] == [500, 500, 204]
    delivered = receiver.requests[-1]
    assert check_signature(sub["secret"], delivered)
    envelope = json.loads(delivered.body)
    assert envelope["type"] == "location.created"
    assert envelope["data"]["id"] == location["id"]
    [row] = deliveries(db)
    assert (row.status, row.attempts) == ("delivered", 3)


def test_an_order_placed_through_checkout_reaches_the_integrator(
    demo_world: DemoWorld,
    receiver: Receiver,
) -> None:
    """Story 11: an ERP subscribed to order events receives the order a shopper placed."""
    world = demo_world
    staff = world.staff()
    sub = world.client.post(
        "/v1/webhooks/subscriptions",
        json={"url": receiver.url, "event_types": ["order.*"], "description": "ERP"},
        headers=staff,
    ).json()
    try:
        key = world.key("web-jp")
        item = world.new_product({"WH-TYO": 5}, {"JP": {"JPY": "2400"}})
        token = new_cart(world.client, key)["token"]
        add(world.client, key, token, item, 1)
        cart = ship_to(world.client, key, token, TOKYO)
        placed = pay(
            world.client,
            key,
            token,
            cart["grand_total"]["amount"],
            idempotency_key=str(uuid.uuid4()),
        )
        assert placed.status_code == 201, placed.text
        number = placed.json()["number"]
        _fan_out_order_events(world.database, number)

        worker = WebhookWorker(world.database, WebhookConfig(timeout_seconds=2))
        assert worker.drain() >= 1
        types = [r.headers["mercato-event-type"] for r in receiver.requests]
        assert "order.placed" in types
        received = receiver.requests[types.index("order.placed")]
        assert check_signature(sub["secret"], received)
        data = json.loads(received.body)["data"]
        assert data["number"] == number
        assert data["currency"] == "JPY"
        assert Decimal(data["grand_total"]) == Decimal(cart["grand_total"]["amount"])
        assert data["channel_id"] and data["status"] == "placed"
    finally:
        world.client.delete(f"/v1/webhooks/subscriptions/{sub['id']}", headers=staff)


def _fan_out_order_events(database: Database, number: str) -> None:
    """What the dispatcher's fan-out does for this order's committed events.

    The demo database is shared by many tests: draining its whole outbox here would run
    other domains' reactions to their events, so only this order's events are handed over.
    """
    with database.transaction() as session:
        order = orders.get_by_number(session, number)
        rows = session.scalars(
            select(OutboxEvent)
            .where(OutboxEvent.aggregate_type == "order", OutboxEvent.aggregate_id == str(order.id))
            .order_by(OutboxEvent.id)
        ).all()
        assert rows, "checkout published no order event"
        for row in rows:
            service.enqueue_event(session, Event.from_row(row))
