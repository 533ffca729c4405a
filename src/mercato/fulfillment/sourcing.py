"""Order sourcing: decide which stock locations fulfil each line of an order.

A pure decision engine. The fulfilment service loads the candidate locations and the
available stock (already net of reservations and safety stock) and calls
:func:`source_order`; nothing here touches a database, and the same inputs always give the
same plan.

Shipments
---------
A *shipment* is one parcel from an origin location to one target:

* the customer's address, for lines delivered by ``ship``;
* a pickup store, for click & collect lines the store cannot serve from its own stock
  (a transfer from another location to the store).

Units a pickup store hands over from its own stock are not a shipment.

Cost function
-------------
Costs are abstract scores (not money), used everywhere, including by the benchmark's exact
optimiser::

    cost = Σ over shipments  ( cost_per_shipment
                             + cost_per_km * distance_km(origin, target)
                             + cross_border_penalty  if origin.country ≠ target country )
         + Σ over units shipped or transferred from a store  store_unit_penalty

``distance_km`` is the great-circle (haversine) distance; when the origin or the target has
no coordinates it is ``policy.unknown_distance_km`` (explanations then say "no coordinates:
assumed far"). Addresses and locations are geocoded offline (``mercato.geocoding``), so this
only happens for a country Mercato knows nothing about. Units a pickup store hands over from its
own shelf carry no store penalty: moving stock the store already holds can never be cheaper
than using it.

Objective: fill as many lines as possible (a line is filled completely or not at all), then
minimise the cost; equal costs go to fewer shipments, then to lower location ids.

Rules
-----
* stock: never more than ``stock[variant][location]`` across all lines of the order;
* capability and status: an origin must be active and not excluded; a store ships (to the
  customer or to another store) only with ``can_ship_from_store`` and only lines that allow
  ship-from-store; warehouses and dropship suppliers need ``can_ship``; a pickup store needs
  ``can_pickup`` and ``active``;
* capacity: ``Location.capacity`` is the number of *units* the location can still pick and
  dispatch today (shipped to customers plus transferred to pickup stores), ``None`` meaning
  unlimited; units a pickup store hands over from its own shelf do not use it;
* ``min_store_units``: a store holding fewer available units of a variant never ships it
  (its own click & collect customers may still take them);
* ``allow_split``: when false, each target (the customer's address, each pickup store)
  receives at most one shipment and no line is divided between locations;
* ``max_shipments``: at most that many shipments to the customer's address (transfers to
  pickup stores are internal and not counted);
* ``domestic_only`` rejects origins outside the target's country; ``cross_border_penalty``
  is added per shipment that crosses a border;
* ``excluded`` locations (those that rejected a line) are never used; an excluded pickup store
  still receives transfers, since the customer's pickup point does not change.

Algorithm
---------
Lines are grouped by target: the customer's address, and each pickup store, whose own shelf
is a free source that is always open for its lines. Groups share stock and capacity, so they
are solved one after the other on what the previous ones left; with up to three groups every
order is tried and the best plan kept (most lines filled, then lowest cost). In each group:

1. candidates are the eligible locations holding a needed variant, each with the fixed cost
   of a shipment from it (distance, cross-border) and its per-unit store penalty;
2. every location able to fill the whole group alone is priced, cheapest shipment first,
   stopping once the shipment cost alone exceeds the best found. When the best costs no more
   than the two cheapest shipments together no split can beat it: most orders end here;
3. otherwise, with splitting allowed, a greedy set cover (units covered per unit of cost),
   trimmed of the shipments it no longer needs, gives a first solution. A depth-first branch
   and bound then goes through the combinations of candidates (up to three locations, or as
   many as the first solution used) drawn from a pool: each line's six cheapest sources and
   every location that no cheaper one beats on the set of lines it can serve whole. A branch
   is cut as soon as its shipment costs reach the best solution, and a combination is only
   priced when it could cover every line. With splitting off, each location is tried alone.

Given a set of open locations, units are assigned line by line, lines with the fewest options
first: the pickup store's shelf, then warehouses before stores, larger holdings first. When a
line that the locations could serve is crowded out, the assignment is redone with the
crowded-out lines first, and with the smallest lines first.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

__all__ = [
    "DEFAULT_POLICY",
    "EARTH_RADIUS_KM",
    "Allocation",
    "DeliveryMode",
    "Destination",
    "FulfilmentMethod",
    "LinePlan",
    "Location",
    "LocationType",
    "OrderLine",
    "Shipment",
    "SourcingPlan",
    "SourcingPolicy",
    "StockTable",
    "UnfilledLine",
    "UnfilledReason",
    "distance_km",
    "haversine_km",
    "index_locations",
    "ship_rejection",
    "shipment_cost",
    "source_order",
    "stock_table",
    "unit_penalty",
    "verify_plan",
]

LocationType = Literal["warehouse", "store", "dropship"]
DeliveryMode = Literal["ship", "pickup"]
FulfilmentMethod = Literal["ship", "pickup", "transfer"]
# variant id -> location id -> available units
StockTable = Mapping[int, Mapping[int, int]]

EARTH_RADIUS_KM = 6371.0088

_UNLIMITED = 1 << 62
_EPS = 1e-9
# Search breadth: candidates kept per line for the combination search, in total, and the
# combination size always searched exactly.
_POOL_PER_LINE = 6
_POOL_LIMIT = 16
_SEARCH_DEPTH = 3

# A point as a unit vector: the great-circle distance is then one chord away, with no
# trigonometry per pair.
_Point = tuple[float, float, float]


def _to_point(lat: float | None, lng: float | None) -> _Point | None:
    if lat is None or lng is None:
        return None
    phi = math.radians(lat)
    lam = math.radians(lng)
    return (math.cos(phi) * math.cos(lam), math.cos(phi) * math.sin(lam), math.sin(phi))


def _arc_km(a: _Point, b: _Point) -> float:
    dx = a[0] - b[0]
    dy = a[1] - b[1]
    dz = a[2] - b[2]
    half_chord = math.sqrt(dx * dx + dy * dy + dz * dz) * 0.5
    return 2.0 * EARTH_RADIUS_KM * math.asin(half_chord if half_chord < 1.0 else 1.0)


def haversine_km(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Great-circle distance between two points, in kilometres (the haversine formula)."""
    phi1 = math.radians(lat1)
    phi2 = math.radians(lat2)
    s_lat = math.sin((phi2 - phi1) * 0.5)
    s_lng = math.sin(math.radians(lng2 - lng1) * 0.5)
    h = s_lat * s_lat + math.cos(phi1) * math.cos(phi2) * s_lng * s_lng
    return 2.0 * EARTH_RADIUS_KM * math.asin(math.sqrt(min(1.0, h)))


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
    _point: _Point | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_point", _to_point(self.lat, self.lng))

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
    _point: _Point | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_point", _to_point(self.lat, self.lng))


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


