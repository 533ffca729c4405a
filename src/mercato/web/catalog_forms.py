"""What the catalog and promotions pages share to read forms: field messages from a
domain's 422 or a schema's validation error, and blank fields read as "not given"."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from pydantic import ValidationError
from sqlalchemy.orm import Session

from mercato.catalog import service
from mercato.catalog.api import category_out
from mercato.catalog.schemas import CategoryOut
from mercato.errors import Problem, validation_errors


def field_messages(error: Problem | ValidationError, prefix: str = "body.") -> dict[str, str]:
    """{form field: reason}, the field named as the API names it without ``body.``; a
    problem that names no field is kept under ``_`` (shown above the form)."""
    if isinstance(error, ValidationError):
        found = validation_errors(error.errors())
        messages = {e["field"].removeprefix(prefix): e["reason"] for e in found}
        return messages or {"_": str(error)}
    messages = {e["field"].removeprefix(prefix): e["reason"] for e in error.errors}
    if not messages:
        messages["_"] = error.detail
    return messages


def blank_none(value: str | None) -> str | None:
    """A text field left empty means "none", not an empty string."""
    if value is None:
        return None
    value = value.strip()
    return value or None


def optional_int(value: str | None) -> int | None:
    value = blank_none(value)
    return int(value) if value is not None and value.lstrip("-").isdigit() else None


def decimal_or_none(value: str | None) -> Decimal | None:
    value = blank_none(value)
    if value is None:
        return None
    try:
        return Decimal(value.replace(",", "."))
    except InvalidOperation:
        return None


def all_categories(session: Session) -> list[CategoryOut]:
    """Every category in tree order (as ``GET /v1/categories`` pages them)."""
    found: list[CategoryOut] = []
    cursor: str | None = None
    while True:
        result = service.page_categories(session, cursor=cursor, limit=200)
        names = service.category_translations(session, [c.id for c in result.items])
        found += [category_out(c, names.get(c.id, {})) for c in result.items]
        cursor = result.next_cursor
        if cursor is None:
            return found


def category_labels(categories: list[CategoryOut]) -> dict[int, str]:
    """Each category with its ancestors ("Coffee / Beans"), for pickers and the list."""
    by_id = {c.id: c for c in categories}

    def label(category: CategoryOut) -> str:
        names, seen, current = [category.name], {category.id}, category
        while current.parent_id is not None and current.parent_id in by_id:
            current = by_id[current.parent_id]
            if current.id in seen:
                break
            seen.add(current.id)
            names.append(current.name)
        return " / ".join(reversed(names))

    return {c.id: label(c) for c in categories}
