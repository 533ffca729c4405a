"""An order is routed once, however many times and by however many processes its
``order.confirmed`` event is delivered: the dispatcher never delivers an event whose claim
it lost, and the routing subscriber takes the order's row before looking for an earlier
decision."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from mercato.app import create_app
from mercato.db import Database, utcnow
from mercato.events import Dispatcher, Event, OutboxEvent
from mercato.fulfillment import routing
from mercato.fulfillment import service as fulfillment
from mercato.fulfillment.models import FulfillmentLine, FulfillmentOrder, RoutingDecision
from mercato.inventory import service as inventory
from mercato.settings import Settings
from tests.commerce.conftest import DemoWorld
from tests.fulfillment.conftest import drain, item, place

pytestmark = pytest.mark.slow

MUNICH = {
    "name": "Jonas Weber",
    "line1": "Marienplatz 1",
    "city": "München",
    "postal_code": "80331",
    "country": "DE",
    "latitude": 48.137,
    "longitude": 11.575,
}
UNITS = 3


def _confirmed_orders(world: DemoWorld, count: int) -> list[dict[str, Any]]:
    """Orders paid and confirmed whose events wait in the outbox (nobody dispatched them)."""
    drain(world)  # what earlier tests left, so that only these orders' events wait
    variant = item(world, {"WH-FRA": 500}, {"EU": {"EUR": "30.00"}})
    line = {"variant_id": variant, "quantity": UNITS}
    return [
        place(world, "web-de", [line], address=MUNICH, dispatch=False) for _ in range(count)
    ]


def _routing_of(world: DemoWorld, order: dict[str, Any]) -> tuple[int, int, int]:
    """(decisions, units allocated, units in open tasks) of an order."""
    with world.database.read() as session:
        decisions = session.scalar(
            select(func.count())
            .select_from(RoutingDecision)
            .where(RoutingDecision.order_id == order["id"])
        )
        allocated = sum(
            r.quantity for r in inventory.active_reservations_for(session, "order", order["number"])
        )
        tasked = session.scalar(
            select(func.coalesce(func.sum(FulfillmentLine.quantity), 0))
            .join(FulfillmentOrder, FulfillmentOrder.id == FulfillmentLine.fulfillment_order_id)
            .where(FulfillmentOrder.order_id == order["id"], FulfillmentLine.status == "open")
        )
    return int(decisions or 0), allocated, int(tasked or 0)


def _confirmed_event(world: DemoWorld, order_id: int) -> Event:
    with world.database.read() as session:
        row = session.scalars(
            select(OutboxEvent).where(
                OutboxEvent.type == "order.confirmed", OutboxEvent.aggregate_id == str(order_id)
            )
        ).one()
        return Event.from_row(row)


def _deliver(world: DemoWorld, event: Event) -> None:
    """One delivery of the event to the routing subscriber, in a transaction of its own."""
    with world.database.transaction() as session:
        fulfillment.on_order_confirmed(session, int(event.data["order_id"]))


def test_an_order_confirmed_delivered_twice_is_routed_once(demo_world: DemoWorld) -> None:
    [order] = _confirmed_orders(demo_world, 1)
    event = _confirmed_event(demo_world, order["id"])

    _deliver(demo_world, event)
    _deliver(demo_world, event)

    assert _routing_of(demo_world, order) == (1, UNITS, UNITS)


def test_two_deliveries_at_once_route_once(
    demo_world: DemoWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both deliveries would pass the check for an earlier decision before either stored
    one; the order's row makes the second wait for the first and find its decision."""
    [order] = _confirmed_orders(demo_world, 1)
    event = _confirmed_event(demo_world, order["id"])
    both_routing = threading.Barrier(2, timeout=1.5)
    open_needs = routing._open_needs

    def meet_then_read(*args: Any, **kwargs: Any) -> Any:
        # Both arrive here together only when nothing orders the two deliveries.
        with contextlib.suppress(threading.BrokenBarrierError):
            both_routing.wait()
        return open_needs(*args, **kwargs)

    monkeypatch.setattr(routing, "_open_needs", meet_then_read)
    errors: list[BaseException] = []

    def deliver() -> None:
        try:
            _deliver(demo_world, event)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert _routing_of(demo_world, order) == (1, UNITS, UNITS)


