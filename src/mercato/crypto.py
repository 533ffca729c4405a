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
it), deploy, run :func:`mercato.key_rotation.rotate_keys` (it re-encrypts every encrypted
column of every table and recomputes every blind index with the current key), then drop
the old keys. A column
declares how its blind index is computed with ``info={BLIND_INDEX: fn}``, ``fn`` taking
the row's decrypted values and returning ``(kind, value)`` or ``None``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import operator
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import Text
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import TypeDecorator

from mercato import instance_keys
from mercato.instance_keys import parse_keys as parse_keys
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


class Encrypted(TypeDecorator[Any]):
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


class EncryptedString(Encrypted):
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


class EncryptedJSON(Encrypted):
    """A JSON document (addresses) stored as one Fernet token."""

    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        if value is None:
            return None
        raw = json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
        return keyring().encrypt(raw)

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        return None if value is None else json.loads(keyring().decrypt(str(value)))
