"""The sourcing rules and the cost function: which origin may ship what, and what a
shipment costs."""

from __future__ import annotations

from collections.abc import Collection

from mercato.fulfillment.sourcing.geometry import Point, arc_km
from mercato.fulfillment.sourcing.model import (
    DEFAULT_POLICY,
    Destination,
    Location,
    OrderLine,
    SourcingPolicy,
)

# Why an origin may not ship a line (``OK``: it may).
OK = 0
INACTIVE = 1
EXCLUDED = 2
CANNOT_SHIP = 3
NO_SHIP_FROM_STORE = 4
LINE_FORBIDS_STORE = 5
BELOW_MIN = 6
NO_CAPACITY = 7
ABROAD = 8
NO_STOCK = 9


def ship_check(
    origin: Location,
    available: int,
    allow_ship_from_store: bool,
    target_country: str,
    policy: SourcingPolicy,
    excluded: Collection[int],
) -> int:
    if available <= 0:
        return NO_STOCK
    if not origin.active:
        return INACTIVE
    if origin.id in excluded:
        return EXCLUDED
    if origin.type == "store":
        if not origin.can_ship_from_store:
            return NO_SHIP_FROM_STORE
        if not allow_ship_from_store:
            return LINE_FORBIDS_STORE
        if available < policy.min_store_units:
            return BELOW_MIN
    elif not origin.can_ship:
        return CANNOT_SHIP
    if origin.capacity is not None and origin.capacity <= 0:
        return NO_CAPACITY
    if policy.domestic_only and origin.country != target_country:
        return ABROAD
    return OK


def rejection_text(code: int, origin: Location, available: int, policy: SourcingPolicy) -> str:
    if code == BELOW_MIN:
        unit = "unit" if available == 1 else "units"
        return f"only {available} {unit} (< min {policy.min_store_units})"
    if code == ABROAD:
        return f"in {origin.country}, domestic shipping only"
    return _REJECTION_TEXT[code]


_REJECTION_TEXT = {
    INACTIVE: "inactive",
    EXCLUDED: "excluded",
    CANNOT_SHIP: "cannot ship",
    NO_SHIP_FROM_STORE: "no ship-from-store",
    LINE_FORBIDS_STORE: "line does not allow ship-from-store",
    NO_CAPACITY: "no capacity left today",
    NO_STOCK: "no stock",
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
    code = ship_check(
        origin, available, line.allow_ship_from_store, target_country, policy, excluded
    )
    return None if code == OK else rejection_text(code, origin, available, policy)


def leg(
    origin: Location, country: str, point: Point | None, policy: SourcingPolicy
) -> tuple[float, float]:
    if origin._point is None or point is None:
        km = policy.unknown_distance_km
    else:
        km = arc_km(origin._point, point)
    cost = policy.cost_per_shipment + policy.cost_per_km * km
    if origin.country != country:
        cost += policy.cross_border_penalty
    return km, cost


def distance_km(
    origin: Location, target: Location | Destination, policy: SourcingPolicy = DEFAULT_POLICY
) -> float:
    """The distance the cost function uses (``unknown_distance_km`` without coordinates)."""
    return leg(origin, target.country, target._point, policy)[0]


def shipment_cost(
    origin: Location, target: Location | Destination, policy: SourcingPolicy = DEFAULT_POLICY
) -> float:
    """The fixed cost of one shipment from ``origin`` to ``target``."""
    return leg(origin, target.country, target._point, policy)[1]


def unit_penalty(origin: Location, policy: SourcingPolicy = DEFAULT_POLICY) -> float:
    """The cost of each unit ``origin`` ships or transfers."""
    return policy.store_unit_penalty if origin.type == "store" else 0.0
