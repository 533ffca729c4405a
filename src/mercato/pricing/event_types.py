"""The pricing domain's events."""

from __future__ import annotations

from dataclasses import dataclass

from mercato.event_types import DomainEvent


@dataclass(frozen=True, kw_only=True)
class PricesChanged(DomainEvent):
    """Prices of a price list (``price_list``: its code) were set or loaded, for the
    variants listed."""

    TYPE = "prices.changed"
    AGGREGATE = "price_list"

    price_list_id: int
    price_list: str
    variant_ids: tuple[int, ...]