# --------------------------------------------------------------------------- rules and costs

_OK = 0
_INACTIVE = 1
_EXCLUDED = 2
_CANNOT_SHIP = 3
_NO_SHIP_FROM_STORE = 4
_LINE_FORBIDS_STORE = 5
_BELOW_MIN = 6
_NO_CAPACITY = 7
_ABROAD = 8
_NO_STOCK = 9


def _ship_check(
    origin: Location,
    available: int,
    allow_ship_from_store: bool,
    target_country: str,
    policy: SourcingPolicy,
    excluded: Collection[int],
) -> int:
    if available <= 0:
        return _NO_STOCK
    if not origin.active:
        return _INACTIVE
    if origin.id in excluded:
        return _EXCLUDED
    if origin.type == "store":
        if not origin.can_ship_from_store:
            return _NO_SHIP_FROM_STORE
        if not allow_ship_from_store:
            return _LINE_FORBIDS_STORE
        if available < policy.min_store_units:
            return _BELOW_MIN
    elif not origin.can_ship:
        return _CANNOT_SHIP
    if origin.capacity is not None and origin.capacity <= 0:
        return _NO_CAPACITY
    if policy.domestic_only and origin.country != target_country:
        return _ABROAD
    return _OK


def _rejection_text(code: int, origin: Location, available: int, policy: SourcingPolicy) -> str:
    if code == _BELOW_MIN:
        unit = "unit" if available == 1 else "units"
        return f"only {available} {unit} (< min {policy.min_store_units})"
    if code == _ABROAD:
        return f"in {origin.country}, domestic shipping only"
    return _REJECTION_TEXT[code]


_REJECTION_TEXT = {
    _INACTIVE: "inactive",
    _EXCLUDED: "excluded",
    _CANNOT_SHIP: "cannot ship",
    _NO_SHIP_FROM_STORE: "no ship-from-store",
    _LINE_FORBIDS_STORE: "line does not allow ship-from-store",
    _NO_CAPACITY: "no capacity left today",
    _NO_STOCK: "no stock",
}


def ship_rejection(
    origin: Location,
    line: OrderLine,
    available: int,
    target_country: str,
    policy: SourcingPolicy = DEFAULT_POLICY,
    excluded: Collection[int] = frozenset(),
) -> str | None:
    """Why ``origin`` may not ship ``line``'s variant to a target in ``target_country``
    (the customer, or a pickup store for a transfer), or None when it may.

    ``available`` is the location's available stock of the variant before this order.
    Capacity is only checked for being used up; staying within it is the caller's job.
    """
    code = _ship_check(
        origin, available, line.allow_ship_from_store, target_country, policy, excluded
    )
    return None if code == _OK else _rejection_text(code, origin, available, policy)


def _leg(
    origin: Location, country: str, point: _Point | None, policy: SourcingPolicy
) -> tuple[float, float]:
    if origin._point is None or point is None:
        km = policy.unknown_distance_km
    else:
        km = _arc_km(origin._point, point)
    cost = policy.cost_per_shipment + policy.cost_per_km * km
    if origin.country != country:
        cost += policy.cross_border_penalty
    return km, cost


def distance_km(
    origin: Location, target: Location | Destination, policy: SourcingPolicy = DEFAULT_POLICY
) -> float:
    """The distance the cost function uses (``unknown_distance_km`` without coordinates)."""
    return _leg(origin, target.country, target._point, policy)[0]


def shipment_cost(
    origin: Location, target: Location | Destination, policy: SourcingPolicy = DEFAULT_POLICY
) -> float:
    """The fixed cost of one shipment from ``origin`` to ``target``."""
    return _leg(origin, target.country, target._point, policy)[1]


def unit_penalty(origin: Location, policy: SourcingPolicy = DEFAULT_POLICY) -> float:
    """The cost of each unit ``origin`` ships or transfers."""
    return policy.store_unit_penalty if origin.type == "store" else 0.0


# --------------------------------------------------------------------------- search


class _Demand:
    __slots__ = ("allow_sfs", "line", "quantity", "variant")

    def __init__(self, line: int, variant: int, quantity: int, allow_sfs: bool) -> None:
        self.line = line
        self.variant = variant
        self.quantity = quantity
        self.allow_sfs = allow_sfs


class _Target:
    __slots__ = ("basis", "country", "label", "point", "store_id")

    def __init__(
        self, store_id: int | None, country: str, point: _Point | None, label: str, basis: str = ""
    ) -> None:
        self.store_id = store_id
        self.country = country
        self.point = point
        self.label = label
        self.basis = basis

    def distance_text(self, origin: Location, km: float) -> str:
        """The distance as explanations give it, with where it comes from."""
        if origin._point is None or self.point is None:
            return f"no coordinates: assumed far ({km:.0f} km)"
        return f"{km:.0f} km ({self.basis})" if self.basis else f"{km:.0f} km"


