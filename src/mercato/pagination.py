"""Opaque cursor pagination shared by every list endpoint.

A cursor is the sort key of the last row of a page. Whatever a client sends back is
untrusted: :func:`decode_id_cursor` and :func:`decode_key_cursor` accept only the shape
their list issues, so a cursor from another list, or garbage, is a 422 naming
``query.cursor`` and never reaches the database.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from mercato.errors import ValidationProblem

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
# Far longer than any cursor this API issues; longer input is not worth decoding.
MAX_CURSOR_LENGTH = 512
# Keys are BIGINT ids: anything outside that range cannot be one (and would overflow the
# database driver instead of failing cleanly).
_MAX_KEY = 2**63 - 1

CURSOR_FIELD = "query.cursor"
CURSOR_REASON = "not a cursor returned by this API"


@dataclass
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


def bad_cursor() -> ValidationProblem:
    return ValidationProblem.field(CURSOR_FIELD, CURSOR_REASON)


def encode_cursor(value: Any) -> str:
    raw = json.dumps({"k": value}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _is_key(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and -_MAX_KEY <= value <= _MAX_KEY


def decode_cursor(cursor: str | None) -> Any:
    """The cursor's key: an integer or a list of integers (the only shapes issued), else 422.

    Lists that need one particular shape use :func:`decode_id_cursor` or
    :func:`decode_key_cursor`.
    """
    if not cursor:
        return None
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise bad_cursor()
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        value = data["k"]
    except (ValueError, KeyError, TypeError, IndexError, binascii.Error, RecursionError) as exc:
        raise bad_cursor() from exc
    if _is_key(value):
        return value
    if isinstance(value, list) and value and all(_is_key(v) for v in value):
        return value
    raise bad_cursor()


def decode_id_cursor(cursor: str | None) -> int | None:
    """A cursor of a list ordered by id."""
    value = decode_cursor(cursor)
    if value is None:
        return None
    if not _is_key(value):
        raise bad_cursor()
    return int(value)


def decode_key_cursor(cursor: str | None, size: int) -> tuple[int, ...] | None:
    """A cursor of a list ordered by a composite key of ``size`` integers."""
    value = decode_cursor(cursor)
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != size:
        raise bad_cursor()
    return tuple(int(v) for v in value)


def page_of(rows: Sequence[T], limit: int, key: Callable[[T], Any]) -> Page[T]:
    """``rows`` was fetched with ``limit + 1`` so that a next page can be detected."""
    items = list(rows[:limit])
    more = len(rows) > limit
    return Page(items=items, next_cursor=encode_cursor(key(items[-1])) if more and items else None)
