"""Distances on the globe: points as unit vectors, so that the great-circle distance
between two is one chord away, with no trigonometry per pair."""

from __future__ import annotations

import math

EARTH_RADIUS_KM = 6371.0088

# A point as a unit vector.
Point = tuple[float, float, float]


def to_point(lat: float | None, lng: float | None) -> Point | None:
    if lat is None or lng is None:
        return None
    phi = math.radians(lat)
    lam = math.radians(lng)
    return (math.cos(phi) * math.cos(lam), math.cos(phi) * math.sin(lam), math.sin(phi))


def arc_km(a: Point, b: Point) -> float:
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