def test_a_second_initial_decision_for_an_order_is_refused(demo_world: DemoWorld) -> None:
    [order] = _confirmed_orders(demo_world, 1)
    _deliver(demo_world, _confirmed_event(demo_world, order["id"]))
    with pytest.raises(IntegrityError), demo_world.database.transaction() as session:
        session.add(
            RoutingDecision(
                order_id=order["id"],
                trigger="initial",
                excluded_location_ids=[],
                plan=[],
                unfilled=[],
                cost=0,
                shipments=0,
                explanation="a second initial routing",
                actor_type="system",
                created_at=utcnow(),
            )
        )
    assert _routing_of(demo_world, order)[0] == 1


def _dispatcher(world: DemoWorld, tmp_path: Path, lease: timedelta) -> tuple[Dispatcher, Database]:
    """A second process's dispatcher: its own engine and connections, the app's subscribers,
    a short lease, batches as large as the backlog."""
    database = Database(world.database.url)
    settings = Settings(data_dir=tmp_path, dispatcher_enabled=False)
    dispatcher: Dispatcher = create_app(settings, database=database).state.dispatcher
    dispatcher.lease = lease
    dispatcher.batch_size = 500
    return dispatcher, database


def _until(done: Callable[[], bool], stop: threading.Event, dispatcher: Dispatcher) -> None:
    while not stop.is_set() and not done():
        dispatcher.drain()
        time.sleep(0.02)


def test_two_dispatchers_drain_a_backlog_while_leases_run_out(
    demo_world: DemoWorld, tmp_path: Path
) -> None:
    """Each dispatcher claims what it can with a lease shorter than its batch takes to
    deliver, so the other one claims the rest of the batch meanwhile: every event is still
    delivered once, every order routed once with its units allocated once."""
    orders = _confirmed_orders(demo_world, 16)
    lease = timedelta(milliseconds=300)
    delivered: list[tuple[str, str]] = []
    record_lock = threading.Lock()
    stop = threading.Event()
    dispatchers: list[tuple[str, Dispatcher, Database]] = []
    for name in ("first", "second"):
        dispatcher, database = _dispatcher(demo_world, tmp_path / name, lease)

        def record(session: Any, event: Event, name: str = name) -> None:
            with record_lock:
                delivered.append((name, event.id))

        def slow_routing(session: Any, event: Event) -> None:
            time.sleep(0.05)  # a batch of 16 takes longer than the lease

        dispatcher.subscribe("*", record)
        dispatcher.subscribe("order.confirmed", slow_routing)
        dispatchers.append((name, dispatcher, database))
    confirmed = {_confirmed_event(demo_world, o["id"]).id for o in orders}

    def all_routed() -> bool:
        with record_lock:
            return confirmed <= {event_id for _, event_id in delivered}

    threads = [
        threading.Thread(target=_until, args=(all_routed, stop, dispatcher))
        for _, dispatcher, _ in dispatchers
    ]
    try:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 120
        while not all_routed() and time.monotonic() < deadline:
            time.sleep(0.05)
        for _, dispatcher, _ in dispatchers:
            dispatcher.drain()  # what the routings published (order.routed, tasks)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        for _, _, database in dispatchers:
            database.dispose()

    ids = [event_id for _, event_id in delivered]
    assert len(ids) == len(set(ids)), "an event was delivered twice"
    assert confirmed <= set(ids)
    if demo_world.database.dialect == "postgresql":
        # The leases did run out: the second dispatcher delivered part of what the first
        # claimed. (SQLite runs one writer at a time: on a busy machine one dispatcher may
        # well deliver everything between the other's attempts.)
        assert {name for name, _ in delivered} == {"first", "second"}
    for order in orders:
        assert _routing_of(demo_world, order) == (1, UNITS, UNITS), order["number"]
