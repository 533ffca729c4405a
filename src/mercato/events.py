"""Transactional outbox and in-process event dispatcher.

``publish()`` adds an outbox row in the caller's session, so the event exists if and
only if the business change commits. After commit the dispatcher is woken; it claims
undispatched rows (a lease under its own claim token, so several processes can share one
outbox), hands each event to the in-process subscribers in a transaction of its own and
marks it dispatched. That transaction first re-takes the event's row on the condition that
the claim is still this dispatcher's: an event whose lease ran out and was claimed by
another process is skipped, never delivered by both. Events are claimed by lane (order
life cycle first, bulk catalogue and stock changes last), so a backlog of bulk events
never holds up an order's routing.
An event's in-process reactions thus commit once, with the mark that it was dispatched.
Subscribers that create things still lock what they change and check under that lock: a
handler may also be called outside the dispatcher, and a retry runs the failed ones again.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    event,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from mercato import event_types
from mercato.db import Base, BigIntPK, JSONType, UTCDateTime, utcnow
from mercato.event_types import DomainEvent

if TYPE_CHECKING:
    from mercato.db import Database

log = logging.getLogger(__name__)

ENVELOPE_VERSION = 1
LEASE = timedelta(seconds=30)
MAX_ATTEMPTS = 10
# Events claimed at once: small enough that a batch is delivered well within its lease
# and that an urgent event published meanwhile waits for a few dozen deliveries at most.
BATCH_SIZE = 50

# Lanes: the dispatcher claims the lowest lane first (by id within a lane, so the events of
# one order keep their order). What customers wait for (an order routed, a payment
# settled) is urgent; catalogue, price and stock changes arrive by the thousand from
# imports and nobody waits on their reactions.
URGENT, NORMAL, BULK = 0, 1, 2
LANES: dict[str, int] = {
    "order": URGENT,
    "payment": URGENT,
    "fulfillment": URGENT,
    "shipment": URGENT,
    "stock": BULK,
    "product": BULK,
    "category": BULK,
    "prices": BULK,
}


def lane_of(type: str) -> int:
    """The lane of an event type, from its first part (``order.confirmed`` -> urgent)."""
    return LANES.get(type.split(".", 1)[0], NORMAL)


class OutboxEvent(Base):
    __tablename__ = "outbox_events"
    __table_args__ = (
        # The undispatched rows only, in the order they are claimed.
        Index(
            "ix_outbox_events_due",
            "priority",
            "id",
            postgresql_where=text("dispatched_at IS NULL"),
            sqlite_where=text("dispatched_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    type: Mapped[str] = mapped_column(String(80), index=True)
    version: Mapped[int] = mapped_column(Integer, default=ENVELOPE_VERSION)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    aggregate_type: Mapped[str | None] = mapped_column(String(40))
    aggregate_id: Mapped[str | None] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(JSONType)
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The dispatcher holding the lease: only it may deliver the event (see Dispatcher).
    claim_token: Mapped[str | None] = mapped_column(String(32))
    # The lane (URGENT, NORMAL, BULK): lower lanes are claimed first.
    priority: Mapped[int] = mapped_column(SmallInteger, default=NORMAL, server_default=text("1"))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    # Subscribers that already handled the event while another one failed: a retry runs
    # only the rest, so one domain's failing handler neither blocks nor repeats the others.
    handled: Mapped[list[str] | None] = mapped_column(JSONType)


@dataclass(frozen=True)
class Event:
    """The documented envelope every consumer sees: id, type, time, version, data."""

    id: str
    type: str
    time: datetime
    version: int
    data: dict[str, Any]
    aggregate_type: str | None = None
    aggregate_id: str | None = None

    def envelope(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "time": self.time.isoformat(),
            "version": self.version,
            "data": self.data,
        }

    def typed(self) -> DomainEvent:
        """This event as its class in the catalog (what typed subscribers receive)."""
        return event_types.typed(self)

    @classmethod
    def from_row(cls, row: OutboxEvent) -> Event:
        return cls(
            id=row.event_id,
            type=row.type,
            time=row.occurred_at,
            version=row.version,
            data=row.data,
            aggregate_type=row.aggregate_type,
            aggregate_id=row.aggregate_id,
        )


Handler = Callable[[Session, Event], None]


@dataclass
class _PeriodicJob:
    name: str
    every_seconds: float
    job: Callable[[Any], object]
    next_run: float = 0.0
    raw: bool = False


def publish(session: Session, event: DomainEvent) -> Event:
    """Record an event in the caller's transaction. It is dispatched only after commit.

    Events wait in the session and are written in one INSERT just before the transaction
    commits (a request publishing ten events costs one statement, not ten); events
    published inside a savepoint that rolls back are dropped with it.
    """
    return record_event(
        session,
        event.TYPE,
        event.data(),
        version=event.VERSION,
        aggregate_type=event.aggregate_kind(),
        aggregate_id=event.aggregate_id(),
    )


def record_event(
    session: Session,
    type: str,
    data: dict[str, Any],
    *,
    version: int = ENVELOPE_VERSION,
    aggregate_type: str | None = None,
    aggregate_id: str | int | None = None,
) -> Event:
    """The outbox primitive beneath :func:`publish`: an envelope of any type and payload.

    Domain code publishes typed events (the layer test refuses this primitive outside the
    outbox); it exists for the outbox's own machinery and its tests.
    """
    event_id, occurred_at = str(uuid.uuid4()), utcnow()
    key = None if aggregate_id is None else str(aggregate_id)
    row = _outbox_row(session, event_id, type, occurred_at, aggregate_type, key, data)
    row["version"] = version
    session.info.setdefault(_PENDING, []).append(row)
    _count_published(session, 1)
    return Event(event_id, type, occurred_at, version, data, aggregate_type, key)


def _outbox_row(
    session: Session,
    event_id: str,
    type: str,
    occurred_at: datetime,
    aggregate_type: str | None,
    aggregate_id: str | None,
    data: dict[str, Any],
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": type,
        "version": ENVELOPE_VERSION,
        "occurred_at": occurred_at,
        "aggregate_type": aggregate_type,
        "aggregate_id": aggregate_id,
        "data": data,
        "attempts": 0,
        "priority": lane_of(type),
        "dispatched_at": occurred_at if session.info.get(_RECORD_ONLY) else None,
    }


def _count_published(session: Session, n: int) -> None:
    # Events recorded as already handled wake no dispatcher.
    if not session.info.get(_RECORD_ONLY):
        session.info["mercato_published"] = session.info.get("mercato_published", 0) + n


def record_without_delivery(session: Session) -> None:
    """Events this transaction publishes from now on are recorded as already handled: they
    stay in the event log (the live stock feed, the timeline read it) and no subscriber or
    webhook receives them.

    For loading a new database (the demo business: some 14,000 catalogue and stock events
    that nothing waits for), so that its first orders are not queued behind them.
    """
    session.info[_RECORD_ONLY] = True


def flush_events(session: Session) -> None:
    """Write the waiting events now (before reading the outbox in the same transaction)."""
    pending = session.info.pop(_PENDING, None)
    if pending:
        session.execute(insert(OutboxEvent), pending)


_PENDING = "mercato_outbox"
_MARKS = "mercato_outbox_marks"
_RECORD_ONLY = "mercato_outbox_record_only"


@event.listens_for(Session, "after_transaction_create")
def _mark_savepoint(session: Session, transaction: Any) -> None:
    if transaction.nested:
        session.info.setdefault(_MARKS, {})[transaction] = len(session.info.get(_PENDING, ()))


@event.listens_for(Session, "after_soft_rollback")
def _drop_rolled_back(session: Session, previous_transaction: Any) -> None:
    mark = session.info.get(_MARKS, {}).pop(previous_transaction, None)
    pending = session.info.get(_PENDING)
    if pending is None:
        return
    if previous_transaction.nested and mark is not None:
        removed = len(pending) - mark
        del pending[mark:]
        session.info["mercato_published"] = max(
            0, session.info.get("mercato_published", 0) - removed
        )
    elif not previous_transaction.nested:
        session.info.pop(_PENDING, None)


@event.listens_for(Session, "before_commit")
def _write_pending(session: Session) -> None:
    flush_events(session)
    session.info.pop(_MARKS, None)


def publish_many(session: Session, events: Sequence[DomainEvent]) -> int:
    """Record many events at once, in one INSERT.

    For bulk operations (stock imports, price loads) where a statement per event would
    cost more than the change itself. Same guarantee as :func:`publish`, but the rows are
    written now, not when the transaction commits.
    """
    if not events:
        return 0
    now = utcnow()
    session.execute(insert(OutboxEvent), [_bulk_row(session, e, now) for e in events])
    _count_published(session, len(events))
    return len(events)


def _bulk_row(session: Session, event: DomainEvent, now: datetime) -> dict[str, Any]:
    key = event.aggregate_id()
    row = _outbox_row(
        session,
        str(uuid.uuid4()),
        event.TYPE,
        now,
        event.aggregate_kind(),
        None if key is None else str(key),
        event.data(),
    )
    row["version"] = event.VERSION
    return row


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    if session.info.pop("mercato_published", 0):
        wake = session.info.get("mercato_wake")
        if wake is not None:
            wake()


@event.listens_for(Session, "after_transaction_end")
def _after_transaction_end(session: Session, transaction: Any) -> None:
    # Only the outermost transaction: a savepoint rolling back (a failed handler, a retried
    # stock plan) keeps the rest of the transaction's events and their wake-up.
    if transaction.parent is None:
        session.info.pop("mercato_published", None)
        session.info.pop(_RECORD_ONLY, None)


def handler_name(handler: Handler) -> str:
    """A subscriber's stable name (module and qualified name), recorded once it succeeded."""
    module = getattr(handler, "__module__", None) or type(handler).__module__
    qualname = getattr(handler, "__qualname__", None) or type(handler).__qualname__
    return f"{module}.{qualname}"


