"""Field-level encryption of personal data at rest, and keyed hashes to find it.

**Keys.** ``MERCATO_ENCRYPTION_KEYS`` holds one or more Fernet keys (AES-128-CBC with
HMAC-SHA256, ``Fernet.generate_key()``), comma-separated, the current key first. New
values are encrypted with the current key; any listed key decrypts (``MultiFernet``).
When the setting is unset, a key is derived from ``Settings.secret_key`` with
HKDF-SHA256 (for tests and embedded use; the secret key has no default and a published
one is refused, see ``mercato.instance_keys``). ``mercato serve`` requires real keys.

**Columns.** ``EncryptedString`` and ``EncryptedJSON`` are SQLAlchemy types that encrypt
on write and decrypt on read, so a database dump or a backup alone shows only Fernet
tokens. Ciphertexts are randomised, so such a column cannot be compared in SQL (the
types refuse it); values are found through a **blind index** instead: an HMAC-SHA256 of
the normalised value under a key derived (HKDF, its own label) from the encryption key.
A lookup compares against the index under every configured key, so lookups keep working
while keys are being rotated.

**Rotation.** Put a new key first in ``MERCATO_ENCRYPTION_KEYS`` (keep the old ones after
it), deploy, run :func:`rotate_keys` (it re-encrypts every encrypted column of every table
and recomputes every blind index with the current key), then drop the old keys. A column
declares how its blind index is computed with ``info={BLIND_INDEX: fn}``, ``fn`` taking
the row's decrypted values and returning ``(kind, value)`` or ``None``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import operator
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import Column, Table, Text, and_, select, type_coerce, update
from sqlalchemy.orm import Session
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import TypeDecorator

from mercato import instance_keys
from mercato.settings import get_settings

# Column.info key naming the function that gives a blind index column its input.
BLIND_INDEX = "mercato_blind_index"
BlindIndexInput = Callable[[Mapping[str, Any]], tuple[str, str] | None]

_ENCRYPTION_LABEL = b"mercato/privacy/encryption/v1"
_INDEX_LABEL = b"mercato/privacy/blind-index/v1"


class DecryptionError(RuntimeError):
    """A stored value that no configured key opens: a key is missing from the setting."""


def _hkdf(material: bytes, label: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label).derive(material)


def development_key(secret_key: str) -> bytes:
    """The Fernet key used when no keys are configured, derived from the secret key."""
    return base64.urlsafe_b64encode(_hkdf(secret_key.encode(), _ENCRYPTION_LABEL))


def generate_key() -> str:
    """A new random Fernet key, for ``MERCATO_ENCRYPTION_KEYS``."""
    return Fernet.generate_key().decode()


def parse_keys(spec: str) -> list[bytes]:
    """The keys of a ``MERCATO_ENCRYPTION_KEYS`` value, or ValueError naming the bad one."""
    keys = [part.strip().encode() for part in spec.split(",") if part.strip()]
    if not keys:
        raise ValueError("MERCATO_ENCRYPTION_KEYS is set but lists no key")
    for n, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except (ValueError, binascii.Error) as exc:
            raise ValueError(
                f"MERCATO_ENCRYPTION_KEYS key #{n} is not a Fernet key "
                "(32 url-safe base64-encoded bytes)"
            ) from exc
    if len(set(keys)) != len(keys):
        raise ValueError("MERCATO_ENCRYPTION_KEYS lists the same key twice")
    return keys


class Keyring:
    """The configured keys: the first encrypts and indexes, all of them decrypt and find."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("a keyring needs at least one key")
        self._fernet = MultiFernet([Fernet(key) for key in keys])
        self._index_keys = [_hkdf(base64.urlsafe_b64decode(key), _INDEX_LABEL) for key in keys]

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode()
        except (InvalidToken, UnicodeEncodeError) as exc:
            raise DecryptionError(
                "a stored personal data value cannot be decrypted with the keys in "
                "MERCATO_ENCRYPTION_KEYS (was a key removed before rotate_keys ran?)"
            ) from exc

    def blind_index(self, kind: str, value: str) -> str:
        """The keyed hash under the current key: what a new row stores."""
        return _hmac(self._index_keys[0], kind, value)

    def blind_indexes(self, kind: str, value: str) -> list[str]:
        """The keyed hash under every key, current first: what a lookup compares with."""
        return [_hmac(key, kind, value) for key in self._index_keys]


