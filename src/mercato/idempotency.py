"""Idempotency-Key support for unsafe requests that create orders, money or stock movements.

The first request with a key claims it (a row inserted before any effect), does its work
and stores its answer, all in one transaction. A retry with the same key and the same body
gets that stored answer back, never a second effect. The same key with a different body is
a 422 (a client bug). A concurrent duplicate waits on the claimed row; when the first
commits it gets a 409 and may retry to read the stored answer.
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
from mercato.db import Base, UTCDateTime, utcnow
from mercato.errors import Conflict, ValidationProblem
from mercato.privacy.crypto import EncryptedJSON

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
    session.add(record)
    try:
        with session.begin_nested():
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
            return JSONResponse(
                stored.response,
                status_code=stored.status_code,
                headers={"Idempotent-Replayed": "true"},
            )
        record = claim(self.session, self.scope, self.key, fingerprint)
        body = jsonable_encoder(produce())
        record.status_code = status_code
        record.response = body
        return JSONResponse(body, status_code=status_code)


def remember(
    session: Session, scope: str, key: str, fingerprint: str, status_code: int, response: Any
) -> None:
    """Store an answer computed outside ``Idempotent.run`` (multi-step flows such as checkout)."""
    record = claim(session, scope, key, fingerprint)
    record.status_code = status_code
    record.response = jsonable_encoder(response)
