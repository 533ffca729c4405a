"""Base classes for API models shared by every domain."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

T = TypeVar("T")

# An amount to compare stored amounts with (list filters): no finer and no larger than
# amounts are kept (18 digits, 4 of them decimals), so the comparison is exact everywhere.
MoneyFilter = Annotated[
    Decimal,
    Field(max_digits=18, decimal_places=4, allow_inf_nan=False, examples=["25.00"]),
]


class StrictModel(BaseModel):
    """Request bodies: unknown fields are an error, not silently dropped, and no text holds
    a NUL character (PostgreSQL cannot store it), however the model was given: a JSON
    body, a row of an imported file, a command's arguments."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul_characters(cls, value: Any) -> Any:
        if holds_nul(value):
            raise ValueError(NUL_REASON)
        return value


NUL_REASON = "must not contain the NUL character"


def holds_nul(value: Any) -> bool:
    """Whether text in ``value`` (or in the lists and mappings it holds) has a NUL."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list | tuple | set | frozenset):
        return any(holds_nul(item) for item in value)
    if isinstance(value, dict):
        return any(holds_nul(k) or holds_nul(v) for k, v in value.items())
    return False


class ResponseModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class PageOut(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None
