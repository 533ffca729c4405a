from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from mercato.db import Database, utcnow
from mercato.events import (
    BATCH_SIZE,
    BULK,
    NORMAL,
    URGENT,
    Dispatcher,
    Event,
    OutboxEvent,
    lane_of,
    publish_many,
    record_event,
    record_without_delivery,
)
from mercato.inventory.event_types import StockChanged


def _stock_changes(count: int) -> list[StockChanged]:
    """``count`` receipts of one unit, each of another variant (a bulk stock load)."""
    return [
        StockChanged(
            variant_id=n,
            location_id=1,
            on_hand=1,
            reserved=0,
            safety_stock=0,
            available=1,
            incoming=0,
            reason="receipt",
            on_hand_delta=1,
            reserved_delta=0,
        )
        for n in range(count)
    ]


def _count(db: Database) -> int:
    with db.read() as session:
        return int(session.scalar(select(func.count()).select_from(OutboxEvent)) or 0)


def test_event_is_stored_only_when_its_transaction_commits(db: Database) -> None:
    with pytest.raises(RuntimeError), db.transaction() as session:
        record_event(session, "product.updated", {"id": 1})
        raise RuntimeError("business rule failed after publishing")
    assert _count(db) == 0

    with db.transaction() as session:
        record_event(session, "product.updated", {"id": 2})
    assert _count(db) == 1


def test_dispatcher_delivers_committed_events_once_in_order(db: Database) -> None:
    dispatcher = Dispatcher(db)
    seen: list[tuple[str, int]] = []
    dispatcher.subscribe("stock.*", lambda s, e: seen.append((e.type, e.data["n"])))
    with db.transaction() as session:
        record_event(session, "stock.changed", {"n": 1})
        record_event(session, "order.placed", {"n": 2})
        record_event(session, "stock.low", {"n": 3})
    assert dispatcher.drain() == 3
    assert seen == [("stock.changed", 1), ("stock.low", 3)]
    assert dispatcher.drain() == 0
    assert seen == [("stock.changed", 1), ("stock.low", 3)]


def test_rolled_back_event_never_reaches_subscribers(db: Database) -> None:
    dispatcher = Dispatcher(db)
    seen: list[Event] = []
    dispatcher.subscribe("*", lambda s, e: seen.append(e))
    with pytest.raises(ValueError), db.transaction() as session:
        record_event(session, "order.placed", {"order_id": 1})
        raise ValueError("payment declined")
    dispatcher.drain()
    assert seen == []


def test_failing_subscriber_leaves_event_for_retry_and_rolls_back_its_writes(db: Database) -> None:
    dispatcher = Dispatcher(db)
    calls = {"n": 0}

    def flaky(session: Session, event: Event) -> None:
        calls["n"] += 1
        record_event(session, "side.effect", {})
        if calls["n"] == 1:
            raise RuntimeError("downstream unavailable")

    dispatcher.subscribe("order.placed", flaky)
    with db.transaction() as session:
        record_event(session, "order.placed", {"order_id": 7})
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
        record_event(session, "steady.done", {})

    def flaky(session: Session, event: Event) -> None:
        calls["flaky"] += 1
        if calls["flaky"] == 1:
            raise RuntimeError("downstream unavailable")

    dispatcher.subscribe("order.placed", steady)
    dispatcher.subscribe("order.*", flaky)
    with db.transaction() as session:
        record_event(session, "order.placed", {"order_id": 8})
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
            record_event(session, "thing.happened", {"n": n})
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
            record_event(session, "x.y", {})
        assert woken == [True]
    finally:
        db.wake_hook = None


def _expire_leases(db: Database) -> None:
    with db.transaction() as session:
        session.execute(update(OutboxEvent).values(claimed_until=utcnow() - timedelta(seconds=1)))


def test_a_dispatcher_never_delivers_an_event_whose_claim_it_lost(db: Database) -> None:
    """The first dispatcher's lease runs out before it delivers its batch and the second
    claims the events: the first skips them, each is delivered once."""
    first, second = Dispatcher(db), Dispatcher(db)
    seen: list[tuple[str, int]] = []
    first.subscribe("*", lambda s, e: seen.append(("first", e.data["n"])))
    second.subscribe("*", lambda s, e: seen.append(("second", e.data["n"])))
    with db.transaction() as session:
        for n in range(6):
            record_event(session, "thing.happened", {"n": n})
    batch = first._claim(10)
    assert len(batch) == 6
    assert first._deliver_batch(batch[:2]) == 2  # then the first stalls past its lease
    _expire_leases(db)
    taken = second._claim(10)
    assert sorted(taken) == sorted(batch[2:])

    assert first._deliver_batch(batch[2:]) == 0
    assert second._deliver_batch(taken) == 4
    assert sorted(n for _, n in seen) == list(range(6))
    assert [who for who, _ in seen] == ["first"] * 2 + ["second"] * 4
    assert second.drain() == 0


