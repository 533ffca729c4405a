"""Loading the demo business leaves nothing in the outbox for the dispatcher: the first
order of a fresh demo is routed by the first dispatcher pass, not minutes later."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from mercato import demo
from mercato.app import create_app
from mercato.db import Database
from mercato.events import OutboxEvent
from mercato.fulfillment import service as fulfillment
from mercato.settings import Settings
from tests.demo_world import DemoWorld
from tests.fulfillment.conftest import item, place
from tests.helpers import detach_categories, drain, fast_password_hashing

pytestmark = pytest.mark.slow

BERLIN = {
    "name": "Lena Schmidt",
    "line1": "Torstraße 1",
    "city": "Berlin",
    "postal_code": "10119",
    "country": "DE",
    "latitude": 52.529,
    "longitude": 13.401,
}


@pytest.fixture
def fresh_demo(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[DemoWorld]:
    """The demo business just loaded into an empty database, served with the dispatcher
    off (the test runs it)."""
    fast_password_hashing(monkeypatch)
    credentials = demo.seed(db)
    try:
        settings = Settings(data_dir=tmp_path, dispatcher_enabled=False)
        with TestClient(create_app(settings, database=db)) as client:
            yield DemoWorld(db, credentials, client)
    finally:
        detach_categories(db)


def _waiting(db: Database) -> int:
    with db.read() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(OutboxEvent)
                .where(OutboxEvent.dispatched_at.is_(None))
            )
            or 0
        )


def test_after_seeding_nothing_waits_and_the_first_order_is_routed_by_the_first_pass(
    fresh_demo: DemoWorld,
) -> None:
    assert _waiting(fresh_demo.database) == 0
    with fresh_demo.database.read() as session:
        logged = session.scalar(
            select(func.count())
            .select_from(OutboxEvent)
            .where(OutboxEvent.type == "stock.changed")
        )
    assert logged and logged > 1000  # the live stock feed still reads the opening stock

    variant = item(fresh_demo, {"WH-FRA": 20}, {"EU": {"EUR": "19.90"}})
    line = {"variant_id": variant, "quantity": 2}
    order = place(fresh_demo, "web-de", [line], address=BERLIN, dispatch=False)

    # The order's events and the new item's catalogue events: a few dozen, not thousands.
    assert drain(fresh_demo) < 50

    with fresh_demo.database.read() as session:
        [decision] = fulfillment.decisions(session, order["id"])
        assert decision.trigger == "initial"
        assert {t.kind for t in fulfillment.tasks_for_order(session, order["id"])} == {"ship"}
