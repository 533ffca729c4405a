"""``Idempotency-Key`` for captures and refunds: a retried request gets the first answer.

What is remembered is a pointer to the effect (the ledger row, the refunds), stored in
the same transaction as the effect itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.idempotency import claim, lookup, request_fingerprint, scope_for


@dataclass(frozen=True)
class RequestKey:
    scope: str
    key: str
    fingerprint: str


def request_key_for(
    operation: str, actor: Principal, key: str | None, payload: Any
) -> RequestKey | None:
    """The request's key in its scope (operation and actor), or None without a key."""
    if key is None:
        return None
    return RequestKey(scope_for(operation, actor), key, request_fingerprint(payload))


def replayed(session: Session, rk: RequestKey | None) -> dict[str, Any] | None:
    """The pointer stored by the first request with this key, if there was one."""
    if rk is None:
        return None
    record = lookup(session, rk.scope, rk.key, rk.fingerprint)
    return None if record is None else dict(record.response)


def remember(session: Session, rk: RequestKey | None, pointer: dict[str, Any]) -> None:
    """Store, with the effect, what a retry of the same request must be answered with."""
    if rk is None:
        return
    record = claim(session, rk.scope, rk.key, rk.fingerprint)
    record.status_code = 201
    record.response = pointer
