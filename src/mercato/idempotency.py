"""Idempotency-Key support for unsafe requests: orders, money, stock movements, and every
unsafe POST of the shopper API (carts, lines, codes, accounts, consents...).

The first request with a key claims it (a row inserted before any effect), does its work
and stores its answer, all in one transaction. A retry with the same key and the same body
gets that stored answer back, never a second effect. The same key with a different body is
a 422 (a client bug). A concurrent duplicate waits on the claimed row; when the first
commits it gets the stored answer (a 409 only if the first is still running).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from sqlalchemy import Integer, String, delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from mercato.auth.principal import Principal
from mercato.crypto import EncryptedJSON, blind_index
from mercato.db import Base, Database, UTCDateTime, utcnow
from mercato.errors import PROBLEM_CONTENT_TYPE, Conflict, ValidationProblem

MAX_KEY_LENGTH = 200
IN_PROGRESS = 0


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_keys"

    scope: Mapped[str] = mapped_column(String(120), primary_key=True)
    key: Mapped[str] = mapped_column(String(MAX_KEY_LENGTH), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    # The stored answer repeats what the request created (an order with its addresses):
    # personal data, so encrypted at rest.
    response: Mapped[Any] = mapped_column(EncryptedJSON(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


def request_fingerprint(payload: Any) -> str:
    raw = json.dumps(jsonable_encoder(payload), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(raw.encode()).hexdigest()


def check_key(key: str | None) -> str | None:
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > MAX_KEY_LENGTH:
        raise ValidationProblem.field(
            "header.Idempotency-Key", f"must be 1 to {MAX_KEY_LENGTH} characters"
        )
    return key


def scope_for(operation: str, principal: Principal) -> str:
    """Keys are per caller: two integrations may use the same key for different requests."""
    who = principal.customer_id or principal.channel_id or principal.id or principal.label
    return f"{operation}:{principal.kind}:{who}"[:120]


def shopper_scope(operation: str, channel_id: int, customer_id: int | None = None) -> str:
    """Shopper keys are per channel, and per customer once signed in.

    The caller of the shopper API is the storefront holding the channel key, so guests of
    one channel share a scope: a storefront sends a fresh random key per request.
    """
    who = f"customer:{customer_id}" if customer_id is not None else "guest"
    return f"{operation}:channel:{channel_id}:{who}"[:120]


def secret_fingerprint(value: str) -> str:
    """What stands for a secret (a password, a card number) in a request fingerprint.

    A keyed hash: the stored fingerprint of a body must not let anyone test guesses of
    the secret it carried.
    """
    return blind_index("idempotency-secret", value)


def lookup(session: Session, scope: str, key: str, fingerprint: str) -> IdempotencyRecord | None:
    """The stored answer for ``key``, or None when this is the first use of the key."""
    record = session.scalar(
        select(IdempotencyRecord).where(
            IdempotencyRecord.scope == scope, IdempotencyRecord.key == key
        )
    )
    if record is not None and record.request_hash != fingerprint:
        raise ValidationProblem(
            "this Idempotency-Key was used with a different request body",
            code="idempotency-key-reused",
            errors=[],
        )
    if record is not None and record.status_code == IN_PROGRESS:
        raise Conflict(
            "a request with this Idempotency-Key is in progress; retry it",
            code="idempotency-key-in-use",
        )
    return record


def try_claim(session: Session, scope: str, key: str, fingerprint: str) -> bool:
    """Claim the key in one statement; False when it was claimed before (by anyone).

    On PostgreSQL a concurrent claim of the same key waits for the first transaction to
    finish, then sees the key as taken.
    """
    dialect = session.get_bind().dialect.name
    maker = pg_insert if dialect == "postgresql" else sqlite_insert
    inserted = session.execute(
        maker(IdempotencyRecord)
        .values(
            scope=scope,
            key=key,
            request_hash=fingerprint,
            status_code=IN_PROGRESS,
            response=None,
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["scope", "key"])
        .returning(IdempotencyRecord.key)
    ).first()
    return inserted is not None


def record_for(session: Session, scope: str, key: str) -> IdempotencyRecord | None:
    return session.scalar(
        select(IdempotencyRecord)
        .where(IdempotencyRecord.scope == scope, IdempotencyRecord.key == key)
        .execution_options(populate_existing=True)
    )


def finish(session: Session, scope: str, key: str, status_code: int, response: Any) -> None:
    session.execute(
        update(IdempotencyRecord)
        .where(IdempotencyRecord.scope == scope, IdempotencyRecord.key == key)
        .values(status_code=status_code, response=jsonable_encoder(response))
        # Readers load the record afresh (populate_existing); nothing to evaluate in Python.
        .execution_options(synchronize_session=False)
    )


def forget(session: Session, scope: str, key: str) -> None:
    """Give up a key claimed with :func:`try_claim` whose request did nothing to remember."""
    session.execute(
        delete(IdempotencyRecord).where(
            IdempotencyRecord.scope == scope, IdempotencyRecord.key == key
        )
    )


def claim(session: Session, scope: str, key: str, fingerprint: str) -> IdempotencyRecord:
    """Insert the key before doing the work, so a concurrent duplicate waits and then fails."""
    record = IdempotencyRecord(
        scope=scope,
        key=key,
        request_hash=fingerprint,
        status_code=IN_PROGRESS,
        response=None,
        created_at=utcnow(),
    )
    try:
        # Added inside the savepoint: begin_nested() flushes pending objects first, so a
        # row added before it would fail the whole transaction instead of the savepoint.
        with session.begin_nested():
            session.add(record)
            session.flush()
    except IntegrityError as exc:
        raise Conflict(
            "a request with this Idempotency-Key is in progress; retry it",
            code="idempotency-key-in-use",
        ) from exc
    return record


@dataclass
class Idempotent:
    """Runs one unsafe operation at most once per (caller, key)."""

    session: Session
    scope: str
    key: str | None
    payload: Any

    def run(self, produce: Callable[[], Any], status_code: int = 201) -> JSONResponse:
        if self.key is None:
            body = jsonable_encoder(produce())
            return JSONResponse(body, status_code=status_code)
        fingerprint = request_fingerprint(self.payload)
        stored = lookup(self.session, self.scope, self.key, fingerprint)
        if stored is not None:
            return _replay(stored)
        if not try_claim(self.session, self.scope, self.key, fingerprint):
            # A concurrent duplicate held the key (the claim waited for it): its answer.
            finished = self._finished(fingerprint)
            if finished is None:
                raise Conflict(
                    "a request with this Idempotency-Key is in progress; retry it",
                    code="idempotency-key-in-use",
                )
            return finished
        body = jsonable_encoder(produce())
        finish(self.session, self.scope, self.key, status_code, body)
        return JSONResponse(body, status_code=status_code)

    def _finished(self, fingerprint: str) -> JSONResponse | None:
        assert self.key is not None
        record = record_for(self.session, self.scope, self.key)
        if record is None or record.status_code == IN_PROGRESS:
            return None
        lookup(self.session, self.scope, self.key, fingerprint)  # a different body: 422
        return _replay(record)


def remember(
    session: Session, scope: str, key: str, fingerprint: str, status_code: int, response: Any
) -> None:
    """Store an answer computed outside ``Idempotent.run`` (multi-step flows such as checkout)."""
    record = claim(session, scope, key, fingerprint)
    record.status_code = status_code
    record.response = jsonable_encoder(response)


def _answer(body: Any, status_code: int, headers: dict[str, str] | None = None) -> JSONResponse:
    # A stored refusal (a declined payment) is replayed as the problem it was.
    media = PROBLEM_CONTENT_TYPE if status_code >= 400 else "application/json"
    return JSONResponse(body, status_code=status_code, media_type=media, headers=headers)


def _replay(record: IdempotencyRecord) -> JSONResponse:
    return _answer(record.response, record.status_code, {"Idempotent-Replayed": "true"})


def run_repeatable(
    database: Database,
    scope: str,
    key: str | None,
    payload: Any,
    produce: Callable[[], tuple[int, Any]],
) -> JSONResponse:
    """The Idempotency-Key of an operation that is safe to repeat by construction and runs
    outside a request transaction (it calls a provider between transactions of its own).

    ``produce`` returns the status and body. A retry with the key gets the first stored
    answer, another body with the key is a 422. Two concurrent duplicates may both run,
    which such an operation allows; the first answer stored is the one replayed.
    """
    if key is None:
        status_code, body = produce()
        return _answer(jsonable_encoder(body), status_code)
    fingerprint = request_fingerprint(payload)
    with database.read() as session:
        stored = lookup(session, scope, key, fingerprint)
        if stored is not None:
            return _replay(stored)
    status_code, body = produce()
    encoded = jsonable_encoder(body)
    with database.transaction() as session:
        if try_claim(session, scope, key, fingerprint):
            finish(session, scope, key, status_code, encoded)
        else:
            stored = lookup(session, scope, key, fingerprint)
            if stored is not None:
                return _replay(stored)
    return _answer(encoded, status_code)


def keys_in_progress(session: Session, scope: str) -> list[str]:
    """Keys of attempts cut off before their answer was stored."""
    return list(
        session.scalars(
            select(IdempotencyRecord.key).where(
                IdempotencyRecord.scope == scope, IdempotencyRecord.status_code == IN_PROGRESS
            )
        )
    )
