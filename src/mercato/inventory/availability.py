"""Availability: what can still be promised per variant, by location and summed over a
channel's locations, and the stores near a shopper that hold it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from mercato.inventory.ledger import FREE_TO_SELL
from mercato.inventory.models import StockLevel
from mercato.locations import service as locations

# One statement per variant set; the location filter runs in Python because a channel may
# sell from hundreds of locations while a variant is stocked at a few of them: binding a
# 500-id IN list costs more than skipping the handful of rows outside the channel.
_FREE_ROWS = select(StockLevel.variant_id, StockLevel.location_id, FREE_TO_SELL).where(
    StockLevel.variant_id.in_(bindparam("variants", expanding=True)), FREE_TO_SELL > 0
)


def availability_by_location(
    session: Session, variant_ids: Iterable[int], location_ids: Iterable[int]
) -> dict[int, dict[int, int]]:
    """variant -> location -> available units (> 0 only)."""
    variants = sorted(set(variant_ids))
    places = location_ids if isinstance(location_ids, frozenset) else frozenset(location_ids)
    if not variants or not places:
        return {}
    found: dict[int, dict[int, int]] = defaultdict(dict)
    for variant_id, location_id, free in session.execute(_FREE_ROWS, {"variants": variants}):
        if location_id in places:
            found[variant_id][location_id] = int(free)
    return dict(found)


def availability(
    session: Session, variant_ids: Iterable[int], location_ids: Iterable[int]
) -> dict[int, int]:
    """Available to promise per variant, summed over ``location_ids`` (0 when none)."""
    variants = sorted(set(variant_ids))
    places = location_ids if isinstance(location_ids, frozenset) else frozenset(location_ids)
    result = dict.fromkeys(variants, 0)
    if not variants or not places:
        return result
    for variant_id, location_id, free in session.execute(_FREE_ROWS, {"variants": variants}):
        if location_id in places:
            result[variant_id] += int(free)
    return result


@dataclass(frozen=True)
class NearbyStock:
    location_id: int
    code: str
    name: str
    type: str
    distance_km: float | None
    can_pickup: bool
    can_ship_from_store: bool
    available: dict[int, int]  # variant -> units


def nearby_stock(
    session: Session,
    variant_ids: Sequence[int],
    location_ids: Iterable[int],
    latitude: float | None,
    longitude: float | None,
    *,
    radius_km: float | None = None,
    limit: int = 20,
) -> list[NearbyStock]:
    """Locations holding any of the variants, nearest first when coordinates are given."""
    by_location: dict[int, dict[int, int]] = defaultdict(dict)
    for variant_id, places in availability_by_location(session, variant_ids, location_ids).items():
        for location_id, free in places.items():
            by_location[location_id][variant_id] = free
    places_found = [p for p in locations.get_locations(session, list(by_location)) if p.active]
    ranked: list[tuple[float | None, Any]] = []
    if latitude is not None and longitude is not None:
        ranked = [(d, p) for p, d in locations.nearest(places_found, latitude, longitude)]
        if radius_km is not None:
            ranked = [(d, p) for d, p in ranked if d is not None and d <= radius_km]
    else:
        ranked = [(None, p) for p in places_found]
    return [
        NearbyStock(
            location_id=p.id,
            code=p.code,
            name=p.name,
            type=p.type,
            distance_km=None if d is None else round(d, 3),
            can_pickup=p.can_pickup,
            can_ship_from_store=p.can_ship_from_store,
            available=dict(by_location[p.id]),
        )
        for d, p in ranked[:limit]
    ]
