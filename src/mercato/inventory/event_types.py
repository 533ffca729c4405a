"""The inventory domain's events: stock levels that changed or ran low, transfers shipped
and received."""

from __future__ import annotations

from dataclasses import dataclass

from mercato.event_types import DomainEvent


@dataclass(frozen=True, kw_only=True)
class StockFacts(DomainEvent):
    """One variant's stock at one location after a change, and the change itself."""

    AGGREGATE = "stock"

    variant_id: int
    location_id: int
    on_hand: int
    reserved: int
    safety_stock: int
    available: int
    incoming: int
    reason: str
    on_hand_delta: int
    reserved_delta: int

    def aggregate_id(self) -> str:
        # A stock level has no id of its own: it is the (variant, location) pair.
        return f"{self.variant_id}:{self.location_id}"


@dataclass(frozen=True, kw_only=True)
class StockChanged(StockFacts):
    """A variant's stock at a location changed (receipt, sale, hold, count, transfer...)."""

    TYPE = "stock.changed"


@dataclass(frozen=True, kw_only=True)
class StockLow(StockFacts):
    """What a location can still sell of a variant fell below its low-stock threshold."""

    TYPE = "stock.low"

    threshold: int


@dataclass(frozen=True, kw_only=True)
class TransferShipped(DomainEvent):
    """A transfer left its origin: the units are on the way to the destination."""

    TYPE = "transfer.shipped"
    AGGREGATE = "transfer"

    transfer_id: int


@dataclass(frozen=True)
class TransferDiscrepancy:
    """A line of a transfer that arrived short."""

    variant_id: int
    shipped: int
    received: int
    missing: int


@dataclass(frozen=True, kw_only=True)
class TransferReceived(DomainEvent):
    """A transfer arrived; ``discrepancies`` lists the lines received short of what was
    shipped."""

    TYPE = "transfer.received"
    AGGREGATE = "transfer"

    transfer_id: int
    discrepancies: tuple[TransferDiscrepancy, ...]