def test_an_expired_lease_nobody_took_over_is_still_delivered_once(db: Database) -> None:
    dispatcher = Dispatcher(db)
    seen: list[int] = []
    dispatcher.subscribe("*", lambda s, e: seen.append(e.data["n"]))
    with db.transaction() as session:
        record_event(session, "thing.happened", {"n": 1})
    batch = dispatcher._claim(10)
    _expire_leases(db)
    assert dispatcher._deliver_batch(batch) == 1
    assert dispatcher.drain() == 0
    assert seen == [1]


@pytest.mark.slow
def test_urgent_events_are_claimed_before_a_backlog_of_bulk_ones(db: Database) -> None:
    dispatcher = Dispatcher(db)
    seen: list[str] = []
    dispatcher.subscribe("*", lambda s, e: seen.append(e.type))
    with db.transaction() as session:
        publish_many(session, _stock_changes(300))
        record_event(session, "customer.updated", {"id": 1})
        record_event(session, "order.confirmed", {"order_id": 1})
        record_event(session, "order.routed", {"order_id": 1})
    assert dispatcher.drain() == 303
    assert seen[:3] == ["order.confirmed", "order.routed", "customer.updated"]
    assert seen[3:] == ["stock.changed"] * 300


@pytest.mark.slow
def test_an_order_confirmed_while_a_backlog_drains_waits_one_batch_at_most(db: Database) -> None:
    dispatcher = Dispatcher(db)
    seen: list[str] = []

    def bulk(session: Session, event: Event) -> None:
        seen.append(event.type)
        if len(seen) == 10:  # an order is confirmed while the backlog drains
            record_event(session, "order.confirmed", {"order_id": 1})

    dispatcher.subscribe("stock.changed", bulk)
    dispatcher.subscribe("order.confirmed", lambda s, e: seen.append(e.type))
    with db.transaction() as session:
        publish_many(session, _stock_changes(1000))
    dispatcher.drain()
    assert len(seen) == 1001
    assert seen.index("order.confirmed") <= 10 + BATCH_SIZE


def test_lanes_of_event_types() -> None:
    assert lane_of("order.confirmed") == lane_of("payment.captured") == URGENT
    assert lane_of("stock.changed") == lane_of("product.created") == BULK
    assert lane_of("customer.merged") == lane_of("thing.happened") == NORMAL


def test_events_recorded_without_delivery_stay_in_the_log_and_reach_nobody(
    db: Database,
) -> None:
    dispatcher = Dispatcher(db)
    seen: list[str] = []
    dispatcher.subscribe("*", lambda s, e: seen.append(e.type))
    woken: list[bool] = []
    db.wake_hook = lambda: woken.append(True)
    try:
        with db.transaction() as session:
            record_without_delivery(session)
            record_event(session, "location.created", {"id": 1})
            with pytest.raises(RuntimeError), session.begin_nested():
                raise RuntimeError("a savepoint rolls back; the transaction goes on")
            publish_many(session, _stock_changes(3))
        with db.transaction() as session:
            record_event(session, "order.confirmed", {"order_id": 1})  # a later transaction
    finally:
        db.wake_hook = None
    assert woken == [True]  # the later transaction only
    assert dispatcher.drain() == 1
    assert seen == ["order.confirmed"]
    with db.read() as session:
        rows = session.scalars(select(OutboxEvent)).all()
        expected = ["location.created", "order.confirmed", *["stock.changed"] * 3]
        assert sorted(r.type for r in rows) == expected
        assert all(r.dispatched_at is not None for r in rows)


def test_a_rolled_back_savepoint_keeps_the_wake_up_of_the_transaction(db: Database) -> None:
    woken: list[bool] = []
    db.wake_hook = lambda: woken.append(True)
    try:
        with db.transaction() as session:
            record_event(session, "order.confirmed", {"order_id": 1})
            with pytest.raises(RuntimeError), session.begin_nested():
                record_event(session, "order.cancelled", {"order_id": 1})
                raise RuntimeError("this part rolls back")
    finally:
        db.wake_hook = None
    assert woken == [True]
    with db.read() as session:
        assert list(session.scalars(select(OutboxEvent.type))) == ["order.confirmed"]


def test_an_event_whose_delivery_cannot_commit_does_not_hold_up_its_batch(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    dispatcher = Dispatcher(db)
    seen: list[int] = []
    dispatcher.subscribe("*", lambda s, e: seen.append(e.data["n"]))
    with db.transaction() as session:
        for n in range(3):
            record_event(session, "thing.happened", {"n": n})
    deliver_one = dispatcher._deliver_one

    def lose_the_first(session: Session, row: OutboxEvent) -> None:
        if row.data["n"] == 0:
            raise RuntimeError("connection lost while committing")
        deliver_one(session, row)

    monkeypatch.setattr(dispatcher, "_deliver_one", lose_the_first)
    assert dispatcher.drain() == 2
    assert seen == [1, 2]
    with db.read() as session:
        waiting = session.scalars(select(OutboxEvent).where(OutboxEvent.dispatched_at.is_(None)))
        assert [row.data["n"] for row in waiting] == [0]  # claimed again once its lease ends
