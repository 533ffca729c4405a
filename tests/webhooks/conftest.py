"""Fixtures for webhook tests: a real receiver, a clock the test moves, a wired dispatcher."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select

from mercato.auth.principal import Principal
from mercato.db import Base, Database, utcnow
from mercato.events import Dispatcher, OutboxEvent, record_event
from mercato.webhooks import events as webhook_events
from mercato.webhooks import service
from mercato.webhooks.config import WebhookConfig
from mercato.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookSubscription
from mercato.webhooks.schemas import SubscriptionIn
from mercato.webhooks.worker import WebhookWorker
from tests.backends import POSTGRES_URL
from tests.webhooks.receiver import Receiver

SYSTEM = Principal.system("tests")


class Clock:
    """Scheduling time for workers: real time plus however far the test moved it on."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return utcnow() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


@dataclass
class Subscribed:
    id: int
    secret: str


@pytest.fixture(autouse=True)
def _local_receivers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test receivers listen on 127.0.0.1, which only this setting lets webhooks call;
    tests of the refusal turn it off again (``test_targets``)."""
    monkeypatch.setenv("MERCATO_WEBHOOKS_ALLOW_PRIVATE_TARGETS", "true")


@pytest.fixture
def webhook_db(
    backend: str, _databases: dict[str, Database], tmp_path_factory: pytest.TempPathFactory
) -> Database:
    """The shared test database with only the outbox and the webhook tables emptied.

    Delivery tests touch nothing else, and emptying four tables is much cheaper than
    resetting the whole schema before each test. Modules opt in by overriding ``db``.
    """
    database = _databases.get(backend)
    if database is None:
        if backend == "postgresql":
            assert POSTGRES_URL
            database = Database(POSTGRES_URL)
            Base.metadata.drop_all(database.engine)
        else:
            path = Path(tmp_path_factory.mktemp("sqlite")) / "test.db"
            database = Database(f"sqlite:///{path}")
        Base.metadata.create_all(database.engine)
        _databases[backend] = database
    with database.engine.begin() as conn:
        for table in (WebhookAttempt, WebhookDelivery, WebhookSubscription, OutboxEvent):
            conn.execute(delete(table))
    return database


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def config() -> WebhookConfig:
    return WebhookConfig(
        max_attempts=4,
        backoff_base_seconds=10,
        backoff_cap_seconds=60,
        jitter=0.2,
        timeout_seconds=1,
        lease_seconds=30,
        concurrency=4,
    )


@pytest.fixture
def dispatcher(db: Database, config: WebhookConfig) -> Dispatcher:
    """An outbox dispatcher with the webhook fan-out registered (as the app does)."""
    made = Dispatcher(db)
    webhook_events.register(made, config)
    return made


@pytest.fixture
def worker(db: Database, config: WebhookConfig, clock: Clock) -> WebhookWorker:
    return WebhookWorker(db, config, clock=clock)


def subscribe(db: Database, url: str, event_types: list[str], **extra: Any) -> Subscribed:
    with db.transaction() as session:
        data = SubscriptionIn(url=url, event_types=event_types, **extra)
        subscription, secret = service.create_subscription(session, SYSTEM, data)
        return Subscribed(subscription.id, secret)


def emit(db: Database, *events: tuple[str, dict[str, Any]]) -> list[str]:
    """Publish events in one committed transaction; returns their ids."""
    with db.transaction() as session:
        return [record_event(session, type_, data).id for type_, data in events]


def deliveries(db: Database, subscription_id: int | None = None) -> list[WebhookDelivery]:
    with db.read() as session:
        query = select(WebhookDelivery).order_by(WebhookDelivery.id)
        if subscription_id is not None:
            query = query.where(WebhookDelivery.subscription_id == subscription_id)
        rows = list(session.scalars(query))
        session.expunge_all()  # keep them readable after the read transaction ends
        return rows


def attempts(db: Database) -> list[WebhookAttempt]:
    with db.read() as session:
        rows = list(
            session.scalars(
                select(WebhookAttempt).order_by(WebhookAttempt.delivery_id, WebhookAttempt.number)
            )
        )
        session.expunge_all()
        return rows
