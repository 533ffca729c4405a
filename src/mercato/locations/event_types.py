"""The locations domain's events: warehouses, stores and suppliers added or changed."""

from __future__ import annotations

from dataclasses import dataclass

from mercato.event_types import DomainEvent


@dataclass(frozen=True, kw_only=True)
class LocationFacts(DomainEvent):
    AGGREGATE = "location"
    KEY = "id"

    id: int
    code: str
    name: str
    type: str
    country: str
    active: bool


@dataclass(frozen=True, kw_only=True)
class LocationCreated(LocationFacts):
    """A warehouse, store or dropship supplier was added."""

    TYPE = "location.created"


@dataclass(frozen=True, kw_only=True)
class LocationUpdated(LocationFacts):
    """A location changed (address, hours, capabilities, active)."""

    TYPE = "location.updated"
