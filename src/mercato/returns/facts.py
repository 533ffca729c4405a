"""What the returns domain reads of an order, as the orders service hands it over.

Returns are checked and priced against the order they come from, but the order belongs to
the orders domain: these protocols name the facts read, so that returns never depend on
how orders store them.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol


class OrderFacts(Protocol):
    """The order a return is for."""

    @property
    def id(self) -> int: ...

    @property
    def number(self) -> str: ...

    @property
    def channel_id(self) -> int: ...

    @property
    def customer_id(self) -> int | None: ...

    @property
    def currency(self) -> str: ...

    @property
    def price_list(self) -> str | None: ...

    @property
    def shipping_address(self) -> dict[str, Any] | None: ...

    @property
    def billing_address(self) -> dict[str, Any] | None: ...

    @property
    def placed_at(self) -> datetime | None: ...

    @property
    def created_at(self) -> datetime: ...


class OrderLineFacts(Protocol):
    """A line of that order: what was bought, what it cost, how much came back."""

    @property
    def id(self) -> int: ...

    @property
    def variant_id(self) -> int: ...

    @property
    def sku(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def quantity(self) -> int: ...

    @property
    def returned_quantity(self) -> int: ...

    @property
    def total(self) -> Decimal: ...
