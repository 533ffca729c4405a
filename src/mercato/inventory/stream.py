"""Real-time stock for storefronts and POS: a Server-Sent Events feed of stock changes.

Every API process runs one poller that reads new ``stock.changed`` rows from the outbox
(the outbox is shared, so a change committed by any process reaches every process's
subscribers) and fans them out to the subscribers of that process. Each subscriber gets
the changes of its channel's locations, for the variants it asked for, with the
channel-wide availability recomputed in one query per poll.

Outbox ids are assigned when a transaction inserts, not when it commits, so a row with a
lower id can appear after a higher one. The poller therefore re-reads a short time window
(``SETTLE``) and remembers which ids it has already sent.

A new subscriber is registered before its snapshot is read, and a poller that starts for
it starts ``SETTLE`` back in the outbox (skipping what is already committed): every change
committed after the snapshot reaches the stream. A change committed while the snapshot is
read may come as well; each ``stock`` event carries its outbox id as the SSE ``id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from mercato.db import Database, utcnow
from mercato.events import OutboxEvent
from mercato.inventory import service

log = logging.getLogger(__name__)

SETTLE = timedelta(seconds=5)
HEARTBEAT_SECONDS = 15.0
# What a browser's EventSource waits before reconnecting (it then gets a fresh snapshot).
RETRY_MS = 3000
# How far back a starting poller looks for the start of the SETTLE window.
_START_SCAN_ROWS = 1000
_START_SCAN_CHUNKS = 50


@dataclass(eq=False)
class Subscriber:
    location_ids: frozenset[int]
    variant_ids: frozenset[int] | None
    queue: asyncio.Queue[tuple[int, dict[str, Any]]] = field(
        default_factory=lambda: asyncio.Queue(1000)
    )
    # Set when a change found the queue full: the stream ends rather than go on without
    # it, and the client's reconnection starts from a fresh snapshot.
    overflowed: bool = False

    def wants(self, data: dict[str, Any]) -> bool:
        if data.get("location_id") not in self.location_ids:
            return False
        return self.variant_ids is None or data.get("variant_id") in self.variant_ids


class StockStream:
    def __init__(self, database: Database, poll_seconds: float = 0.25) -> None:
        self.database = database
        self.poll_seconds = poll_seconds
        self.subscribers: set[Subscriber] = set()
        self._task: asyncio.Task[None] | None = None
        self._floor: int | None = None
        self._sent: set[int] = set()

    # --- reading the outbox (runs in a worker thread) ----------------------------------

    def _start_position(self) -> tuple[int, set[int]]:
        """Where a starting poller begins: the newest outbox id older than ``SETTLE``, and
        the ids after it that are committed already.

        A change still committing may have a lower id than the newest committed one, so
        the poller starts behind the window; what is committed now is in every snapshot
        read after this, so it counts as sent (subscribers get no stale replays).
        """
        cutoff = utcnow() - SETTLE
        upper: int | None = None
        committed: set[int] = set()
        with self.database.read() as session:
            for _ in range(_START_SCAN_CHUNKS):
                query = select(OutboxEvent.id, OutboxEvent.occurred_at).order_by(
                    OutboxEvent.id.desc()
                )
                if upper is not None:
                    query = query.where(OutboxEvent.id < upper)
                rows = session.execute(query.limit(_START_SCAN_ROWS)).all()
                for outbox_id, occurred in rows:
                    if occurred < cutoff:
                        return int(outbox_id), committed
                    committed.add(int(outbox_id))
                if len(rows) < _START_SCAN_ROWS:
                    return 0, committed
                upper = int(rows[-1][0])
            # Tens of thousands of events within SETTLE: start at the oldest one seen.
            return (upper or 1) - 1, committed

    def _poll(
        self, location_sets: list[frozenset[int]]
    ) -> tuple[list[tuple[int, dict[str, Any]]], dict[frozenset[int], dict[int, int]]]:
        assert self._floor is not None
        settled_before = utcnow() - SETTLE
        with self.database.read() as session:
            rows = session.execute(
                select(OutboxEvent.id, OutboxEvent.data, OutboxEvent.occurred_at)
                .where(OutboxEvent.type == "stock.changed", OutboxEvent.id > self._floor)
                .order_by(OutboxEvent.id)
                .limit(5000)
            ).all()
            fresh = [(i, d) for i, d, _ in rows if i not in self._sent]
            for i, _, occurred in rows:
                if occurred < settled_before:
                    self._floor = max(self._floor, i)
            self._sent = {i for i in self._sent if i > self._floor}
            self._sent.update(i for i, _ in fresh)
            variants = {int(d["variant_id"]) for _, d in fresh}
            totals = (
                {
                    places: service.availability(session, variants, places)
                    for places in location_sets
                }
                if variants
                else {}
            )
        return fresh, totals

    # --- fan-out ---------------------------------------------------------------------

    async def _run(self) -> None:
        while self.subscribers:
            try:
                sets = list({s.location_ids for s in self.subscribers})
                changes, totals = await run_in_threadpool(self._poll, sets)
                for outbox_id, data in changes:
                    for sub in list(self.subscribers):
                        if sub.wants(data):
                            event = {
                                **data,
                                "channel_available": totals.get(sub.location_ids, {}).get(
                                    data["variant_id"], 0
                                ),
                            }
                            try:
                                sub.queue.put_nowait((outbox_id, event))
                            except asyncio.QueueFull:
                                # Its stream ends at its next read; dropping it here also
                                # frees one whose response never started reading.
                                sub.overflowed = True
                                self.subscribers.discard(sub)
            except Exception:  # a database hiccup must not end every stream
                log.exception("stock stream poll failed")
            await asyncio.sleep(self.poll_seconds)
        self._task = None
        self._floor = None

    async def _ensure_running(self) -> None:
        if self._task is not None and not self._task.done():
            return
        floor, committed = await run_in_threadpool(self._start_position)
        # Another subscriber may have started the poller meanwhile; its start is as good
        # (this subscriber reads its snapshot after that start either way).
        if self._task is None or self._task.done():
            self._floor = floor
            self._sent = committed
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def subscribe(
        self, location_ids: frozenset[int], variant_ids: frozenset[int] | None
    ) -> Subscriber:
        """Register before reading the snapshot: nothing committed after it can be missed."""
        sub = Subscriber(location_ids, variant_ids)
        self.subscribers.add(sub)
        try:
            await self._ensure_running()
        except BaseException:
            self.subscribers.discard(sub)
            raise
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    async def events(self, sub: Subscriber, snapshot: dict[int, int]) -> AsyncIterator[str]:
        """The SSE body: the snapshot, then every change after it (each with its id)."""
        try:
            yield f"retry: {RETRY_MS}\n\n"
            yield _frame("snapshot", {"available": {str(k): v for k, v in snapshot.items()}})
            while not sub.overflowed:
                try:
                    outbox_id, event = await asyncio.wait_for(sub.queue.get(), HEARTBEAT_SECONDS)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                yield _frame("stock", event, outbox_id)
        finally:
            self.unsubscribe(sub)

    async def stop(self) -> None:
        self.subscribers.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        self._floor = None


def _frame(event: str, data: dict[str, Any], event_id: int | None = None) -> str:
    head = "" if event_id is None else f"id: {event_id}\n"
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