_Take = list[tuple[int, int]]


class _Solution:
    __slots__ = ("allocs", "cost", "filled", "origins")

    def __init__(
        self, filled: int, cost: float, origins: tuple[int, ...], allocs: list[_Take | None]
    ) -> None:
        self.filled = filled
        self.cost = cost
        self.origins = origins
        self.allocs = allocs


def _better(a: _Solution, b: _Solution | None) -> bool:
    if b is None:
        return True
    if a.filled != b.filled:
        return a.filled > b.filled
    if a.cost < b.cost - _EPS:
        return True
    if a.cost > b.cost + _EPS:
        return False
    if len(a.origins) != len(b.origins):
        return len(a.origins) < len(b.origins)
    return a.origins < b.origins


class _Group:
    """The lines going to one target, their eligible origins and the search state.

    For a pickup store the store itself is an origin too, free and always open (its shelf):
    it costs nothing, needs no capacity and is not a shipment.
    """

    __slots__ = (
        "best",
        "cap",
        "demands",
        "dist",
        "elig",
        "free",
        "leg",
        "max_legs",
        "order",
        "pen",
        "rejected",
        "runner_up",
        "split",
        "target",
    )

    def __init__(self, target: _Target, demands: list[_Demand], max_legs: int, split: bool) -> None:
        self.target = target
        self.demands = demands
        self.max_legs = max_legs
        self.split = split
        self.elig: list[dict[int, int]] = []
        self.rejected: list[list[tuple[int, int]]] = []
        self.leg: dict[int, float] = {}
        self.dist: dict[int, float] = {}
        self.pen: dict[int, float] = {}
        self.cap: dict[int, int] = {}
        self.order: list[int] = []
        # Origins open at no cost: the pickup store's own shelf.
        self.free: tuple[int, ...] = ()
        self.best: _Solution | None = None
        self.runner_up: _Solution | None = None

    def consider(self, solution: _Solution) -> None:
        best = self.best
        if _better(solution, best):
            if best is not None and best.origins != solution.origins:
                self.runner_up = best
            self.best = solution
        elif (
            best is not None
            and solution.origins != best.origins
            and solution.filled == best.filled
            and _better(solution, self.runner_up)
        ):
            self.runner_up = solution


_Spec = tuple[_Target, list[_Demand], int]


class _Attempt:
    __slots__ = ("cost", "filled", "groups", "unfilled")

    def __init__(self) -> None:
        self.groups: list[_Group] = []
        self.unfilled: dict[int, tuple[UnfilledReason, str]] = {}
        self.filled = 0
        self.cost = 0.0


