"""Key rotation: re-encrypt every encrypted column of every table with the current key.

It walks the tables of every domain (``mercato.models`` loads them all, so none is
missed), which is why it lives here and not in :mod:`mercato.crypto`, which every domain's
tables import for their column types.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Table, Text, and_, select, tuple_, type_coerce, update
from sqlalchemy.orm import Session

import mercato.models  # noqa: F401  (every domain's tables, so none is missed)
from mercato.crypto import BLIND_INDEX, BlindIndexInput, Encrypted, EncryptedJSON, Keyring, keyring
from mercato.db import Base


@dataclass(frozen=True)
class _TablePlan:
    table: Table
    key: list[Column[Any]]
    encrypted: list[Column[Any]]
    indexes: list[tuple[Column[Any], BlindIndexInput]]


def _plans() -> list[_TablePlan]:
    plans = []
    for table in Base.metadata.sorted_tables:
        encrypted = [c for c in table.columns if isinstance(c.type, Encrypted)]
        if not encrypted:
            continue
        indexes = [(c, c.info[BLIND_INDEX]) for c in table.columns if BLIND_INDEX in c.info]
        plans.append(_TablePlan(table, list(table.primary_key.columns), encrypted, indexes))
    return plans


def encrypted_columns() -> list[str]:
    """``table.column`` of every encrypted column (what a key rotation rewrites)."""
    return [f"{p.table.name}.{c.name}" for p in _plans() for c in p.encrypted]


def rotate_keys(session: Session, *, batch_size: int = 500) -> int:
    """Re-encrypt every encrypted column and recompute every blind index with the current key.

    Rows are rewritten with conditional UPDATEs (only if the ciphertext is still the one
    read): a value changed meanwhile was written with the current key already. Returns the
    number of rows rewritten. Runs in the caller's transaction.
    """
    ring = keyring()
    return sum(_rotate_table(session, ring, plan, batch_size) for plan in _plans())


def _raw(column: Column[Any]) -> Any:
    return type_coerce(column, Text)


def _rotate_table(session: Session, ring: Keyring, plan: _TablePlan, batch_size: int) -> int:
    encrypted_names = {c.name for c in plan.encrypted}
    columns = [
        _raw(c).label(c.name) if c.name in encrypted_names else c for c in plan.table.columns
    ]
    query = select(*columns).order_by(*plan.key)
    rewritten = 0
    last: tuple[Any, ...] | None = None
    while True:
        batch_query = query
        if last is not None:
            batch_query = query.where(_after(plan.key, last))
        rows = session.execute(batch_query.limit(batch_size)).mappings().all()
        if not rows:
            return rewritten
        for row in rows:
            rewritten += _rotate_row(session, ring, plan, row)
        last = tuple(rows[-1][c.name] for c in plan.key)


def _after(key: list[Column[Any]], last: tuple[Any, ...]) -> Any:
    if len(key) == 1:
        return key[0] > last[0]
    return tuple_(*key) > tuple_(*last)


def _rotate_row(session: Session, ring: Keyring, plan: _TablePlan, row: Any) -> int:
    plain: dict[str, Any] = dict(row)
    values: dict[str, Any] = {}
    for column in plan.encrypted:
        token = row[column.name]
        if token is None:
            continue
        text = ring.decrypt(token)
        plain[column.name] = json.loads(text) if isinstance(column.type, EncryptedJSON) else text
        values[column.name] = ring.encrypt(text)
    for column, source in plan.indexes:
        found = source(plain)
        values[column.name] = None if found is None else ring.blind_index(*found)
    if not values:
        return 0
    same = [c == row[c.name] for c in plan.key]
    for column in plan.encrypted:
        token = row[column.name]
        same.append(column.is_(None) if token is None else _raw(column) == token)
    raw_values = {
        name: type_coerce(value, Text) if name in {c.name for c in plan.encrypted} else value
        for name, value in values.items()
    }
    result = session.execute(update(plan.table).where(and_(*same)).values(raw_values))
    return int(getattr(result, "rowcount", 0) or 0)
