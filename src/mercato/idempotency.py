"""Idempotency-Key support for unsafe requests that create orders, money or stock movements.

The first request with a key stores its answer in the same transaction as its effect; a
retry with the same key and the same body gets that stored answer back, never a second
effect. The same key with a different body is a 422 (a client bug). Two concurrent requests
with one key race on the primary key: the loser gets 409 and may retry.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, String, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from mercato.db import Base, JSONType, UTCDateTime, utcnow
from mercato.errors import Conflict, ValidationProblem

MAX_KEY_LENGTH = 200


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_keys"

    scope: Mapped[str] = mapped_column(String(120), primary_key=True)
    key: Mapped[str] = mapped_column(String(MAX_KEY_LENGTH), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response: Mapped[Any] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


def request_fingerprint(payload: Any) -> str:
    raw = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
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
    return record


def remember(
    session: Session, scope: str, key: str, fingerprint: str, status_code: int, response: Any
) -> None:
    session.add(
        IdempotencyRecord(
            scope=scope,
            key=key,
            request_hash=fingerprint,
            status_code=status_code,
            response=response,
            created_at=utcnow(),
        )
    )
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:
        raise Conflict(
            "a request with this Idempotency-Key is in progress; retry it",
            code="idempotency-key-in-use",
        ) from exc
