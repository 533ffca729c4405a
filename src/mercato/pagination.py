"""Opaque cursor pagination shared by every list endpoint."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from mercato.errors import ValidationProblem

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


@dataclass
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


def encode_cursor(value: Any) -> str:
    raw = json.dumps({"k": value}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> Any:
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        return data["k"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValidationProblem.field("query.cursor", "not a cursor returned by this API") from exc


def page_of(rows: Sequence[T], limit: int, key: Callable[[T], Any]) -> Page[T]:
    """``rows`` was fetched with ``limit + 1`` so that a next page can be detected."""
    items = list(rows[:limit])
    more = len(rows) > limit
    return Page(items=items, next_cursor=encode_cursor(key(items[-1])) if more and items else None)