class Dispatcher:
    """Delivers committed outbox events to in-process subscribers.

    Each dispatcher claims events under its own token with a lease; the transaction that
    delivers an event first takes the event's row back on the condition that the token is
    still its own (and holds that row until it commits, so nobody claims it meanwhile). A
    lease that ran out while earlier events of the batch were delivered therefore costs a
    skipped event, never a second delivery.
    """

    def __init__(
        self, database: Database, *, lease: timedelta = LEASE, batch_size: int = BATCH_SIZE
    ) -> None:
        self.database = database
        self.lease = lease
        self.batch_size = batch_size
        self.token = uuid.uuid4().hex
        self._handlers: dict[str, list[Handler]] = defaultdict(list)
        self._wakeup = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._drain_lock = threading.Lock()
        self._periodic: list[_PeriodicJob] = []

    def subscribe(self, type: str, handler: Handler) -> None:
        """Subscribe to one event type, a prefix such as ``"stock.*"`` or ``"*"``."""
        self._handlers[type].append(handler)

    def handlers_for(self, type: str) -> list[Handler]:
        found = list(self._handlers.get(type, ()))
        parts = type.split(".")
        for i in range(len(parts) - 1, 0, -1):
            found.extend(self._handlers.get(".".join(parts[:i]) + ".*", ()))
        found.extend(self._handlers.get("*", ()))
        return found

    def wake(self) -> None:
        self._wakeup.set()

    def add_periodic(
        self, name: str, every_seconds: float, job: Callable[[Session], object]
    ) -> None:
        """Run ``job`` in its own transaction about every ``every_seconds`` (e.g. hold expiry).

        Jobs must be safe to run in several processes at once (conditional updates).
        """
        self._periodic.append(_PeriodicJob(name, every_seconds, job))

    def add_periodic_work(
        self, name: str, every_seconds: float, job: Callable[[Database], object]
    ) -> None:
        """Like :meth:`add_periodic` for jobs that open their own transactions because they
        call outside services (payment captures, refunds): none is open around them."""
        self._periodic.append(_PeriodicJob(name, every_seconds, job, raw=True))

    def run_periodic(self, force: bool = False) -> None:
        now = time.monotonic()
        for job in self._periodic:
            if force or now >= job.next_run:
                job.next_run = now + job.every_seconds
                try:
                    if job.raw:
                        job.job(self.database)
                        continue
                    with self.database.transaction() as session:
                        job.job(session)
                except Exception:
                    log.exception("periodic job %s failed", job.name)

    def _claim(self, limit: int | None = None) -> list[int]:
        """Lease up to ``limit`` due events to this dispatcher: the urgent lane first, then
        by id. On PostgreSQL the rows are chosen ``FOR UPDATE SKIP LOCKED``, so dispatchers
        of several processes take different events instead of queueing on the same ones
        (and never one that is being delivered); the conditional UPDATE stays the guard."""
        now = utcnow()
        free = or_(OutboxEvent.claimed_until.is_(None), OutboxEvent.claimed_until < now)
        due = (
            select(OutboxEvent.id)
            .where(OutboxEvent.dispatched_at.is_(None), OutboxEvent.attempts < MAX_ATTEMPTS, free)
            .order_by(OutboxEvent.priority, OutboxEvent.id)
            .limit(limit or self.batch_size)
        )
        if self.database.dialect == "postgresql":
            due = due.with_for_update(skip_locked=True)
        with self.database.transaction() as session:
            candidates = list(session.scalars(due))
            if not candidates:
                return []
            claimed = session.execute(
                update(OutboxEvent)
                .where(OutboxEvent.id.in_(candidates), OutboxEvent.dispatched_at.is_(None), free)
                .values(claimed_until=now + self.lease, claim_token=self.token)
                .returning(OutboxEvent.id, OutboxEvent.priority)
                .execution_options(synchronize_session=False)
            ).all()
        return [int(pk) for pk, _ in sorted(claimed, key=lambda row: (row[1], row[0]))]

    def _take(self, session: Session, event_pk: int) -> OutboxEvent | None:
        """The event's row, taken for this delivery if this dispatcher still holds its claim
        (its lease renewed); None when another dispatcher claimed it since, or it is done.

        The conditional UPDATE keeps the row locked until the delivery commits (SQLite has
        one writer at a time), so no other dispatcher can claim it in between.
        """
        return session.scalars(
            update(OutboxEvent)
            .where(
                OutboxEvent.id == event_pk,
                OutboxEvent.claim_token == self.token,
                OutboxEvent.dispatched_at.is_(None),
            )
            .values(claimed_until=utcnow() + self.lease)
            .returning(OutboxEvent)
            .execution_options(populate_existing=True)
        ).one_or_none()

    def _deliver(self, event_pk: int) -> bool:
        return self._deliver_batch([event_pk]) == 1

    def _deliver_batch(self, event_pks: list[int]) -> int:
        """Hand a claimed batch to the subscribers, one transaction per event and a savepoint
        per handler; returns how many events were delivered (the others' claims were lost).

        An event's reactions commit together, and no more: a transaction spanning a batch
        would hold the stock rows of several orders at once, in no global order, and
        deadlock with checkouts locking the same rows. A failing handler rolls back only
        its own writes; the handlers that succeeded are remembered on the event, which is
        retried later (exponential back-off) for the failed ones only.
        """
        delivered = 0
        for event_pk in event_pks:
            try:
                delivered += self._deliver_claimed(event_pk)
            except Exception:
                # The commit failed (a deadlock, a lost connection): the event is claimed
                # again when its lease runs out; the rest of the batch need not wait.
                log.exception("delivering outbox event %s failed", event_pk)
        return delivered

    def _deliver_claimed(self, event_pk: int) -> int:
        with self.database.transaction() as session:
            row = self._take(session, event_pk)
            if row is None:
                return 0
            self._deliver_one(session, row)
            return 1

    def _deliver_one(self, session: Session, row: OutboxEvent) -> None:
        evt = Event.from_row(row)
        done = set(row.handled or ())
        failure: Exception | None = None
        seen: dict[str, int] = {}
        for handler in self.handlers_for(evt.type):
            base = handler_name(handler)
            seen[base] = seen.get(base, 0) + 1
            # Closures made by one factory share a name: number them in order.
            name = base if seen[base] == 1 else f"{base}#{seen[base]}"
            if name in done:
                continue
            try:
                with session.begin_nested():
                    handler(session, evt)
            except Exception as exc:
                log.exception("event %s (%s): %s failed", evt.id, evt.type, name)
                failure = exc
                continue
            done.add(name)
        if failure is not None:
            row.handled = sorted(done)
            row.attempts += 1
            row.last_error = repr(failure)[:2000]
            # Back off: the event is free again once the delay, growing with the attempts,
            # has passed.
            row.claimed_until = utcnow() + timedelta(seconds=2 ** min(row.attempts, 8))
            row.claim_token = None
            return
        row.dispatched_at = utcnow()
        row.claimed_until = None
        row.claim_token = None

    def drain(self, limit: int | None = None) -> int:
        """Dispatch every committed, undispatched event; returns how many were handled.

        Claims ``limit`` (the batch size) at a time, so an urgent event published while a
        backlog drains is claimed with the next batch, ahead of the rest.
        """
        handled = 0
        with self._drain_lock:
            while True:
                batch = self._claim(limit)
                if not batch:
                    return handled
                handled += self._deliver_batch(batch)

    def start(self, poll_seconds: float = 1.0) -> None:
        if self._thread is not None:
            return
        self._stop.clear()

        def run() -> None:
            while not self._stop.is_set():
                self._wakeup.wait(poll_seconds)
                self._wakeup.clear()
                if self._stop.is_set():
                    break
                try:
                    self.drain()
                except Exception:  # the loop must survive a database hiccup
                    log.exception("event dispatcher pass failed")
                self.run_periodic()

        self._thread = threading.Thread(target=run, name="mercato-dispatcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
