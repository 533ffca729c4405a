"""Brute-force protection: failed sign-ins counted per account and per client address.

Every password check (staff and customer sign-in, a password change) first *claims* an
attempt: one short transaction takes the rows of the account and of the client address
(inserted when missing, then ``FOR UPDATE`` in a fixed order), refuses with 429 while
either is locked, and otherwise counts the attempt as a failure *before* the password is
checked. Counting first keeps concurrent guesses within the limit: of twenty parallel
wrong passwords, the sixth is refused before anything verifies it. A correct password
then gives the attempt back: the account's row starts afresh, the address's row loses
only this attempt (a valid sign-in of one's own must not wipe the failures of guesses
made from the same address).

``max_failures`` failures lock the key for ``lockout_seconds``; each further lockout
doubles, up to ``lockout_max_seconds``. Failures are forgotten after 15 quiet minutes and
lockouts after a quiet day, so nobody is locked out for good: every lockout ends, and a
correct password after it resets the account.

The counts live in the database (``auth_throttles``, keyed by a keyed hash of the email or
address), so every API process sees the same ones. Wrong channel keys are counted in
process memory instead (:class:`AddressGuard`): the key is checked on every shopper
request, where a database round trip for each would cost too much, and a channel key is
a 256-bit secret nobody guesses; each process allows its own ``address_max_failures``.
"""

from __future__ import annotations

import ipaddress
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from mercato.auth.models import AuthThrottle
from mercato.auth.passwords import keyed_digest
from mercato.db import utcnow
from mercato.errors import Problem
from mercato.settings import Settings

FAILURES_FORGOTTEN_AFTER = timedelta(minutes=15)
LOCKOUTS_FORGOTTEN_AFTER = timedelta(days=1)


class TooManyAttempts(Problem):
    status = 429
    code = "too-many-attempts"
    title = "Too many attempts"

    @classmethod
    def until(cls, locked_until: datetime, now: datetime) -> TooManyAttempts:
        seconds = max(1, math.ceil((locked_until - now).total_seconds()))
        return cls(
            f"too many failed attempts; try again in {seconds} seconds",
            headers={"Retry-After": str(seconds)},
            extra={"retry_after": seconds},
        )


@dataclass(frozen=True)
class Limits:
    max_failures: int
    lockout: timedelta
    max_lockout: timedelta

    @classmethod
    def from_settings(cls, settings: Settings, max_failures: int) -> Limits:
        return cls(
            max_failures,
            timedelta(seconds=settings.lockout_seconds),
            timedelta(seconds=max(settings.lockout_max_seconds, settings.lockout_seconds)),
        )

    def next_lockout(self, earlier_lockouts: int) -> timedelta:
        doubled: timedelta = self.lockout * (1 << min(earlier_lockouts, 30))
        return min(doubled, self.max_lockout)


@dataclass(frozen=True)
class Key:
    """One thing attempts are counted against: an account or a client address."""

    scope: str
    value: str
    limits: Limits
    # An account is reset by its correct password; an address only gets the attempt back.
    reset_on_success: bool

    @property
    def digest(self) -> str:
        return keyed_digest("throttle", self.scope, self.value)