class _Run:
    """One call of :func:`source_order`: inputs plus the residual stock and capacity."""

    def __init__(
        self,
        lines: Sequence[OrderLine],
        destination: Destination | None,
        locations: Mapping[int, Location],
        stock: StockTable,
        policy: SourcingPolicy,
        excluded: frozenset[int],
    ) -> None:
        self.lines = lines
        self.destination = destination
        self.locations = locations
        self.stock = stock
        self.policy = policy
        self.excluded = excluded
        self.left: dict[int, dict[int, int]] = {}
        self.cap_left: dict[int, int] = {}
        # (origin, pickup store or None for the customer) -> (km, shipment cost)
        self.legs: dict[tuple[int, int | None], tuple[float, float]] = {}

    # -- state

    def _reset(self) -> None:
        self.left = {}
        for line in self.lines:
            if line.variant_id not in self.left:
                self.left[line.variant_id] = dict(self.stock.get(line.variant_id) or {})
        self.cap_left = {}

    def _capacity(self, origin: Location) -> int:
        left = self.cap_left.get(origin.id)
        if left is not None:
            return left
        return _UNLIMITED if origin.capacity is None else origin.capacity

    def _consume(self, group: _Group, solution: _Solution) -> None:
        for demand, take in zip(group.demands, solution.allocs, strict=True):
            if take is None:
                continue
            held = self.left[demand.variant]
            for origin_id, units in take:
                held[origin_id] -= units
                location = self.locations[origin_id]
                if location.capacity is not None and origin_id not in group.free:
                    self.cap_left[origin_id] = self._capacity(location) - units

    def _leg_to(self, origin: Location, target: _Target) -> tuple[float, float]:
        key = (origin.id, target.store_id)
        known = self.legs.get(key)
        if known is None:
            known = self.legs[key] = _leg(origin, target.country, target.point, self.policy)
        return known

    # -- groups

    def _group(self, target: _Target, demands: list[_Demand], max_legs: int) -> _Group:
        policy = self.policy
        group = _Group(target, demands, max_legs, policy.allow_split)
        locations = self.locations
        for demand in demands:
            eligible: dict[int, int] = {}
            rejected: list[tuple[int, int]] = []
            original = self.stock.get(demand.variant) or {}
            for origin_id, units in self.left[demand.variant].items():
                if units <= 0 or origin_id == target.store_id:
                    continue
                origin = locations.get(origin_id)
                if origin is None:
                    continue
                code = _ship_check(
                    origin,
                    original.get(origin_id, 0),
                    demand.allow_sfs,
                    target.country,
                    policy,
                    self.excluded,
                )
                if code == _OK:
                    capacity = self._capacity(origin)
                    if capacity <= 0:
                        code = _NO_CAPACITY
                    else:
                        group.cap[origin_id] = capacity
                if code != _OK:
                    rejected.append((origin_id, code))
                    continue
                eligible[origin_id] = units
                if origin_id not in group.leg:
                    km, cost = self._leg_to(origin, target)
                    group.leg[origin_id] = cost
                    group.dist[origin_id] = km
                    group.pen[origin_id] = (
                        policy.store_unit_penalty if origin.type == "store" else 0.0
                    )
            store_id = target.store_id
            if store_id is not None and store_id not in self.excluded:
                on_shelf = self.left[demand.variant].get(store_id, 0)
                if on_shelf > 0:
                    eligible[store_id] = on_shelf
                    group.free = (store_id,)
            group.elig.append(eligible)
            group.rejected.append(rejected)
        for store_id in group.free:
            group.leg[store_id] = group.dist[store_id] = group.pen[store_id] = 0.0
            group.cap[store_id] = _UNLIMITED
        # Lines with the fewest options choose first, so that they are not crowded out.
        group.order = sorted(
            range(len(demands)),
            key=lambda i: (len(group.elig[i]), -demands[i].quantity, i),
        )
        return group

    def _assign(self, group: _Group, subset: Sequence[int]) -> _Solution:
        """Assign the lines to the open locations ``subset``.

        Greedy, line by line. When a line the locations could serve is left out because
        earlier lines used the stock or capacity it needed, the assignment is redone with the
        left-out lines first, and with the smallest lines first (which fills the most lines
        when one capacity is what runs out).
        """
        if group.free:
            subset = (*group.free, *subset)
        order = group.order
        solution = self._assign_in_order(group, subset, order)
        if solution.filled == len(group.demands):
            return solution
        cap = group.cap
        starved = [
            i
            for i in order
            if solution.allocs[i] is None
            and sum(min(group.elig[i].get(o, 0), cap[o]) for o in subset)
            >= group.demands[i].quantity
        ]
        if not starved:
            return solution
        retries = (
            starved + [i for i in order if i not in starved],
            sorted(order, key=lambda i: (group.demands[i].quantity, i)),
        )
        for retry_order in retries:
            retry = self._assign_in_order(group, subset, retry_order)
            if _better(retry, solution):
                solution = retry
        return solution

    def _assign_in_order(
        self, group: _Group, subset: Sequence[int], order: Sequence[int]
    ) -> _Solution:
        demands = group.demands
        elig = group.elig
        pen = group.pen
        cap = group.cap
        split = group.split
        # The shelf comes first in ``subset``; it serves before any paid source.
        shelves = len(group.free)
        used: dict[tuple[int, int], int] = {}
        used_cap: dict[int, int] = {}
        allocs: list[_Take | None] = [None] * len(demands)
        filled = 0
        penalty = 0.0
        for i in order:
            demand = demands[i]
            eligible = elig[i]
            variant = demand.variant
            need = demand.quantity
            options: list[tuple[float, bool, int, int, int]] = []
            for rank, origin_id in enumerate(subset):
                units = eligible.get(origin_id)
                if units is None:
                    continue
                units -= used.get((variant, origin_id), 0)
                room = cap[origin_id] - used_cap.get(origin_id, 0)
                if room < units:
                    units = room
                if units > 0:
                    options.append((pen[origin_id], rank >= shelves, -units, rank, origin_id))
            if not options:
                continue
            options.sort()
            take: _Take = []
            if split:
                if -sum(option[2] for option in options) < need:
                    continue
                for _, _, negative, _, origin_id in options:
                    units = -negative if -negative < need else need
                    take.append((origin_id, units))
                    need -= units
                    if need == 0:
                        break
            else:
                whole = next((o for *_, neg, _, o in options if -neg >= need), None)
                if whole is None:
                    continue
                take.append((whole, need))
            for origin_id, units in take:
                key = (variant, origin_id)
                used[key] = used.get(key, 0) + units
                used_cap[origin_id] = used_cap.get(origin_id, 0) + units
                penalty += pen[origin_id] * units
            allocs[i] = take
            filled += 1
        free = group.free
        origins = tuple(sorted({o for take in allocs if take for o, _ in take if o not in free}))
        cost = sum(group.leg[o] for o in origins) + penalty
        return _Solution(filled, cost, origins, allocs)

    def _solve(self, group: _Group) -> _Solution:
        demands = group.demands
        leg = group.leg
        everything = len(demands)
        candidates = sorted((o for o in leg if o not in group.free), key=lambda o: (leg[o], o))
        if group.free:
            group.consider(self._assign(group, ()))
        if not candidates:
            return group.best or _Solution(0, 0.0, (), [None] * everything)
        if not group.free:
            self._whole_order_singles(group)
        best = group.best
        if group.max_legs == 1:
            if best is None or best.filled < everything:
                self._partial_singles(group, candidates)
            assert group.best is not None
            return group.best
        # Any two shipments cost at least the two cheapest.
        if (
            best is not None
            and best.filled == everything
            and (len(candidates) < 2 or best.cost <= leg[candidates[0]] + leg[candidates[1]] + _EPS)
        ):
            return best
        # What each line could get with every candidate open; lines that cannot be filled at
        # all do not keep the search from pricing combinations.
        needs = [
            demand.quantity
            if sum(min(units, group.cap[o]) for o, units in eligible.items()) >= demand.quantity
            else 0
            for demand, eligible in zip(demands, group.elig, strict=True)
        ]
        if best is None or best.filled < sum(1 for need in needs if need):
            group.consider(self._greedy(group, candidates))
        assert group.best is not None
        # Deep enough to rebuild the incumbent, so that a split the greedy needed is improved.
        depth = min(max(_SEARCH_DEPTH, len(group.best.origins)), group.max_legs)
        self._search(group, self._pool(group), depth, needs)
        assert group.best is not None
        return group.best

    def _whole_order_singles(self, group: _Group) -> None:
        common = set(group.elig[0])
        for eligible in group.elig[1:]:
            common.intersection_update(eligible)
        if not common:
            return
        need: dict[int, int] = {}
        for demand in group.demands:
            need[demand.variant] = need.get(demand.variant, 0) + demand.quantity
        total = sum(need.values())
        probe = {demand.variant: i for i, demand in enumerate(group.demands)}
        leg = group.leg
        for origin_id in sorted(common, key=lambda o: (leg[o], o)):
            best = group.best
            if best is not None and leg[origin_id] > best.cost + _EPS:
                break
            if group.cap[origin_id] < total:
                continue
            if any(group.elig[i][origin_id] < need[v] for v, i in probe.items()):
                continue
            cost = leg[origin_id] + group.pen[origin_id] * total
            allocs: list[_Take | None] = [[(origin_id, d.quantity)] for d in group.demands]
            group.consider(_Solution(len(group.demands), cost, (origin_id,), allocs))

    def _partial_singles(self, group: _Group, candidates: list[int]) -> None:
        free = group.free
        reach = {
            o: sum(1 for e in group.elig if o in e or any(f in e for f in free)) for o in candidates
        }
        for origin_id in sorted(candidates, key=lambda o: (-reach[o], group.leg[o], o)):
            best = group.best
            if best is not None and reach[origin_id] < best.filled:
                break
            group.consider(self._assign(group, (origin_id,)))

    def _greedy(self, group: _Group, candidates: list[int]) -> _Solution:
        """Set cover by units covered per unit of cost, then drop shipments not needed."""
        demands = group.demands
        remaining = [d.quantity for d in demands]
        taken: dict[tuple[int, int], int] = {}
        chosen: list[int] = []

        def take_from(origin_id: int) -> None:
            room = group.cap[origin_id]
            for i, demand in enumerate(demands):
                units = group.elig[i].get(origin_id)
                if not units or not remaining[i] or room <= 0:
                    continue
                key = (demand.variant, origin_id)
                units = min(units - taken.get(key, 0), remaining[i], room)
                if units > 0:
                    taken[key] = taken.get(key, 0) + units
                    remaining[i] -= units
                    room -= units

        for origin_id in group.free:
            take_from(origin_id)
        while len(chosen) < group.max_legs and any(remaining):
            pick: int | None = None
            pick_score = 0.0
            for origin_id in candidates:
                if origin_id in chosen:
                    continue
                gain = 0
                claimed: dict[int, int] = {}
                for i, demand in enumerate(demands):
                    units = group.elig[i].get(origin_id)
                    if not units or not remaining[i]:
                        continue
                    key = (demand.variant, origin_id)
                    units -= taken.get(key, 0) + claimed.get(demand.variant, 0)
                    units = min(units, remaining[i])
                    if units > 0:
                        claimed[demand.variant] = claimed.get(demand.variant, 0) + units
                        gain += units
                gain = min(gain, group.cap[origin_id])
                if gain <= 0:
                    continue
                score = gain / (group.leg[origin_id] + group.pen[origin_id] * gain + _EPS)
                if score > pick_score:
                    pick, pick_score = origin_id, score
            if pick is None:
                break
            chosen.append(pick)
            take_from(pick)

        def by_cost(origin_id: int) -> tuple[float, int]:
            return (group.leg[origin_id], origin_id)

        solution = self._assign(group, sorted(chosen, key=by_cost))
        trimmed = True
        while trimmed and len(solution.origins) > 1:
            trimmed = False
            for drop in sorted(solution.origins, key=lambda o: (-group.leg[o], o)):
                keep = sorted((o for o in solution.origins if o != drop), key=by_cost)
                trial = self._assign(group, keep)
                if _better(trial, solution):
                    solution, trimmed = trial, True
                    break
        return solution

    def _pool(self, group: _Group) -> list[int]:
        """The candidates the combination search draws from, sorted by shipment cost.

        By priority: the incumbent's locations; every location that no cheaper location
        beats on the set of lines it can serve whole (what a shipment limit needs); then each
        line's cheapest sources in turn, for lines that must be split.
        """
        leg = group.leg
        pen = group.pen
        cap = group.cap
        picked: dict[int, None] = dict.fromkeys(group.best.origins if group.best else ())
        masks: dict[int, int] = {}
        alone: dict[int, float] = {}
        ranked: list[list[int]] = []
        free = group.free
        for k, (demand, eligible) in enumerate(zip(group.demands, group.elig, strict=True)):
            q = demand.quantity
            for origin_id, units in eligible.items():
                if min(units, cap[origin_id]) >= q and origin_id not in free:
                    masks[origin_id] = masks.get(origin_id, 0) | (1 << k)
                    alone[origin_id] = alone.get(origin_id, leg[origin_id]) + pen[origin_id] * q
            ranked.append(
                sorted(
                    (o for o in eligible if o not in free),
                    key=lambda o: (leg[o] + pen[o] * min(q, eligible[o]), o),
                )
            )
        frontier: list[tuple[int, float]] = []
        for origin_id in sorted(masks, key=lambda o: (alone[o], o)):
            mask = masks[origin_id]
            if any(mask & kept == mask for kept, _ in frontier):
                continue
            frontier.append((mask, alone[origin_id]))
            picked[origin_id] = None
        for rank in range(_POOL_PER_LINE):
            for sources in ranked:
                if rank < len(sources):
                    picked[sources[rank]] = None
        return sorted(list(picked)[:_POOL_LIMIT], key=lambda o: (leg[o], o))

    def _search(self, group: _Group, pool: list[int], depth: int, needs: list[int]) -> None:
        """Branch and bound over combinations of ``pool`` (sorted by shipment cost).

        Each branch carries what its locations leave uncovered of every line (an optimistic
        count: stock and capacity shared between lines are not deducted). A combination is
        only priced when it could fill everything; a location adding nothing to the lines
        still open is skipped unless, as a warehouse, it could take units off a store, or the
        combination fell short of its optimistic count.
        """
        leg = group.leg
        pen = group.pen
        cap = group.cap
        reachable = sum(1 for need in needs if need)
        gives = [
            [min(eligible.get(origin_id, 0), cap[origin_id]) for eligible in group.elig]
            for origin_id in pool
        ]

        def visit(
            start: int,
            chosen: tuple[int, ...],
            base: float,
            rem: list[int],
            stores: bool,
            sound: bool,
        ) -> None:
            for i in range(start, len(pool)):
                origin_id = pool[i]
                bound = base + leg[origin_id]
                best = group.best
                pruning = best is not None and best.filled >= reachable
                if pruning and best is not None and bound >= best.cost - _EPS:
                    break
                give = gives[i]
                left = [r - g if r > g else 0 for r, g in zip(rem, give, strict=True)]
                penalised = pen[origin_id] > 0
                # Useless unless it frees stock or capacity other lines fought over.
                if sound and left == rem and (penalised or not stores):
                    continue
                subset = (*chosen, origin_id)
                fine = True
                if not pruning or not any(left):
                    solution = self._assign(group, subset)
                    group.consider(solution)
                    covered = sum(1 for n, r in zip(needs, left, strict=True) if n and not r)
                    fine = solution.filled >= covered
                if len(subset) < depth:
                    visit(i + 1, subset, bound, left, stores or penalised, fine)

        start = list(needs)
        for origin_id in group.free:
            for k, eligible in enumerate(group.elig):
                start[k] = max(0, start[k] - eligible.get(origin_id, 0))
        visit(0, (), 0.0, start, False, True)

    # -- whole order

    def _targets(self) -> tuple[dict[int, tuple[UnfilledReason, str]], list[_Spec]]:
        """Lines that cannot be served at all, and the groups: pickup stores, then the
        customer."""
        unfilled: dict[int, tuple[UnfilledReason, str]] = {}
        policy = self.policy
        lines = self.lines
        ship: list[_Demand] = []
        pickup: dict[int, list[int]] = {}
        for i, line in enumerate(lines):
            if line.mode == "ship":
                if self.destination is None:
                    unfilled[i] = (
                        UnfilledReason.NO_DESTINATION,
                        "the order has no delivery address",
                    )
                else:
                    ship.append(
                        _Demand(i, line.variant_id, line.quantity, line.allow_ship_from_store)
                    )
                continue
            store_id = line.pickup_location_id
            assert store_id is not None
            store = self.locations.get(store_id)
            problem = None
            if store is None:
                problem = f"pickup location #{store_id} is not a candidate location"
            elif not store.active:
                problem = f"pickup store {store.label} is inactive"
            elif not store.can_pickup:
                problem = f"{store.label} does not offer pickup"
            if problem is not None:
                unfilled[i] = (UnfilledReason.PICKUP_STORE_UNAVAILABLE, problem)
            else:
                pickup.setdefault(store_id, []).append(i)

        sequence: list[_Spec] = []
        # A pickup store receives at most one transfer when splitting is off.
        transfer_limit = 1 if not policy.allow_split else _UNLIMITED
        for store_id in sorted(pickup):
            store = self.locations[store_id]
            target = _Target(store_id, store.country, store._point, store.label)
            demands = [
                _Demand(i, lines[i].variant_id, lines[i].quantity, lines[i].allow_ship_from_store)
                for i in pickup[store_id]
            ]
            sequence.append((target, demands, transfer_limit))
        if ship:
            assert self.destination is not None
            destination = self.destination
            home = _Target(
                None, destination.country, destination._point, "the customer", destination.basis
            )
            limit = policy.max_shipments or _UNLIMITED
            sequence.append((home, ship, 1 if not policy.allow_split else limit))
        return unfilled, sequence

    def _attempt(
        self, unfilled: dict[int, tuple[UnfilledReason, str]], sequence: Sequence[_Spec]
    ) -> _Attempt:
        self._reset()
        attempt = _Attempt()
        attempt.unfilled.update(unfilled)
        for target, demands, limit in sequence:
            group = self._group(target, demands, limit)
            solution = self._solve(group)
            group.best = solution
            self._consume(group, solution)
            attempt.groups.append(group)
            attempt.cost += solution.cost
            for k, demand in enumerate(demands):
                if solution.allocs[k] is None:
                    attempt.unfilled[demand.line] = self._why_unfilled(group, k)
        attempt.filled = len(self.lines) - len(attempt.unfilled)
        return attempt

    def _why_unfilled(self, group: _Group, k: int) -> tuple[UnfilledReason, str]:
        demand = group.demands[k]
        eligible = group.elig[k]
        what = f"{demand.quantity} x variant {demand.variant}"
        if group.target.store_id is not None:
            what += f" for pickup at {group.target.label}"
        if not eligible:
            rejected = self._rejections(group, k, None)
            detail = f"no eligible location holds {what}"
            if rejected:
                detail += "; " + "; ".join(rejected)
            return UnfilledReason.NO_ELIGIBLE_STOCK, detail
        total = sum(eligible.values())
        if total < demand.quantity:
            return (
                UnfilledReason.INSUFFICIENT_STOCK,
                f"eligible locations hold {total} of {what}",
            )
        if sum(min(u, group.cap[o]) for o, u in eligible.items()) < demand.quantity:
            return UnfilledReason.NO_CAPACITY, f"eligible locations lack capacity for {what}"
        if not group.split:
            if max(eligible.values()) < demand.quantity:
                detail = f"no single location holds {what} and splitting is not allowed"
            else:
                detail = "cannot come from the location chosen for the rest and splitting is off"
            return UnfilledReason.SPLIT_NOT_ALLOWED, detail
        solution = group.best
        if solution is not None and len(solution.origins) >= group.max_legs:
            return (
                UnfilledReason.MAX_SHIPMENTS,
                f"would need more than {group.max_legs} shipment(s)",
            )
        return UnfilledReason.TAKEN_BY_OTHER_LINES, f"stock or capacity for {what} is used"

    def _rejections(self, group: _Group, k: int, below: float | None) -> list[str]:
        """The cheapest locations that held the variant but could not ship it (at most 3),
        only those cheaper than ``below`` when given."""
        rejected = group.rejected[k]
        if not rejected:
            return []
        target = group.target
        scored: list[tuple[float, int, int]] = []
        for origin_id, code in rejected:
            cost = self._leg_to(self.locations[origin_id], target)[1]
            if below is None or cost < below:
                scored.append((cost, origin_id, code))
        scored.sort()
        original = self.stock.get(group.demands[k].variant) or {}
        texts = []
        for _, origin_id, code in scored[:3]:
            origin = self.locations[origin_id]
            why = _rejection_text(code, origin, original.get(origin_id, 0), self.policy)
            texts.append(f"{origin.label} rejected: {why}")
        return texts

    def plan(self) -> SourcingPlan:
        unfilled, sequence = self._targets()
        # Groups compete for the stock and capacity they share, so the one solved first
        # chooses first: every order is tried when there are few groups.
        if len(sequence) <= 3:
            orders = list(itertools.permutations(sequence))
        else:
            orders = [tuple(sequence), (sequence[-1], *sequence[:-1])]
        best: _Attempt | None = None
        for order in orders:
            attempt = self._attempt(unfilled, order)
            if (
                best is None
                or attempt.filled > best.filled
                or (attempt.filled == best.filled and attempt.cost < best.cost - _EPS)
            ):
                best = attempt
        assert best is not None
        return self._render(best)

    # -- output

    def _render(self, attempt: _Attempt) -> SourcingPlan:
        lines = self.lines
        locations = self.locations
        per_line: dict[int, list[Allocation]] = {}
        why: dict[int, list[str]] = {}
        shipments: list[Shipment] = []
        notes: list[str] = []
        store_units = 0
        cost = 0.0
        for group in attempt.groups:
            solution = group.best
            assert solution is not None
            target = group.target
            method: FulfilmentMethod = "ship" if target.store_id is None else "transfer"
            carried: dict[int, list[tuple[str, int]]] = {o: [] for o in solution.origins}
            for demand, take in zip(group.demands, solution.allocs, strict=True):
                for origin_id, units in take or ():
                    if origin_id not in group.free:
                        carried[origin_id].append((lines[demand.line].line_id, units))
            for origin_id in solution.origins:
                origin = locations[origin_id]
                loads = tuple(carried[origin_id])
                units = sum(u for _, u in loads)
                if origin.type == "store":
                    store_units += units
                km = group.dist[origin_id]
                shipment_fixed = group.leg[origin_id]
                cost += shipment_fixed + group.pen[origin_id] * units
                shipments.append(
                    Shipment(
                        origin_id=origin_id,
                        destination_id=target.store_id,
                        distance_km=km,
                        cross_border=origin.country != target.country,
                        cost=shipment_fixed,
                        units=units,
                        lines=loads,
                        explanation=(
                            f"{origin.label} -> {target.label}: {len(loads)} line(s), "
                            f"{units} unit(s), {target.distance_text(origin, km)}, "
                            f"cost {shipment_fixed:.2f}"
                        ),
                    )
                )
            if solution.origins:
                notes.append(self._note(group, solution))
            for k, demand in enumerate(group.demands):
                take = solution.allocs[k]
                if take is None:
                    continue
                texts = why.setdefault(demand.line, [])
                for origin_id, units in take:
                    if origin_id in group.free:
                        per_line.setdefault(demand.line, []).append(
                            Allocation(origin_id, units, "pickup")
                        )
                        label = locations[origin_id].label
                        texts.append(f"{label}: {units} from its own stock for pickup")
                        continue
                    per_line.setdefault(demand.line, []).append(
                        Allocation(origin_id, units, method)
                    )
                    line_id = lines[demand.line].line_id
                    others = [other for other, _ in carried[origin_id] if other != line_id]
                    whole = len(solution.origins) == 1
                    texts.append(self._reason(group, origin_id, units, others, whole))
                worst = max(group.leg[o] for o, _ in take)
                if worst > 0:
                    texts.extend(self._rejections(group, k, worst))

        plans = tuple(
            LinePlan(
                line_id=line.line_id,
                variant_id=line.variant_id,
                quantity=line.quantity,
                allocations=tuple(per_line[i]),
                explanation="; ".join(why[i]),
            )
            for i, line in enumerate(lines)
            if i not in attempt.unfilled and i in per_line
        )
        unfilled = tuple(
            UnfilledLine(
                line_id=lines[i].line_id,
                variant_id=lines[i].variant_id,
                quantity=lines[i].quantity,
                reason=reason,
                detail=detail,
            )
            for i, (reason, detail) in sorted(attempt.unfilled.items())
        )
        shipments.sort(
            key=lambda s: (s.destination_id is not None, s.destination_id or 0, s.origin_id)
        )
        return SourcingPlan(
            lines=plans,
            unfilled=unfilled,
            shipments=tuple(shipments),
            cost=cost,
            store_units=store_units,
            notes=tuple(notes),
        )

    def _reason(
        self, group: _Group, origin_id: int, units: int, others: list[str], whole: bool
    ) -> str:
        origin = self.locations[origin_id]
        target = group.target
        noun = "unit" if units == 1 else "units"
        if target.store_id is not None:
            what = f"{units} {noun} transferred to {target.label}"
        elif whole and others:
            what = f"all {len(others) + 1} lines in one shipment"
        elif others:
            what = f"{units} {noun} in one shipment with {', '.join(others)}"
        else:
            what = f"{units} {noun} in a shipment of their own"
        text = (
            f"{origin.label}: {what}, {target.distance_text(origin, group.dist[origin_id])}, "
            f"cost {group.leg[origin_id]:.2f}"
        )
        if group.pen[origin_id]:
            text += f" + store penalty {group.pen[origin_id] * units:.2f}"
        if origin.country != target.country:
            text += f" (cross-border from {origin.country})"
        return text

    def _note(self, group: _Group, solution: _Solution) -> str:
        labels = ", ".join(self.locations[o].label for o in solution.origins)
        note = (
            f"to {group.target.label}: {len(solution.origins)} shipment(s) from {labels}, "
            f"cost {solution.cost:.2f}"
        )
        runner = group.runner_up
        if runner is not None and runner.filled == solution.filled and runner.origins:
            others = ", ".join(self.locations[o].label for o in runner.origins)
            note += f"; next best {others} at {runner.cost:.2f}"
        return note


