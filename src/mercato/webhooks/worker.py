"""The delivery worker: claim due deliveries, POST them, record each result.

Short transactions, none of them open during the HTTP call:

1. ``claim``: a read looks for due work (an idle poll takes no write lock), then one
   conditional UPDATE takes a batch of due deliveries for this worker (a
   lease: ``claimed_until`` and a ``claim_token``) and counts the attempt. Another worker
   (thread or process) running the same UPDATE gets other rows or none, so an attempt is
   made once; a worker that dies keeps its rows only until the lease runs out.
2. ``send``: the HTTP POST, signed, with a short timeout. No database work.
3. ``finish``: delivered, retry later (exponential back-off with jitter) or dead letter,
   written only ``WHERE claim_token = <ours>``: a worker that lost its lease changes nothing.

In an API process the worker runs on its own threads, started by the outbox dispatcher's
periodic job and woken when deliveries are queued; operators and tests can also call
``drain()`` (see docs/webhooks.md).
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from http import HTTPStatus
from typing import Any

import httpx
from sqlalchemy import event, insert, or_, select, update
from sqlalchemy.orm import Session

from mercato import __version__
from mercato.db import Database, utcnow
from mercato.webhooks import signing, targets
from mercato.webhooks.config import WebhookConfig
from mercato.webhooks.models import (
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookSubscription,
)
from mercato.webhooks.targets import TargetRefused

log = logging.getLogger(__name__)

# A session whose commit should wake a worker carries its ``kick`` under this key.
WAKE_KEY = "mercato_webhooks_wake"
# A failure's reason is a status or a short error, never the receiver's answer.
ERROR_CHARS = 200
USER_AGENT = f"Mercato-Webhooks/{__version__}"


@dataclass(frozen=True)
class Claim:
    """One attempt this worker holds the lease for."""

    delivery_id: int
    token: str
    attempt: int  # attempts since creation or the last re-send, this one included
    number: int  # attempt number over the delivery's whole life
    event_id: str
    event_type: str
    url: str
    body: bytes
    secrets: tuple[str, ...]  # empty when the stored secret cannot be decrypted


@dataclass(frozen=True)
class Outcome:
    succeeded: bool
    status_code: int | None
    error: str | None
    started_at: datetime
    duration_ms: int


def backoff_seconds(attempt: int, config: WebhookConfig, rand: float | None = None) -> float:
    """Delay after failed attempt ``attempt`` (1-based): base * 2**(attempt-1), capped, +/- jitter.

    Jitter spreads the retries of many deliveries that failed together (a receiver outage),
    so they do not all come back in the same second.
    """
    exponent = min(max(attempt, 1) - 1, 60)
    delay = min(config.backoff_cap_seconds, config.backoff_base_seconds * 2.0**exponent)
    r = random.random() if rand is None else rand
    return delay * (1 + config.jitter * (2 * r - 1))


class WebhookWorker:
    """Delivers pending webhook deliveries of one database."""

    def __init__(
        self,
        database: Database,
        config: WebhookConfig | None = None,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.database = database
        self.config = config or WebhookConfig()
        # Scheduling time (leases, due retries); signatures always use the real clock.
        self.clock = clock
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._again = False
        self._running = False

    # --- one pass -------------------------------------------------------------------------

    def claim(self, limit: int | None = None) -> list[Claim]:
        """Lease up to ``limit`` due deliveries of active subscriptions to this worker."""
        now = self.clock()
        token = uuid.uuid4().hex
        # Look before locking: an idle poll must not take SQLite's write lock every second.
        with self.database.read() as session:
            if not self._due(session, now, 1, lock=False):
                return []
        with self.database.transaction() as session:
            ids = self._due(session, now, limit or self.config.batch_size)
            if not ids:
                return []
            claimed = session.execute(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.id.in_(ids),
                    WebhookDelivery.status == DeliveryStatus.PENDING.value,
                    WebhookDelivery.next_attempt_at <= now,
                    or_(
                        WebhookDelivery.claimed_until.is_(None),
                        WebhookDelivery.claimed_until < now,
                    ),
                )
                .values(
                    claimed_until=now + timedelta(seconds=self.config.lease_seconds),
                    claim_token=token,
                    attempts=WebhookDelivery.attempts + 1,
                    total_attempts=WebhookDelivery.total_attempts + 1,
                    last_attempt_at=now,
                )
                .execution_options(synchronize_session=False)
                .returning(
                    WebhookDelivery.id,
                    WebhookDelivery.subscription_id,
                    WebhookDelivery.attempts,
                    WebhookDelivery.total_attempts,
                    WebhookDelivery.event_id,
                    WebhookDelivery.event_type,
                    WebhookDelivery.body,
                )
            ).all()
            if not claimed:
                return []
            targets = self._targets(session, {int(r.subscription_id) for r in claimed}, now)
        return sorted(
            (
                Claim(
                    delivery_id=int(r.id),
                    token=token,
                    attempt=int(r.attempts),
                    number=int(r.total_attempts),
                    event_id=r.event_id,
                    event_type=r.event_type,
                    url=targets[int(r.subscription_id)][0],
                    body=r.body.encode(),
                    secrets=targets[int(r.subscription_id)][1],
                )
                for r in claimed
            ),
            key=lambda c: c.delivery_id,
        )

    def _due(self, session: Session, now: datetime, limit: int, lock: bool = True) -> list[int]:
        query = (
            select(WebhookDelivery.id)
            .join(WebhookSubscription, WebhookSubscription.id == WebhookDelivery.subscription_id)
            .where(
                WebhookDelivery.status == DeliveryStatus.PENDING.value,
                WebhookDelivery.next_attempt_at <= now,
                or_(
                    WebhookDelivery.claimed_until.is_(None),
                    WebhookDelivery.claimed_until < now,
                ),
                WebhookSubscription.active.is_(True),
            )
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
            .limit(limit)
        )
        if lock and self.database.dialect == "postgresql":
            # Concurrent workers take different rows instead of queueing on the same ones;
            # the conditional UPDATE stays the guarantee.
            query = query.with_for_update(of=WebhookDelivery, skip_locked=True)
        return [int(x) for x in session.scalars(query)]

    def _targets(
        self, session: Session, subscription_ids: set[int], now: datetime
    ) -> dict[int, tuple[str, tuple[str, ...]]]:
        rows = session.execute(
            select(
                WebhookSubscription.id,
                WebhookSubscription.url,
                WebhookSubscription.secret_sealed,
                WebhookSubscription.previous_secret_sealed,
                WebhookSubscription.previous_secret_expires_at,
            ).where(WebhookSubscription.id.in_(subscription_ids))
        ).all()
        found: dict[int, tuple[str, tuple[str, ...]]] = {}
        for row in rows:
            sealed = [row.secret_sealed]
            expires = row.previous_secret_expires_at
            if row.previous_secret_sealed and expires is not None and expires > now:
                sealed.append(row.previous_secret_sealed)
            opened = [signing.unseal(s) for s in sealed]
            found[int(row.id)] = (row.url, tuple(s for s in opened if s is not None))
        return found

    def send(self, claim: Claim, client: httpx.Client) -> Outcome:
        """POST the delivery; never raises for anything the receiver or network does.

        Only the status and a short reason are recorded, never what the receiver answered:
        an answer can hold anything (an internal service's data, someone's details)."""
        started = utcnow()
        start = time.monotonic()
        if not claim.secrets:
            return Outcome(
                False,
                None,
                "the subscription's signing secret cannot be decrypted (was MERCATO_SECRET_KEY "
                "changed?): rotate the secret",
                started,
                0,
            )
        try:
            if not self.config.allow_private_targets:
                # Through a proxy this is the only check; direct connections check again
                # the very addresses they connect to (targets.GuardedBackend).
                targets.check_url(claim.url)
            code = self._post(claim, client)
        except httpx.TimeoutException:
            error = f"timed out after {self.config.timeout_seconds:g}s"
            return Outcome(False, None, error, started, _ms_since(start))
        except TargetRefused as exc:
            return Outcome(False, None, _short(str(exc)), started, _ms_since(start))
        except (httpx.HTTPError, OSError, UnicodeError) as exc:
            error = _short(f"{type(exc).__name__}: {exc}")
            return Outcome(False, None, error, started, _ms_since(start))
        if 200 <= code < 300:
            return Outcome(True, code, None, started, _ms_since(start))
        return Outcome(False, code, status_reason(code), started, _ms_since(start))

    def _post(self, claim: Claim, client: httpx.Client) -> int:
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "Mercato-Event-Id": claim.event_id,
            "Mercato-Event-Type": claim.event_type,
            "Mercato-Timestamp": str(timestamp),
            "Mercato-Signature": signing.signature_header(claim.secrets, timestamp, claim.body),
            "Mercato-Delivery-Id": str(claim.delivery_id),
            "Mercato-Attempt": str(claim.number),
        }
        # Streamed and closed unread: only the status matters, whatever the body holds.
        with client.stream("POST", claim.url, content=claim.body, headers=headers) as response:
            return response.status_code

    def finish(self, claim: Claim, outcome: Outcome) -> bool:
        """Record the attempt; False when this worker no longer held the lease."""
        now = self.clock()
        values: dict[str, Any] = {
            "claimed_until": None,
            "claim_token": None,
            "last_status_code": outcome.status_code,
            "last_error": outcome.error,
        }
        if outcome.succeeded:
            values.update(status=DeliveryStatus.DELIVERED.value, delivered_at=now)
        elif claim.attempt >= self.config.max_attempts:
            values.update(status=DeliveryStatus.DEAD.value, dead_at=now)
        else:
            delay = backoff_seconds(claim.attempt, self.config)
            values.update(next_attempt_at=now + timedelta(seconds=delay))
        with self.database.transaction() as session:
            result = session.execute(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.id == claim.delivery_id,
                    WebhookDelivery.claim_token == claim.token,
                )
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            if not getattr(result, "rowcount", 0):
                log.warning("webhook delivery %s: lease lost before recording", claim.delivery_id)
                return False
            session.execute(
                insert(WebhookAttempt).values(
                    delivery_id=claim.delivery_id,
                    number=claim.number,
                    started_at=outcome.started_at,
                    duration_ms=outcome.duration_ms,
                    succeeded=outcome.succeeded,
                    status_code=outcome.status_code,
                    error=outcome.error,
                )
            )
        return True

    def deliver(self, claim: Claim, client: httpx.Client) -> bool:
        try:
            return self.finish(claim, self.send(claim, client))
        except Exception:  # the lease runs out and another pass retries it
            log.exception("webhook delivery %s failed to complete", claim.delivery_id)
            return False

    @contextmanager
    def http_client(self) -> Iterator[httpx.Client]:
        guarded: dict[str, Any] = {}
        if not self.config.allow_private_targets:
            guarded = {
                "transport": targets.GuardedTransport(),
                "mounts": targets.proxy_mounts(),
            }
        with httpx.Client(
            timeout=httpx.Timeout(self.config.timeout_seconds),
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
            **guarded,
        ) as client:
            yield client

    def run_once(self) -> int:
        """Claim one batch and attempt each delivery in it; returns how many were attempted."""
        claims = self.claim()
        if not claims:
            return 0
        with self.http_client() as client:
            workers = min(self.config.concurrency, len(claims))
            if workers == 1:
                for claim in claims:
                    self.deliver(claim, client)
            else:
                with ThreadPoolExecutor(workers, thread_name_prefix="mercato-webhook") as pool:
                    list(pool.map(lambda c: self.deliver(c, client), claims))
        return len(claims)

    def drain(self, max_passes: int = 1000) -> int:
        """Attempt everything due now (retries that come due meanwhile included)."""
        attempted = 0
        for _ in range(max_passes):
            done = self.run_once()
            if not done:
                break
            attempted += done
        return attempted

    # --- in the background ----------------------------------------------------------------

    def start(self) -> None:
        """Deliver in the background from now on: every ``kick`` starts a pass thread."""
        self._running = True
        self.kick()

    def kick(self) -> None:
        """Run passes on a background thread until nothing is due (no-op unless started)."""
        if not self._running:
            return
        with self._lock:
            if self._thread is not None:
                self._again = True
                return
            self._again = False
            self._thread = threading.Thread(
                target=self._passes, name="mercato-webhooks", daemon=True
            )
            self._thread.start()

    def _passes(self) -> None:
        while True:
            try:
                attempted = self.run_once()
            except Exception:  # a database hiccup must not stop deliveries for good
                log.exception("webhook delivery pass failed")
                attempted = 0
            with self._lock:
                more = self._again or attempted >= self.config.batch_size
                self._again = False
                if not (self._running and more):
                    self._thread = None
                    return

    def stop(self, timeout: float | None = None) -> None:
        """Stop starting passes and wait for the current one (its calls time out anyway)."""
        self._running = False
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(timeout if timeout is not None else 5 * self.config.lease_seconds)

    @property
    def running(self) -> bool:
        return self._running


def status_reason(code: int) -> str:
    """``HTTP 503 Service Unavailable``: what a failed answer leaves in ``last_error``."""
    try:
        return f"HTTP {code} {HTTPStatus(code).phrase}"
    except ValueError:
        return f"HTTP {code}"


def _short(reason: str) -> str:
    return reason if len(reason) <= ERROR_CHARS else reason[: ERROR_CHARS - 1] + "…"


def _ms_since(start: float) -> int:
    return int((time.monotonic() - start) * 1000)


@event.listens_for(Session, "after_commit")
def _wake_after_commit(session: Session) -> None:
    kick = session.info.pop(WAKE_KEY, None)
    if callable(kick):
        kick()


@event.listens_for(Session, "after_rollback")
def _forget_wake(session: Session) -> None:
    session.info.pop(WAKE_KEY, None)