def address_key(host: str) -> str:
    """The client address attempts are counted against: an IPv6 client by its /64 network,
    which one subscriber usually holds whole (counting single addresses would give it 2^64
    budgets)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def sign_in_keys(kind: str, account: str, address: str, settings: Settings) -> tuple[Key, Key]:
    """The account (its email) and the client address of a ``kind`` ("staff", "customer")
    sign-in."""
    return (
        Key(
            f"{kind}-account",
            account.strip().lower(),
            Limits.from_settings(settings, settings.login_max_failures),
            reset_on_success=True,
        ),
        Key(
            f"{kind}-address",
            address_key(address),
            Limits.from_settings(settings, settings.address_max_failures),
            reset_on_success=False,
        ),
    )


# --- the rules, shared by the database rows and the in-memory counts ----------------------


class _Counts(Protocol):
    failures: int
    lockouts: int
    last_failure_at: datetime | None
    locked_until: datetime | None


def _locked_until(counts: _Counts, now: datetime) -> datetime | None:
    until = counts.locked_until
    return until if until is not None and until > now else None


def _forget_old(counts: _Counts, now: datetime) -> None:
    if counts.last_failure_at is None:
        return
    quiet = now - counts.last_failure_at
    if quiet >= FAILURES_FORGOTTEN_AFTER:
        counts.failures = 0
    if quiet >= LOCKOUTS_FORGOTTEN_AFTER:
        counts.lockouts = 0


def _lock(counts: _Counts, limits: Limits, now: datetime) -> datetime:
    until = now + limits.next_lockout(counts.lockouts)
    counts.locked_until = until
    counts.lockouts += 1
    counts.failures = 0
    counts.last_failure_at = now
    return until


def _count_failure(counts: _Counts, now: datetime) -> None:
    counts.failures += 1
    counts.last_failure_at = now


# --- accounts and sign-in addresses: in the database ---------------------------------------


def claim(session: Session, keys: Sequence[Key]) -> TooManyAttempts | None:
    """Count one attempt against every key, or the refusal to raise once ``session``
    commits (a lockout this attempt started must be kept)."""
    now = utcnow()
    rows = _take_rows(session, keys)
    locked = [until for row in rows if (until := _locked_until(row, now)) is not None]
    if locked:
        return TooManyAttempts.until(max(locked), now)
    started: list[datetime] = []
    for key, row in zip(keys, rows, strict=True):
        _forget_old(row, now)
        if row.failures >= key.limits.max_failures:
            started.append(_lock(row, key.limits, now))
    if started:
        return TooManyAttempts.until(max(started), now)
    for row in rows:
        _count_failure(row, now)
    return None


def succeeded(session: Session, keys: Sequence[Key]) -> None:
    """The password was right: give back the attempt :func:`claim` counted."""
    for key in keys:
        this = and_(AuthThrottle.scope == key.scope, AuthThrottle.key_hash == key.digest)
        if key.reset_on_success:
            session.execute(
                update(AuthThrottle)
                .where(this)
                .values(failures=0, lockouts=0, locked_until=None)
            )
        else:
            session.execute(
                update(AuthThrottle)
                .where(this, AuthThrottle.failures > 0)
                .values(failures=AuthThrottle.failures - 1)
            )


def _take_rows(session: Session, keys: Sequence[Key]) -> list[AuthThrottle]:
    """The rows of ``keys`` (in that order), made if missing and locked until commit.

    Rows are inserted and locked in one fixed order, so two claims never wait on each other
    in a cycle.
    """
    wanted = sorted({(key.scope, key.digest) for key in keys})
    maker = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(
        maker(AuthThrottle)
        .values([{"scope": s, "key_hash": d, "failures": 0, "lockouts": 0} for s, d in wanted])
        .on_conflict_do_nothing()
    )
    found = session.scalars(
        select(AuthThrottle)
        .where(or_(*(and_(AuthThrottle.scope == s, AuthThrottle.key_hash == d) for s, d in wanted)))
        .order_by(AuthThrottle.scope, AuthThrottle.key_hash)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    by_key = {(row.scope, row.key_hash): row for row in found}
    return [by_key[(key.scope, key.digest)] for key in keys]


def prune(session: Session) -> int:
    """Forget keys with nothing left to remember (a periodic job)."""
    now = utcnow()
    result = session.execute(
        delete(AuthThrottle).where(
            or_(AuthThrottle.locked_until.is_(None), AuthThrottle.locked_until < now),
            or_(
                AuthThrottle.last_failure_at.is_(None),
                AuthThrottle.last_failure_at < now - LOCKOUTS_FORGOTTEN_AFTER,
            ),
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


# --- channel keys: in process memory --------------------------------------------------------


@dataclass
class _MemoryCounts:
    failures: int = 0
    lockouts: int = 0
    last_failure_at: datetime | None = None
    locked_until: datetime | None = None


class AddressGuard:
    """Failures per client address, counted in this process (see the module's docstring)."""

    MAX_ADDRESSES = 10_000

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._counts: dict[str, _MemoryCounts] = {}
        self._lock = threading.Lock()

    def check(self, address: str) -> None:
        """Raise 429 while ``address`` is locked."""
        now = utcnow()
        with self._lock:
            counts = self._counts.get(address_key(address))
            until = None if counts is None else _locked_until(counts, now)
        if until is not None:
            raise TooManyAttempts.until(until, now)

    def failed(self, address: str) -> None:
        now = utcnow()
        with self._lock:
            if len(self._counts) >= self.MAX_ADDRESSES:
                self._forget_quiet(now)
            counts = self._counts.setdefault(address_key(address), _MemoryCounts())
            _forget_old(counts, now)
            _count_failure(counts, now)
            if counts.failures >= self.limits.max_failures:
                _lock(counts, self.limits, now)

    def _forget_quiet(self, now: datetime) -> None:
        for address, counts in list(self._counts.items()):
            quiet = counts.last_failure_at is None or now - counts.last_failure_at >= (
                FAILURES_FORGOTTEN_AFTER
            )
            if quiet and _locked_until(counts, now) is None:
                del self._counts[address]
        if len(self._counts) >= self.MAX_ADDRESSES:
            # A flood of distinct addresses: keep only the locked ones.
            for address, counts in list(self._counts.items()):
                if _locked_until(counts, now) is None:
                    del self._counts[address]