def source_order(
    lines: Sequence[OrderLine],
    destination: Destination | None,
    locations: Mapping[int, Location],
    stock: StockTable,
    policy: SourcingPolicy = DEFAULT_POLICY,
    *,
    excluded: Collection[int] = frozenset(),
) -> SourcingPlan:
    """Decide where each line of one order comes from.

    ``destination`` may be None for an order made only of pickup lines. ``locations`` are the
    candidates by id (see :func:`index_locations`); stock at locations missing from it is
    ignored. ``stock`` maps ``variant -> location -> available units``. ``excluded`` locations
    are never used (re-routing after a location rejected a line).
    """
    seen: set[str] = set()
    for line in lines:
        if line.line_id in seen:
            raise ValueError(f"duplicate line id {line.line_id!r}")
        seen.add(line.line_id)
    run = _Run(lines, destination, locations, stock, policy, frozenset(excluded))
    return run.plan()


# --------------------------------------------------------------------------- checking


def verify_plan(
    plan: SourcingPlan,
    lines: Sequence[OrderLine],
    destination: Destination | None,
    locations: Mapping[int, Location],
    stock: StockTable,
    policy: SourcingPolicy = DEFAULT_POLICY,
    *,
    excluded: Collection[int] = frozenset(),
) -> list[str]:
    """Every rule ``plan`` breaks, recomputed independently of the search (empty: valid).

    Also checks that its shipments and cost agree with its allocations.
    """
    problems: list[str] = []
    by_id = {line.line_id: line for line in lines}
    accounted = [p.line_id for p in plan.lines] + [u.line_id for u in plan.unfilled]
    if sorted(accounted) != sorted(by_id):
        problems.append("lines planned and unfilled do not match the order's lines")
    used: dict[tuple[int, int], int] = {}
    dispatched: dict[int, int] = {}
    legs: dict[tuple[int, int | None], int] = {}
    origins_of_line: dict[str, set[int]] = {}
    store_units = 0
    for line_plan in plan.lines:
        line = by_id.get(line_plan.line_id)
        if line is None:
            problems.append(f"{line_plan.line_id}: not an order line")
            continue
        total = sum(a.quantity for a in line_plan.allocations)
        if total != line.quantity:
            problems.append(f"{line.line_id}: allocates {total} of {line.quantity}")
        for a in line_plan.allocations:
            origin = locations.get(a.location_id)
            if origin is None or a.quantity <= 0:
                problems.append(f"{line.line_id}: bad allocation {a}")
                continue
            key = (line.variant_id, a.location_id)
            used[key] = used.get(key, 0) + a.quantity
            origins_of_line.setdefault(line.line_id, set()).add(a.location_id)
            available = (stock.get(line.variant_id) or {}).get(a.location_id, 0)
            if a.method == "pickup":
                if line.mode != "pickup" or a.location_id != line.pickup_location_id:
                    problems.append(f"{line.line_id}: pickup from the wrong location")
                elif not origin.active or not origin.can_pickup or origin.id in excluded:
                    problems.append(f"{line.line_id}: {origin.label} cannot serve pickup")
                continue
            if a.method == "ship":
                if line.mode != "ship" or destination is None:
                    problems.append(f"{line.line_id}: shipped but not a shipped line")
                    continue
                target: int | None = None
                country = destination.country
            else:
                store = locations.get(line.pickup_location_id or -1)
                if line.mode != "pickup" or store is None or a.location_id == store.id:
                    problems.append(f"{line.line_id}: bad transfer")
                    continue
                target = store.id
                country = store.country
            reason = ship_rejection(origin, line, available, country, policy, excluded)
            if reason is not None:
                problems.append(f"{line.line_id}: {origin.label} may not ship it: {reason}")
            dispatched[a.location_id] = dispatched.get(a.location_id, 0) + a.quantity
            legs[(a.location_id, target)] = legs.get((a.location_id, target), 0) + a.quantity
            if origin.type == "store":
                store_units += a.quantity
    for (variant_id, location_id), units in used.items():
        if units > (stock.get(variant_id) or {}).get(location_id, 0):
            problems.append(f"variant {variant_id} at #{location_id}: {units} over stock")
    for location_id, units in dispatched.items():
        capacity = locations[location_id].capacity
        if capacity is not None and units > capacity:
            problems.append(f"#{location_id}: {units} units over capacity {capacity}")
    home = sum(1 for _, target in legs if target is None)
    if policy.max_shipments is not None and home > policy.max_shipments:
        problems.append(f"{home} shipments to the customer, max {policy.max_shipments}")
    if not policy.allow_split:
        targets = [target for _, target in legs]
        if len(targets) != len(set(targets)):
            problems.append("several shipments to one target while splitting is off")
        for line_id, origins in origins_of_line.items():
            if len(origins) > 1:
                problems.append(f"{line_id}: split between locations while splitting is off")
    shipped = {(s.origin_id, s.destination_id): s.units for s in plan.shipments}
    if shipped != legs:
        problems.append("shipments do not match the allocations")
    cost = 0.0
    for origin_id, target in legs:
        origin = locations[origin_id]
        if target is None:
            assert destination is not None
            cost += shipment_cost(origin, destination, policy)
        else:
            cost += shipment_cost(origin, locations[target], policy)
    cost += store_units * policy.store_unit_penalty
    if abs(cost - plan.cost) > 1e-6 * max(1.0, cost):
        problems.append(f"cost {plan.cost:.6f} differs from its recomputation {cost:.6f}")
    if store_units != plan.store_units:
        problems.append("store unit count does not match the allocations")
    return problems
