"""The engine's inputs (locations, the destination, order lines, the policy) and its
output (the plan, with its allocations, unfilled lines and shipments)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from mercato.fulfillment.sourcing.geometry import Point, to_point

LocationType = Literal["warehouse", "store", "dropship"]
DeliveryMode = Literal["ship", "pickup"]
FulfilmentMethod = Literal["ship", "pickup", "transfer"]
# variant id -> location id -> available units
StockTable = Mapping[int, Mapping[int, int]]


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True, slots=True)
class Location:
    """A candidate stock location, as the engine sees it.

    ``capacity`` is the number of units it can still pick and dispatch today, shipped or
    transferred (``None``: unlimited). ``code`` is only used in explanations.
    """

    id: int
    type: LocationType
    country: str
    lat: float | None = None
    lng: float | None = None
    can_ship: bool = False
    can_pickup: bool = False
    can_ship_from_store: bool = False
    capacity: int | None = None
    active: bool = True
    code: str = ""
    _point: Point | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_point", to_point(self.lat, self.lng))

    @property
    def label(self) -> str:
        return self.code or f"#{self.id}"


@dataclass(frozen=True, slots=True)
class Destination:
    """The customer's delivery address: its country and, when geocoded, its coordinates.

    ``basis`` says where the coordinates come from ("distance from postal code 10115
    (GeoNames)"); explanations quote it next to each distance."""

    country: str
    lat: float | None = None
    lng: float | None = None
    basis: str = ""
    _point: Point | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_point", to_point(self.lat, self.lng))


@dataclass(frozen=True, slots=True)
class OrderLine:
    """One order line. ``pickup`` lines name their (fixed) pickup store."""

    line_id: str
    variant_id: int
    quantity: int
    mode: DeliveryMode = "ship"
    pickup_location_id: int | None = None
    allow_ship_from_store: bool = True

    def __post_init__(self) -> None:
        if self.quantity < 1:
            raise ValueError(f"line {self.line_id}: quantity must be at least 1")
        if self.mode == "pickup" and self.pickup_location_id is None:
            raise ValueError(f"line {self.line_id}: a pickup line needs its pickup location")
        if self.mode == "ship" and self.pickup_location_id is not None:
            raise ValueError(f"line {self.line_id}: a shipped line has no pickup location")


@dataclass(frozen=True, slots=True)
class SourcingPolicy:
    """Weights of the cost function and sourcing rules (see the module documentation).

    ``min_store_units`` of 1 (the default) lets a store ship any unit it holds.
    """

    cost_per_shipment: float = 5.0
    cost_per_km: float = 0.01
    store_unit_penalty: float = 1.0
    min_store_units: int = 1
    allow_split: bool = True
    max_shipments: int | None = None
    domestic_only: bool = False
    cross_border_penalty: float = 0.0
    unknown_distance_km: float = 1000.0

    def __post_init__(self) -> None:
        weights = (
            self.cost_per_shipment,
            self.cost_per_km,
            self.store_unit_penalty,
            self.cross_border_penalty,
            self.unknown_distance_km,
        )
        if any(w < 0 or math.isnan(w) for w in weights):
            raise ValueError("sourcing weights must be non-negative numbers")
        if self.min_store_units < 0:
            raise ValueError("min_store_units must be non-negative")
        if self.max_shipments is not None and self.max_shipments < 1:
            raise ValueError("max_shipments must be at least 1")


DEFAULT_POLICY = SourcingPolicy()


def index_locations(locations: Iterable[Location]) -> dict[int, Location]:
    """Locations by id, the shape :func:`source_order` takes."""
    return {location.id: location for location in locations}


def stock_table(rows: Iterable[tuple[int, int, int]]) -> dict[int, dict[int, int]]:
    """Build ``variant -> location -> units`` from ``(variant_id, location_id, units)`` rows."""
    table: dict[int, dict[int, int]] = {}
    for variant_id, location_id, units in rows:
        if units > 0:
            per_location = table.setdefault(variant_id, {})
            per_location[location_id] = per_location.get(location_id, 0) + units
    return table


# --------------------------------------------------------------------------- outputs


class UnfilledReason(StrEnum):
    """Why a line could not be filled (the line's ``detail`` says more)."""

    NO_DESTINATION = "no_destination"
    PICKUP_STORE_UNAVAILABLE = "pickup_store_unavailable"
    NO_ELIGIBLE_STOCK = "no_eligible_stock"
    INSUFFICIENT_STOCK = "insufficient_stock"
    NO_CAPACITY = "no_capacity"
    SPLIT_NOT_ALLOWED = "split_not_allowed"
    MAX_SHIPMENTS = "max_shipments"
    TAKEN_BY_OTHER_LINES = "taken_by_other_lines"


@dataclass(frozen=True, slots=True)
class Allocation:
    """``quantity`` units of a line from ``location_id``.

    ``ship``: shipped to the customer; ``pickup``: handed over by the pickup store from its
    own stock; ``transfer``: shipped from the location to the line's pickup store.
    """

    location_id: int
    quantity: int
    method: FulfilmentMethod


@dataclass(frozen=True, slots=True)
class LinePlan:
    line_id: str
    variant_id: int
    quantity: int
    allocations: tuple[Allocation, ...]
    explanation: str


@dataclass(frozen=True, slots=True)
class UnfilledLine:
    line_id: str
    variant_id: int
    quantity: int
    reason: UnfilledReason
    detail: str


@dataclass(frozen=True, slots=True)
class Shipment:
    """One parcel. ``destination_id`` is None for the customer's address, else the id of the
    pickup store receiving a transfer. ``cost`` is its fixed part (shipment, distance,
    cross-border); store unit penalties are counted in the plan's cost."""

    origin_id: int
    destination_id: int | None
    distance_km: float
    cross_border: bool
    cost: float
    units: int
    lines: tuple[tuple[str, int], ...]
    explanation: str


@dataclass(frozen=True, slots=True)
class SourcingPlan:
    """The decision for one order.

    ``lines``: the filled lines, in order, each with its allocations and why; ``unfilled``:
    the others, with the reason; ``shipments``: customer shipments first, then transfers;
    ``cost``: the cost function's value; ``notes``: per target, the shipments chosen and the
    next best alternative found.
    """

    lines: tuple[LinePlan, ...]
    unfilled: tuple[UnfilledLine, ...]
    shipments: tuple[Shipment, ...]
    cost: float
    store_units: int
    notes: tuple[str, ...]

    @property
    def fully_filled(self) -> bool:
        return not self.unfilled

    @property
    def shipment_count(self) -> int:
        """Every shipment, to the customer and to pickup stores."""
        return len(self.shipments)

    @property
    def customer_shipment_count(self) -> int:
        return sum(1 for s in self.shipments if s.destination_id is None)

    @property
    def transfer_count(self) -> int:
        return sum(1 for s in self.shipments if s.destination_id is not None)

    def line(self, line_id: str) -> LinePlan | None:
        return next((line for line in self.lines if line.line_id == line_id), None)

    def explain(self) -> str:
        text = [*self.notes]
        text += [f"{line.line_id}: {line.explanation}" for line in self.lines]
        text += [f"{u.line_id}: not filled ({u.reason.value}): {u.detail}" for u in self.unfilled]
        text.append(f"total cost {self.cost:.2f}, {self.shipment_count} shipment(s)")
        return "\n".join(text)
