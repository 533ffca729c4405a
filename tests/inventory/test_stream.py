"""The real-time stock feed: a POS sale reaches a storefront's open stream at once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mercato.auth.principal import Principal
from mercato.db import Database
from mercato.inventory import service as inventory
from mercato.inventory.stream import StockStream
from tests.inventory.conftest import World

pytestmark = pytest.mark.slow

Stock = Callable[[int, int, int], None]


def _events(lines: Iterator[str]) -> Iterator[tuple[str, dict[str, object]]]:
    name = ""
    for line in lines:
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            yield name, json.loads(line[6:])


def test_stream_sends_snapshot_then_changes(
    client: TestClient, db: Database, world: World, stock: Stock
) -> None:
    v, other = world.variants[:2]
    stock(v, world.store_a, 5)
    headers = {"X-Channel-Key": world.channel_key}
    with client.stream(
        "GET", f"/v1/store/stock/stream?variant_ids={v}", headers=headers
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = _events(response.iter_lines())
        name, snapshot = next(events)
        assert name == "snapshot" and snapshot == {"available": {str(v): 5}}
        with db.transaction() as session:
            ctx = inventory.Context(Principal.system("pos"), reference_type="pos-sale")
            # A change of another variant is filtered out; the POS sale of ours arrives.
            inventory.adjust(
                session,
                ctx,
                world.store_a,
                [inventory.AdjustmentLine(other, 3, inventory.Reason.RECEIPT)],
            )
            inventory.adjust(
                session,
                ctx,
                world.store_a,
                [inventory.AdjustmentLine(v, -2, inventory.Reason.SALE)],
            )
        name, change = next(events)
        assert name == "stock"
        assert change["variant_id"] == v and change["location_id"] == world.store_a
        assert change["available"] == 3 and change["channel_available"] == 3
        assert change["reason"] == "sale"


def test_stream_needs_a_channel_key(client: TestClient) -> None:
    response = client.get("/v1/store/stock/stream")
    assert response.status_code == 401


# --- no change is lost between the snapshot and the stream ----------------------------------


def _sale(db: Database, location: int, variant: int, quantity: int = 1) -> None:
    with db.transaction() as session:
        ctx = inventory.Context(Principal.system("pos"))
        inventory.adjust(
            session,
            ctx,
            location,
            [inventory.AdjustmentLine(variant, -quantity, inventory.Reason.SALE)],
        )


async def _frames(body: AsyncIterator[str], wanted: int) -> list[tuple[int | None, str, Any]]:
    """The first ``wanted`` snapshot/stock frames as (id, event, data)."""
    found: list[tuple[int | None, str, Any]] = []
    while len(found) < wanted:
        raw = await asyncio.wait_for(body.__anext__(), 10)
        fields = dict(
            line.split(": ", 1) for line in raw.strip().splitlines() if not line.startswith(":")
        )
        if "event" in fields:
            ident = int(fields["id"]) if "id" in fields else None
            found.append((ident, fields["event"], json.loads(fields["data"])))
    return found


def test_a_change_between_snapshot_and_stream_is_delivered(
    db: Database, world: World, stock: Stock
) -> None:
    v = world.variants[0]
    stock(v, world.store_a, 10)

    async def scenario() -> list[tuple[int | None, str, Any]]:
        stream = StockStream(db, poll_seconds=0.01)
        try:
            sub = await stream.subscribe(frozenset(world.locations), frozenset([v]))
            with db.read() as session:
                snapshot = inventory.availability(session, [v], world.locations)
            # Committed after the snapshot was read, before the stream is consumed: the
            # poller must not start past it.
            _sale(db, world.store_a, v, 3)
            return await _frames(stream.events(sub, snapshot), 2)
        finally:
            await stream.stop()

    (snap_id, snap_name, snap), *changes = asyncio.run(scenario())
    assert (snap_id, snap_name, snap) == (None, "snapshot", {"available": {str(v): 10}})
    [(ident, name, change)] = changes
    assert name == "stock" and ident is not None
    assert change["reason"] == "sale" and change["available"] == 7
    assert change["channel_available"] == 7


def test_a_change_committing_late_with_a_lower_id_is_delivered(
    backend: str, db: Database, world: World, stock: Stock
) -> None:
    """PostgreSQL hands out outbox ids at insert: a slow transaction's change can commit
    after a newer one and after the snapshot, and still belongs in the stream."""
    if backend != "postgresql":
        pytest.skip("SQLite writers are serialised: ids are handed out in commit order")
    v, w = world.variants[:2]
    stock(v, world.store_a, 10)
    stock(w, world.store_b, 10)

    async def scenario() -> list[tuple[int | None, str, Any]]:
        stream = StockStream(db, poll_seconds=0.01)
        try:
            with db.transaction() as slow:
                inventory.adjust(
                    slow,
                    inventory.Context(Principal.system("pos")),
                    world.store_a,
                    [inventory.AdjustmentLine(v, -4, inventory.Reason.SALE)],
                )
                _sale(db, world.store_b, w, 1)  # a newer id, committed first
                sub = await stream.subscribe(frozenset(world.locations), frozenset([v]))
                with db.read() as session:
                    snapshot = inventory.availability(session, [v], world.locations)
            return await _frames(stream.events(sub, snapshot), 2)
        finally:
            await stream.stop()

    (_, _, snap), (ident, name, change) = asyncio.run(scenario())
    assert snap == {"available": {str(v): 10}}
    assert name == "stock" and ident is not None
    assert change["variant_id"] == v and change["available"] == 6


def test_stock_events_carry_ids_over_http(
    client: TestClient, db: Database, world: World, stock: Stock
) -> None:
    v = world.variants[0]
    stock(v, world.store_a, 5)
    headers = {"X-Channel-Key": world.channel_key}
    with client.stream(
        "GET", f"/v1/store/stock/stream?variant_ids={v}", headers=headers
    ) as response:
        lines = response.iter_lines()
        assert next(lines).startswith("retry: ")
        while not next(lines).startswith("event: snapshot"):
            pass
        _sale(db, world.store_a, v)
        _sale(db, world.store_a, v)
        ids = []
        while len(ids) < 2:
            line = next(lines)
            if line.startswith("id: "):
                ids.append(int(line[4:]))
                assert next(lines) == "event: stock"
    assert ids[0] < ids[1]


def test_a_subscriber_that_falls_behind_is_ended_not_silently_skipped(
    db: Database, world: World, stock: Stock
) -> None:
    v = world.variants[0]
    stock(v, world.store_a, 10)

    async def scenario() -> list[str]:
        stream = StockStream(db, poll_seconds=0.01)
        try:
            sub = await stream.subscribe(frozenset(world.locations), frozenset([v]))
            sub.queue = asyncio.Queue(1)  # room for one change only
            for _ in range(3):
                _sale(db, world.store_a, v)
            while not sub.overflowed:
                await asyncio.sleep(0.01)
            frames = [frame async for frame in stream.events(sub, {v: 10})]
            assert sub not in stream.subscribers
            return frames
        finally:
            await stream.stop()

    frames = asyncio.run(asyncio.wait_for(scenario(), 20))
    names = [line for frame in frames for line in frame.splitlines() if line.startswith("event")]
    # The stream ends instead of going on with a gap; reconnecting gives a fresh snapshot.
    assert names == ["event: snapshot"]
