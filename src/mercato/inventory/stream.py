"""Real-time stock for storefronts and POS: a Server-Sent Events feed of stock changes.

Every API process runs one poller that reads new ``stock.changed`` rows from the outbox
(the outbox is shared, so a change committed by any process reaches every process's
subscribers) and fans them out to the subscribers of that process. Each subscriber gets
the changes of its channel's locations, for the variants it asked for, with the
channel-wide availability recomputed in one query per poll.

Outbox ids are assigned when a transaction inserts, not when it commits, so a row with a
lower id can appear after a higher one. The poller therefore re-reads a short time window
(``SETTLE``) and remembers which ids it has already sent.
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

from sqlalchemy import func, select
from starlette.concurrency import run_in_threadpool

from mercato.db import Database, utcnow
from mercato.events import OutboxEvent
from mercato.inventory import service

log = logging.getLogger(__name__)

SETTLE = timedelta(seconds=5)
HEARTBEAT_SECONDS = 15.0


@dataclass(eq=False)
class Subscriber:
    location_ids: frozenset[int]
    variant_ids: frozenset[int] | None
    queue: asyncio.Queue[dict[str, Any]] = field(default_factory=lambda: asyncio.Queue(1000))

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

    def _start_position(self) -> int:
        with self.database.read() as session:
            return int(session.scalar(select(func.max(OutboxEvent.id))) or 0)

    def _poll(
        self, location_sets: list[frozenset[int]]
    ) -> tuple[list[dict[str, Any]], dict[frozenset[int], dict[int, int]]]:
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
        return [d for _, d in fresh], totals

    # --- fan-out ---------------------------------------------------------------------

    async def _run(self) -> None:
        self._floor = await run_in_threadpool(self._start_position)
        while self.subscribers:
            try:
                sets = list({s.location_ids for s in self.subscribers})
                changes, totals = await run_in_threadpool(self._poll, sets)
                for data in changes:
                    for sub in list(self.subscribers):
                        if sub.wants(data):
                            event = {
                                **data,
                                "channel_available": totals.get(sub.location_ids, {}).get(
                                    data["variant_id"], 0
                                ),
                            }
                            with contextlib.suppress(asyncio.QueueFull):
                                sub.queue.put_nowait(event)
            except Exception:  # a database hiccup must not end every stream
                log.exception("stock stream poll failed")
            await asyncio.sleep(self.poll_seconds)
        self._task = None

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def events(
        self,
        location_ids: frozenset[int],
        variant_ids: frozenset[int] | None,
        snapshot: dict[int, int],
    ) -> AsyncIterator[str]:
        """The SSE body: a snapshot of current availability, then every change."""
        sub = Subscriber(location_ids, variant_ids)
        self.subscribers.add(sub)
        self._ensure_running()
        try:
            yield _frame("snapshot", {"available": {str(k): v for k, v in snapshot.items()}})
            while True:
                try:
                    event = await asyncio.wait_for(sub.queue.get(), HEARTBEAT_SECONDS)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                yield _frame("stock", event)
        finally:
            self.subscribers.discard(sub)

    async def stop(self) -> None:
        self.subscribers.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None


def _frame(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