def _hmac(key: bytes, kind: str, value: str) -> str:
    # The kind is part of the input: the same string as an email and as a name hash apart.
    message = kind.encode() + b"\x1f" + value.encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


@lru_cache(maxsize=8)
def _ring_for(spec: str) -> Keyring:
    return Keyring(parse_keys(spec))


@lru_cache(maxsize=8)
def _derived_ring(secret_key: str) -> Keyring:
    return Keyring([development_key(secret_key)])


_override: list[Keyring] = []


def keyring() -> Keyring:
    """The keys in force: a test or a rotation tool's override, else the settings'."""
    if _override:
        return _override[-1]
    settings = get_settings()
    if settings.encryption_keys:
        return _ring_for(settings.encryption_keys)
    # Never the published development secret: instance_keys refuses it and an unset one.
    return _derived_ring(instance_keys.secret_key(settings))


@contextmanager
def using_keys(spec: str) -> Iterator[Keyring]:
    """Run with the keys of ``spec`` (same format as the setting) instead of the settings'."""
    ring = Keyring(parse_keys(spec))
    _override.append(ring)
    try:
        yield ring
    finally:
        _override.remove(ring)


def blind_index(kind: str, value: str) -> str:
    return keyring().blind_index(kind, value)


def blind_indexes(kind: str, value: str) -> list[str]:
    return keyring().blind_indexes(kind, value)


# Comparing ciphertexts in SQL is always a bug: equal plaintexts encrypt differently.
_REFUSED = frozenset(
    {
        operators.eq,
        operators.ne,
        operators.lt,
        operators.le,
        operators.gt,
        operators.ge,
        operators.in_op,
        operators.not_in_op,
        operators.like_op,
        operators.ilike_op,
        operators.contains_op,
        operators.startswith_op,
        operators.endswith_op,
        operators.between_op,
        operator.eq,
        operator.ne,
    }
)


class _Encrypted(TypeDecorator[Any]):
    impl = Text
    cache_ok = True

    class Comparator(TypeDecorator.Comparator[Any]):
        def operate(self, op: Any, *other: Any, **kwargs: Any) -> Any:
            # Comparing with another column is how SQLAlchemy finds a column in its own
            # mappings (dict lookups end in ``==``); only comparing with values is a bug.
            if op in _REFUSED and not all(isinstance(o, ColumnElement) for o in other):
                raise TypeError("an encrypted column cannot be compared: use its blind index")
            return super().operate(op, *other, **kwargs)

    comparator_factory = Comparator


class EncryptedString(_Encrypted):
    """A string stored as a Fernet token under the current key."""

    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise TypeError(f"EncryptedString takes str, not {type(value).__name__}")
        return keyring().encrypt(value)

    def process_result_value(self, value: Any, dialect: Any) -> str | None:
        return None if value is None else keyring().decrypt(str(value))


class EncryptedJSON(_Encrypted):
    """A JSON document (addresses) stored as one Fernet token."""

    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        if value is None:
            return None
        raw = json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
        return keyring().encrypt(raw)

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        return None if value is None else json.loads(keyring().decrypt(str(value)))


@dataclass(frozen=True)
class _TablePlan:
    table: Table
    key: list[Column[Any]]
    encrypted: list[Column[Any]]
    indexes: list[tuple[Column[Any], BlindIndexInput]]


def _plans() -> list[_TablePlan]:
    import mercato.models  # noqa: F401  (every domain's tables, so none is missed)
    from mercato.db import Base

    plans = []
    for table in Base.metadata.sorted_tables:
        encrypted = [c for c in table.columns if isinstance(c.type, _Encrypted)]
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
    from sqlalchemy import tuple_

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
