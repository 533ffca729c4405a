"""Several workers on one database (threads; SQLite and PostgreSQL): each attempt once."""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from mercato.db import Database
from mercato.events import Dispatcher
from mercato.webhooks.config import WebhookConfig
from mercato.webhooks.models import WebhookDelivery
from mercato.webhooks.worker import WebhookWorker
from tests.webhooks.conftest import attempts, deliveries, emit, subscribe
from tests.webhooks.receiver import Receiver, check_signature

pytestmark = pytest.mark.slow


@pytest.fixture
def db(webhook_db: Database) -> Database:
    """Only the outbox and webhook tables are reset (see conftest.webhook_db)."""
    return webhook_db


WORKERS = 4


def _queue(db: Database, dispatcher: Dispatcher, receiver: Receiver, count: int) -> str:
    sub = subscribe(db, receiver.url, ["*"])
    emit(db, *[("stock.changed", {"n": n}) for n in range(count)])
    dispatcher.drain()
    assert len(deliveries(db)) == count
    return sub.secret


def test_concurrent_claims_never_share_a_delivery(
    db: Database, dispatcher: Dispatcher, config: WebhookConfig, receiver: Receiver
) -> None:
    _queue(db, dispatcher, receiver, 60)
    small = config.model_copy(update={"batch_size": 7})
    workers = [WebhookWorker(db, small) for _ in range(WORKERS)]
    start = threading.Barrier(WORKERS)

    def claim_all(worker: WebhookWorker) -> list[int]:
        start.wait()
        mine: list[int] = []
        for _ in range(60):  # bounded: a broken lease would hand out the same rows forever
            batch = worker.claim()
            if not batch:
                break
            mine += [c.delivery_id for c in batch]
        return mine

    with ThreadPoolExecutor(WORKERS) as pool:
        claimed = list(pool.map(claim_all, workers))
    everything = [i for ids in claimed for i in ids]
    assert len(everything) == len(set(everything)) == 60


def test_workers_racing_deliver_each_event_exactly_once(
    db: Database, dispatcher: Dispatcher, config: WebhookConfig, receiver: Receiver
) -> None:
    secret = _queue(db, dispatcher, receiver, 40)
    small = config.model_copy(update={"batch_size": 5, "concurrency": 2})
    workers = [WebhookWorker(db, small) for _ in range(WORKERS)]
    start = threading.Barrier(WORKERS)

    def work(worker: WebhookWorker) -> int:
        start.wait()
        return worker.drain()

    with ThreadPoolExecutor(WORKERS) as pool:
        attempted = sum(pool.map(work, workers))
    assert attempted == 40
    counts = Counter(r.event_id for r in receiver.requests)
    assert len(counts) == 40 and set(counts.values()) == {1}
    assert all(check_signature(secret, r) for r in receiver.requests)
    assert {d.status for d in deliveries(db)} == {"delivered"}
    assert len(attempts(db)) == 40


def test_workers_racing_through_failures_never_repeat_an_attempt(
    db: Database, dispatcher: Dispatcher, receiver: Receiver
) -> None:
    """Retries come due within milliseconds; four workers share them until all are delivered."""
    _queue(db, dispatcher, receiver, 30)
    fast = WebhookConfig(
        backoff_base_seconds=0.001,
        backoff_cap_seconds=0.002,
        max_attempts=50,
        timeout_seconds=2,
        lease_seconds=30,
        batch_size=4,
        concurrency=2,
    )
    receiver.fail_next(25)
    workers = [WebhookWorker(db, fast) for _ in range(WORKERS)]
    start = threading.Barrier(WORKERS)
    deadline = time.monotonic() + 30

    def pending() -> int:
        with db.read() as session:
            return int(
                session.scalar(
                    select(func.count())
                    .select_from(WebhookDelivery)
                    .where(WebhookDelivery.status != "delivered")
                )
                or 0
            )

    def work(worker: WebhookWorker) -> None:
        start.wait()
        while pending() and time.monotonic() < deadline:
            worker.run_once()

    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(work, workers))
    assert pending() == 0
    assert len(receiver.requests) == 30 + 25
    # Each (delivery, attempt number) reached the receiver once; each event succeeded once.
    sent = Counter(
        (r.headers["mercato-delivery-id"], r.headers["mercato-attempt"]) for r in receiver.requests
    )
    assert set(sent.values()) == {1}
    succeeded = Counter(r.event_id for r in receiver.succeeded())
    assert len(succeeded) == 30 and set(succeeded.values()) == {1}
    history = attempts(db)
    assert len(history) == 55
    assert sum(not a.succeeded for a in history) == 25
