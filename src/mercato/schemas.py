"""Base classes for API models shared by every domain."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")

# An amount to compare stored amounts with (list filters): no finer and no larger than
# amounts are kept (18 digits, 4 of them decimals), so the comparison is exact everywhere.
MoneyFilter = Annotated[
    Decimal,
    Field(max_digits=18, decimal_places=4, allow_inf_nan=False, examples=["25.00"]),
]


class StrictModel(BaseModel):
    """Request bodies: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ResponseModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class PageOut(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None
