from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mercato.db import Database
from mercato.events import Dispatcher, Event, OutboxEvent, publish


def _count(db: Database) -> int:
    with db.read() as session:
        return int(session.scalar(select(func.count()).select_from(OutboxEvent)) or 0)


def test_event_is_stored_only_when_its_transaction_commits(db: Database) -> None:
    with pytest.raises(RuntimeError), db.transaction() as session:
        publish(session, "product.updated", {"id": 1})
        raise RuntimeError("business rule failed after publishing")
    assert _count(db) == 0

    with db.transaction() as session:
        publish(session, "product.updated", {"id": 2})
    assert _count(db) == 1


def test_dispatcher_delivers_committed_events_once_in_order(db: Database) -> None:
    dispatcher = Dispatcher(db)
    seen: list[tuple[str, int]] = []
    dispatcher.subscribe("stock.*", lambda s, e: seen.append((e.type, e.data["n"])))
    with db.transaction() as session:
        publish(session, "stock.changed", {"n": 1})
        publish(session, "order.placed", {"n": 2})
        publish(session, "stock.low", {"n": 3})
    assert dispatcher.drain() == 3
    assert seen == [("stock.changed", 1), ("stock.low", 3)]
    assert dispatcher.drain() == 0
    assert seen == [("stock.changed", 1), ("stock.low", 3)]


def test_rolled_back_event_never_reaches_subscribers(db: Database) -> None:
    dispatcher = Dispatcher(db)
    seen: list[Event] = []
    dispatcher.subscribe("*", lambda s, e: seen.append(e))
    with pytest.raises(ValueError), db.transaction() as session:
        publish(session, "order.placed", {"order_id": 1})
        raise ValueError("payment declined")
    dispatcher.drain()
    assert seen == []


def test_failing_subscriber_leaves_event_for_retry_and_rolls_back_its_writes(db: Database) -> None:
    dispatcher = Dispatcher(db)
    calls = {"n": 0}

    def flaky(session: Session, event: Event) -> None:
        calls["n"] += 1
        publish(session, "side.effect", {})
        if calls["n"] == 1:
            raise RuntimeError("downstream unavailable")

    dispatcher.subscribe("order.placed", flaky)
    with db.transaction() as session:
        publish(session, "order.placed", {"order_id": 7})
    dispatcher.drain()
    with db.read() as session:
        row = session.scalars(select(OutboxEvent).where(OutboxEvent.type == "order.placed")).one()
        assert row.dispatched_at is None
        assert row.attempts == 1
        assert "downstream unavailable" in (row.last_error or "")
        side = session.scalars(select(OutboxEvent).where(OutboxEvent.type == "side.effect")).all()
        assert side == []  # the handler's own writes were rolled back with it
        # Expire the back-off so that the retry is due now.
        row_id = row.id
    with db.transaction() as session:
        session.get(OutboxEvent, row_id).claimed_until = None  # type: ignore[union-attr]
    dispatcher.drain()
    with db.read() as session:
        row2 = session.get(OutboxEvent, row_id)
        assert row2 is not None and row2.dispatched_at is not None
    assert calls["n"] == 2


def test_one_failing_subscriber_neither_blocks_nor_repeats_the_others(db: Database) -> None:
    dispatcher = Dispatcher(db)
    calls = {"steady": 0, "flaky": 0}

    def steady(session: Session, event: Event) -> None:
        calls["steady"] += 1
        publish(session, "steady.done", {})

    def flaky(session: Session, event: Event) -> None:
        calls["flaky"] += 1
        if calls["flaky"] == 1:
            raise RuntimeError("downstream unavailable")

    dispatcher.subscribe("order.placed", steady)
    dispatcher.subscribe("order.*", flaky)
    with db.transaction() as session:
        publish(session, "order.placed", {"order_id": 8})
    dispatcher.drain()
    with db.read() as session:
        row = session.scalars(select(OutboxEvent).where(OutboxEvent.type == "order.placed")).one()
        assert row.dispatched_at is None and row.attempts == 1
        assert row.handled == [f"{__name__}.{steady.__qualname__}"]
        # The steady subscriber's writes stayed although its neighbour failed.
        done = session.scalars(select(OutboxEvent).where(OutboxEvent.type == "steady.done"))
        assert len(done.all()) == 1
        row_id = row.id
    with db.transaction() as session:
        session.get(OutboxEvent, row_id).claimed_until = None  # type: ignore[union-attr]
    dispatcher.drain()
    with db.read() as session:
        again = session.get(OutboxEvent, row_id)
        assert again is not None and again.dispatched_at is not None
    # The retry ran only the subscriber that had failed.
    assert calls == {"steady": 1, "flaky": 2}


def test_two_dispatchers_sharing_an_outbox_do_not_deliver_twice(db: Database) -> None:
    first, second = Dispatcher(db), Dispatcher(db)
    seen: list[str] = []
    for dispatcher in (first, second):
        dispatcher.subscribe("*", lambda s, e: seen.append(e.id))
    with db.transaction() as session:
        for n in range(20):
            publish(session, "thing.happened", {"n": n})
    claimed_by_first = first._claim(10)
    claimed_by_second = second._claim(50)
    assert set(claimed_by_first).isdisjoint(claimed_by_second)
    for pk in claimed_by_first:
        first._deliver(pk)
    for pk in claimed_by_second:
        second._deliver(pk)
    assert len(seen) == len(set(seen)) == 20


def test_commit_wakes_the_dispatcher(db: Database) -> None:
    woken: list[bool] = []
    db.wake_hook = lambda: woken.append(True)
    try:
        with db.transaction() as session:
            session.info["noop"] = True
        assert woken == []
        with db.transaction() as session:
            publish(session, "x.y", {})
        assert woken == [True]
    finally:
        db.wake_hook = None
