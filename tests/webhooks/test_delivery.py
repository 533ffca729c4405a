"""Delivery against a real HTTP receiver: signed envelope, retries, dead letters, crashes."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import update

from mercato.db import Database, utcnow
from mercato.errors import UnprocessableState
from mercato.events import Dispatcher, OutboxEvent, record_event
from mercato.webhooks import service, signing
from mercato.webhooks.config import WebhookConfig
from mercato.webhooks.models import WebhookDelivery, WebhookSubscription
from mercato.webhooks.worker import WebhookWorker
from tests.webhooks.conftest import SYSTEM, Clock, attempts, deliveries, emit, subscribe
from tests.webhooks.receiver import Receiver, check_signature


@pytest.fixture
def db(webhook_db: Database) -> Database:
    """Only the outbox and webhook tables are reset (see conftest.webhook_db)."""
    return webhook_db


ENVELOPE_KEYS = {"id", "type", "time", "version", "data"}


def test_signed_envelope_reaches_the_receiver(
    db: Database, dispatcher: Dispatcher, worker: WebhookWorker, receiver: Receiver
) -> None:
    sub = subscribe(db, receiver.url, ["order.*"])
    placed, _, cancelled = emit(
        db,
        ("order.placed", {"order_id": 7, "grand_total": "12.50"}),
        ("stock.changed", {"variant_id": 1}),
        ("order.cancelled", {"order_id": 7}),
    )
    dispatcher.drain()
    assert [d.event_id for d in deliveries(db)] == [placed, cancelled]
    assert worker.drain() == 2

    assert sorted(r.event_id for r in receiver.requests) == sorted([placed, cancelled])
    for received in receiver.requests:
        assert received.path == "/hooks/mercato"
        assert received.headers["content-type"] == "application/json"
        assert check_signature(sub.secret, received)
        assert signing.verify(sub.secret, received.body, received.headers["mercato-signature"])
        assert not check_signature("whsec_not-the-secret", received)
        tampered = received.body.replace(b"7", b"8")
        assert not signing.verify(sub.secret, tampered, received.headers["mercato-signature"])
        envelope = json.loads(received.body)
        assert set(envelope) == ENVELOPE_KEYS
        assert envelope["id"] == received.headers["mercato-event-id"]
        assert envelope["type"] == received.headers["mercato-event-type"]
        assert envelope["version"] == 1
        assert envelope["data"]["order_id"] == 7
    first = next(r for r in receiver.requests if r.event_id == placed)
    assert json.loads(first.body)["data"] == {"order_id": 7, "grand_total": "12.50"}

    rows = deliveries(db)
    assert {d.status for d in rows} == {"delivered"}
    assert {(d.attempts, d.total_attempts, d.last_status_code) for d in rows} == {(1, 1, 204)}
    assert all(d.claim_token is None and d.claimed_until is None for d in rows)
    history = attempts(db)
    assert [(a.number, a.succeeded, a.status_code) for a in history] == [(1, True, 204)] * 2
    assert worker.drain() == 0  # nothing is sent twice


def test_patterns_select_events() -> None:
    assert service.matches(["*"], "anything.at_all")
    assert service.matches(["order.placed"], "order.placed")
    assert not service.matches(["order.placed"], "order.cancelled")
    assert service.matches(["order.*"], "order.lines_returned")
    assert not service.matches(["order.*"], "orders.placed")
    assert not service.matches(["order.*"], "order")
    assert service.matches(["stock.low", "payment.*"], "payment.captured")


def test_only_active_subscriptions_that_match_get_deliveries(
    db: Database, dispatcher: Dispatcher, worker: WebhookWorker, receiver: Receiver
) -> None:
    wanted = subscribe(db, receiver.url, ["payment.captured"])
    everything = subscribe(db, receiver.url, ["*"])
    paused = subscribe(db, receiver.url, ["*"], active=False)
    emit(db, ("payment.captured", {"payment_id": 1}), ("cart.created", {"cart_id": 2}))
    dispatcher.drain()
    per_sub = {
        s.id: [d.event_type for d in deliveries(db, s.id)] for s in (wanted, everything, paused)
    }
    assert per_sub == {
        wanted.id: ["payment.captured"],
        everything.id: ["payment.captured", "cart.created"],
        paused.id: [],
    }


def test_paused_subscription_keeps_its_deliveries_until_resumed(
    db: Database, dispatcher: Dispatcher, worker: WebhookWorker, receiver: Receiver
) -> None:
    sub = subscribe(db, receiver.url, ["*"])
    emit(db, ("product.updated", {"id": 1}))
    dispatcher.drain()
    with db.transaction() as session:
        session.execute(
            update(WebhookSubscription).where(WebhookSubscription.id == sub.id).values(active=False)
        )
    assert worker.drain() == 0
    assert receiver.requests == []
    with db.transaction() as session:
        session.execute(
            update(WebhookSubscription).where(WebhookSubscription.id == sub.id).values(active=True)
        )
    assert worker.drain() == 1
    assert len(receiver.succeeded()) == 1


def test_failures_are_retried_with_exponential_backoff_then_delivered(
    db: Database,
    dispatcher: Dispatcher,
    worker: WebhookWorker,
    receiver: Receiver,
    clock: Clock,
) -> None:
    sub = subscribe(db, receiver.url, ["order.placed"])
    [event_id] = emit(db, ("order.placed", {"order_id": 1}))
    dispatcher.drain()
    receiver.fail_next(2)

    assert worker.run_once() == 1
    [row] = deliveries(db)
    assert (row.status, row.attempts, row.last_status_code) == ("pending", 1, 500)
    # The status and its phrase only: what the receiver answered is never kept.
    assert row.last_error == "HTTP 500 Internal Server Error"
    assert row.last_attempt_at is not None
    first_delay = (row.next_attempt_at - row.last_attempt_at).total_seconds()
    assert 8 <= first_delay <= 12.5  # 10 s +/- 20 % jitter (and the call's duration)
    assert worker.run_once() == 0  # not due yet

    clock.advance(first_delay + 0.001)
    assert worker.run_once() == 1
    [row] = deliveries(db)
    assert row.last_attempt_at is not None
    second_delay = (row.next_attempt_at - row.last_attempt_at).total_seconds()
    assert (row.status, row.attempts) == ("pending", 2)
    assert 16 <= second_delay <= 24.5  # doubled
    clock.advance(second_delay + 0.001)
    assert worker.run_once() == 1

    [row] = deliveries(db)
    assert (row.status, row.attempts, row.last_status_code, row.last_error) == (
        "delivered",
        3,
        204,
        None,
    )
    assert [r.answered for r in receiver.requests] == [500, 500, 204]
    # Every retry carries the same event id and body, each freshly signed.
    assert {r.event_id for r in receiver.requests} == {event_id}
    assert len({r.body for r in receiver.requests}) == 1
    assert all(check_signature(sub.secret, r) for r in receiver.requests)
    assert [r.headers["mercato-attempt"] for r in receiver.requests] == ["1", "2", "3"]
    history = attempts(db)
    assert [(a.number, a.succeeded, a.status_code) for a in history] == [
        (1, False, 500),
        (2, False, 500),
        (3, True, 204),
    ]


def test_dead_letter_after_max_attempts_and_resend_succeeds(
    db: Database,
    dispatcher: Dispatcher,
    worker: WebhookWorker,
    receiver: Receiver,
    clock: Clock,
) -> None:
    sub = subscribe(db, receiver.url, ["*"])
    [event_id] = emit(db, ("shipment.label_created", {"shipment_id": 3}))
    dispatcher.drain()
    receiver.fail_next(100, status=503)
    for _ in range(4):  # config.max_attempts
        assert worker.run_once() == 1
        clock.advance(100)  # beyond the capped back-off (60 s + jitter)
    [row] = deliveries(db)
    assert (row.status, row.attempts, row.last_status_code) == ("dead", 4, 503)
    assert row.dead_at is not None
    assert worker.run_once() == 0  # a dead letter is not retried by itself
    assert len(receiver.requests) == 4

    receiver.fail_next(0)
    with db.transaction() as session:
        assert service.resend_dead_letters(session, SYSTEM, sub.id) == [row.id]
    assert worker.run_once() == 1
    [row] = deliveries(db)
    assert (row.status, row.attempts, row.total_attempts) == ("delivered", 1, 5)
    assert receiver.succeeded()[0].event_id == event_id
    assert check_signature(sub.secret, receiver.succeeded()[0])
    with db.transaction() as session:
        assert service.resend_dead_letters(session, SYSTEM, sub.id) == []


def test_connection_errors_and_timeouts_are_retried(
    db: Database, dispatcher: Dispatcher, receiver: Receiver, clock: Clock
) -> None:
    from tests.servers import free_port

    fast = WebhookConfig(timeout_seconds=0.2, lease_seconds=5, backoff_base_seconds=1)
    worker = WebhookWorker(db, fast, clock=clock)
    closed = subscribe(db, f"http://127.0.0.1:{free_port()}/nobody-listens", ["*"])
    slow = subscribe(db, receiver.url, ["*"])
    emit(db, ("customer.registered", {"customer_id": 5}))
    dispatcher.drain()
    receiver.hold()
    assert worker.run_once() == 2
    receiver.release()
    by_sub = {d.subscription_id: d for d in deliveries(db)}
    assert by_sub[closed.id].status == by_sub[slow.id].status == "pending"
    assert by_sub[closed.id].last_status_code is None
    assert "ConnectError" in (by_sub[closed.id].last_error or "")
    assert by_sub[slow.id].last_error == "timed out after 0.2s"
    assert all(d.next_attempt_at > clock() for d in by_sub.values())


def test_worker_that_dies_after_claiming_is_replaced_once_its_lease_expires(
    db: Database,
    dispatcher: Dispatcher,
    config: WebhookConfig,
    receiver: Receiver,
    clock: Clock,
) -> None:
    sub = subscribe(db, receiver.url, ["stock.*"])
    committed = emit(db, *[("stock.changed", {"n": n}) for n in range(5)])
    dispatcher.drain()

    dead = WebhookWorker(db, config, clock=clock)
    claims = dead.claim()  # ... and the process dies before sending anything
    assert len(claims) == 5
    replacement = WebhookWorker(db, config, clock=clock)
    assert replacement.run_once() == 0  # the leases still hold
    assert receiver.requests == []

    clock.advance(config.lease_seconds + 1)
    assert replacement.drain() == 5
    assert sorted(r.event_id for r in receiver.requests) == sorted(committed)
    assert all(check_signature(sub.secret, r) for r in receiver.requests)
    assert {d.status for d in deliveries(db)} == {"delivered"}
    # The dead worker coming back cannot overwrite what the replacement recorded.
    with dead.http_client() as client:
        late = dead.send(claims[0], client)
    assert not dead.finish(claims[0], late)
    assert {d.status for d in deliveries(db)} == {"delivered"}


def test_worker_that_dies_after_sending_causes_a_duplicate_not_a_loss(
    db: Database,
    dispatcher: Dispatcher,
    config: WebhookConfig,
    receiver: Receiver,
    clock: Clock,
) -> None:
    subscribe(db, receiver.url, ["*"])
    [event_id] = emit(db, ("order.placed", {"order_id": 9}))
    dispatcher.drain()
    dead = WebhookWorker(db, config, clock=clock)
    [claim] = dead.claim()
    with dead.http_client() as client:
        dead.send(claim, client)  # sent, then the process dies before recording it
    clock.advance(config.lease_seconds + 1)
    assert WebhookWorker(db, config, clock=clock).drain() == 1
    # At least once: the receiver sees the same id twice and deduplicates on it.
    assert [r.event_id for r in receiver.requests] == [event_id, event_id]
    assert receiver.requests[0].body == receiver.requests[1].body
    [row] = deliveries(db)
    assert (row.status, row.total_attempts) == ("delivered", 2)


def test_events_committed_before_a_crash_are_delivered_by_the_next_process(
    db: Database, config: WebhookConfig, receiver: Receiver, clock: Clock
) -> None:
    from mercato.webhooks import events as webhook_events

    subscribe(db, receiver.url, ["*"])
    before_dispatch = emit(db, ("order.placed", {"order_id": 1}), ("order.placed", {"order_id": 2}))
    # Process 1 dies right after committing (its dispatcher never ran). Process 2 starts,
    # claims the outbox batch and dies too, holding the outbox lease.
    second = Dispatcher(db)
    webhook_events.register(second, config)
    assert len(second._claim(100)) == 2
    assert deliveries(db) == []

    # Process 3: once the dead dispatcher's lease has expired, it dispatches and delivers.
    with db.transaction() as session:
        session.execute(update(OutboxEvent).values(claimed_until=None))
    third = Dispatcher(db)
    webhook_events.register(third, config)
    assert third.drain() == 2
    assert WebhookWorker(db, config, clock=clock).drain() == 2
    assert sorted(r.event_id for r in receiver.requests) == sorted(before_dispatch)


def test_a_redispatched_event_does_not_duplicate_its_deliveries(
    db: Database, dispatcher: Dispatcher, worker: WebhookWorker, receiver: Receiver
) -> None:
    subscribe(db, receiver.url, ["*"])
    emit(db, ("promotion.redeemed", {"promotion_id": 1}))
    dispatcher.drain()
    # The outbox delivers at least once: the same event handed over again adds nothing.
    with db.transaction() as session:
        session.execute(update(OutboxEvent).values(dispatched_at=None, claimed_until=None))
    assert dispatcher.drain() == 1
    assert len(deliveries(db)) == 1
    assert worker.drain() == 1
    assert len(receiver.requests) == 1


def test_rolled_back_events_are_never_delivered(
    db: Database, dispatcher: Dispatcher, worker: WebhookWorker, receiver: Receiver
) -> None:
    subscribe(db, receiver.url, ["*"])
    with pytest.raises(RuntimeError), db.transaction() as session:
        record_event(session, "order.placed", {"order_id": "rolled back"})
        raise RuntimeError("payment declined")
    with db.transaction() as session:
        try:
            with session.begin_nested():
                record_event(session, "order.placed", {"order_id": "savepoint rolled back"})
                raise ValueError("line rejected")
        except ValueError:
            pass
        kept = record_event(session, "order.placed", {"order_id": "committed"}).id
    dispatcher.drain()
    worker.drain()
    assert [r.event_id for r in receiver.requests] == [kept]
    assert [d.event_id for d in deliveries(db)] == [kept]


def test_a_secret_that_cannot_be_decrypted_fails_without_sending(
    db: Database, dispatcher: Dispatcher, worker: WebhookWorker, receiver: Receiver
) -> None:
    sub = subscribe(db, receiver.url, ["*"])
    with db.transaction() as session:
        foreign = signing.seal("whsec_other", secret_key="another installation key")
        session.execute(
            update(WebhookSubscription)
            .where(WebhookSubscription.id == sub.id)
            .values(secret_sealed=foreign)
        )
    emit(db, ("prices.changed", {"price_list_id": 1}))
    dispatcher.drain()
    assert worker.run_once() == 1
    assert receiver.requests == []
    [row] = deliveries(db)
    assert row.status == "pending" and "cannot be decrypted" in (row.last_error or "")


def test_delivered_rows_are_purged_after_the_retention_period(
    db: Database, dispatcher: Dispatcher, worker: WebhookWorker, receiver: Receiver
) -> None:
    subscribe(db, receiver.url, ["*"])
    emit(db, ("a.one", {}), ("a.two", {}), ("a.three", {}))
    dispatcher.drain()
    worker.drain()
    rows = deliveries(db)
    with db.transaction() as session:
        old = utcnow() - timedelta(days=40)
        session.execute(
            update(WebhookDelivery).where(WebhookDelivery.id == rows[0].id).values(delivered_at=old)
        )
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == rows[1].id)
            .values(status="dead", delivered_at=None, dead_at=old)
        )
    with db.transaction() as session:
        assert service.purge_delivered(session, timedelta(days=30)) == 1
    assert [d.id for d in deliveries(db)] == [rows[1].id, rows[2].id]
    assert {a.delivery_id for a in attempts(db)} == {rows[1].id, rows[2].id}


def test_a_delivery_being_sent_cannot_be_resent_meanwhile(
    db: Database, dispatcher: Dispatcher, worker: WebhookWorker, receiver: Receiver
) -> None:
    subscribe(db, receiver.url, ["*"])
    emit(db, ("order.placed", {"order_id": 1}))
    dispatcher.drain()
    [claim] = worker.claim()
    with pytest.raises(UnprocessableState), db.transaction() as session:
        service.resend_delivery(session, SYSTEM, claim.delivery_id)
    with worker.http_client() as client:
        assert worker.finish(claim, worker.send(claim, client))
    with db.transaction() as session:
        again = service.resend_delivery(session, SYSTEM, claim.delivery_id)
        assert (again.status, again.attempts, again.total_attempts) == ("pending", 0, 1)
    assert worker.drain() == 1
    assert len(receiver.succeeded()) == 2
