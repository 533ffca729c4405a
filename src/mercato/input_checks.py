"""Input that every supported database can store, checked once for every route.

Python integers have no size and Python strings may hold NUL; database columns cannot:
an integer beyond a BIGINT overflows the SQLite driver or fails the PostgreSQL statement,
and PostgreSQL text refuses NUL. Left to the database, such input is a 500 in whatever
endpoint first hands it over. :class:`mercato.routing.StrictRoute` runs these checks on
the path, query and header parameters and on JSON bodies before the endpoint sees them,
so they are 422s naming the field, whatever the endpoint.
"""

from __future__ import annotations

import json
import re
import types
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Union, get_args, get_origin

from fastapi.dependencies.models import Dependant
from pydantic import TypeAdapter, ValidationError

from mercato.errors import FieldError, ValidationProblem
from mercato.schemas import NUL_REASON

# The range of a BIGINT (the type of every id) on PostgreSQL and of an SQLite integer.
MAX_BIGINT = 2**63 - 1
MIN_BIGINT = -MAX_BIGINT
INTEGER_REASON = f"must be between {MIN_BIGINT} and {MAX_BIGINT}"
ENCODING_REASON = "not UTF-8 encoded JSON"

# Only a body holding one of these needs a closer look: an escaped NUL, or a number of
# 19 digits or more (2**63 has 19). Most bodies are passed on without being parsed twice.
_SUSPECT_BODY = re.compile(rb"\\u0000|[0-9]{19}")
_INT = TypeAdapter(int)


def _holds_int(annotation: Any) -> bool:
    """``int``, ``int | None`` or a list of them: a parameter parsed into a Python int."""
    if annotation is int:
        return True
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType, list, tuple, set, frozenset):
        return any(_holds_int(arg) for arg in get_args(annotation))
    return False


class ParamChecks:
    """The checks for one route's parameters, worked out once from its dependencies."""

    def __init__(self, dependant: Dependant) -> None:
        self.int_names: dict[str, set[str]] = {"path": set(), "query": set(), "header": set()}
        self.header_names: set[str] = set()
        for where, fields in _parameters(dependant):
            for field in fields:
                name = _header_key(field.alias) if where == "header" else field.alias
                if where == "header":
                    self.header_names.add(name)
                if _holds_int(field.field_info.annotation):
                    self.int_names[where].add(name)

    def problems(
        self,
        path: Mapping[str, Any],
        query: Iterable[tuple[str, str]],
        headers: Iterable[tuple[str, str]],
    ) -> list[FieldError]:
        found: list[FieldError] = []
        given = (
            ("path", ((k, str(v)) for k, v in path.items())),
            ("query", query),
            ("header", ((k, v) for k, v in headers if _header_key(k) in self.header_names)),
        )
        for where, pairs in given:
            for name, value in pairs:
                key = _header_key(name) if where == "header" else name
                if "\x00" in value:
                    found.append(FieldError(f"{where}.{key}", NUL_REASON))
                elif key in self.int_names[where] and not _fits_bigint(value):
                    found.append(FieldError(f"{where}.{key}", INTEGER_REASON))
        return found


def _header_key(name: str) -> str:
    return name.lower().replace("_", "-")


def id_list(raw: str, field: str, maximum: int = 200) -> list[int]:
    """Comma-separated ids from one query parameter (``1,2,3``): 1 to ``maximum`` whole
    numbers, each one an id could be, in the order given; else a 422 naming ``field``."""
    try:
        ids = [int(part) for part in raw.split(",") if part.strip()]
    except ValueError as exc:
        raise ValidationProblem.field(field, "comma-separated whole numbers") from exc
    if not ids or len(ids) > maximum:
        raise ValidationProblem.field(field, f"1 to {maximum} ids")
    if not all(MIN_BIGINT <= value <= MAX_BIGINT for value in ids):
        raise ValidationProblem.field(field, INTEGER_REASON)
    return ids


def _parameters(dependant: Dependant) -> Iterator[tuple[str, list[Any]]]:
    yield "path", dependant.path_params
    yield "query", dependant.query_params
    yield "header", dependant.header_params
    for sub in dependant.dependencies:
        yield from _parameters(sub)


def _fits_bigint(raw: str) -> bool:
    """False only for text that parses as an integer outside the BIGINT range (anything
    that does not parse is left to the parameter's own validation)."""
    if len(raw.strip().lstrip("+-").lstrip("0")) < 19:
        return True
    try:
        value = _INT.validate_python(raw)
    except ValidationError:
        return True
    return MIN_BIGINT <= value <= MAX_BIGINT


def body_problems(raw: bytes) -> list[FieldError]:
    """Integers no database column holds and NUL characters anywhere in a JSON body, or a
    body that is not UTF-8 at all (JSON between systems is UTF-8, RFC 8259)."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return [FieldError("body", ENCODING_REASON)]
    if not _SUSPECT_BODY.search(raw):
        return []
    try:
        data = json.loads(raw)
    except ValueError:
        return []  # not JSON: the route's body validation says so
    return list(_walk(data, "body"))


def _walk(value: Any, at: str) -> Iterator[FieldError]:
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        if not MIN_BIGINT <= value <= MAX_BIGINT:
            yield FieldError(at, INTEGER_REASON)
    elif isinstance(value, str):
        if "\x00" in value:
            yield FieldError(at, NUL_REASON)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk(item, f"{at}[{index}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in key:
                yield FieldError(f"{at}.{key.replace(chr(0), '')}", NUL_REASON)
            else:
                yield from _walk(item, f"{at}.{key}")
