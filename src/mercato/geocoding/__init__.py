"""Offline geocoding of addresses: coordinates from the postal code, else the city, else the
country, from GeoNames data shipped with Mercato (``data/``, CC BY 4.0, see its licence).

Distances drive routing (which location ships) and "stores near you"; an address without
coordinates would count as far from everything. Each address is geocoded where it enters
(a cart's addresses, a customer's addresses, an order's, a location without coordinates)
and keeps where its coordinates came from in ``coordinates_source``:

* ``given``: sent with the address (a device's position, a store's surveyed point);
* ``postal_code``: the centre of the postal code's places (GeoNames postal codes);
* ``city``: the most populous place of that name in the country (and region, when the
  region matches GeoNames' code), GeoNames places of 1,000 inhabitants or more;
* ``country``: the population-weighted centre of the country: a last resort, far from
  exact in large countries, but better than no distance at all.

Postal codes are shipped for AT, DE, FR, JP, NL, SG and US (GeoNames has none for VN),
places for those and VN, country centres for every country. ``python -m
mercato.geocoding.build`` rebuilds the files from their sources. Tables are read once per
process, one country at a time, when first needed.
"""

from __future__ import annotations

import lzma
import re
import threading
import unicodedata
from array import array
from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Any

__all__ = [
    "DATASET",
    "Coordinates",
    "Source",
    "describe",
    "geocode",
    "locate",
    "name_keys",
    "normalise_postal_code",
]

DATASET = "GeoNames"


class Source(StrEnum):
    GIVEN = "given"
    POSTAL_CODE = "postal_code"
    CITY = "city"
    COUNTRY = "country"


@dataclass(frozen=True, slots=True)
class Coordinates:
    latitude: float
    longitude: float
    source: Source


# --- names and codes -----------------------------------------------------------------------

# Letters NFKD leaves whole.
_FOLD = str.maketrans({"đ": "d", "Đ": "d", "ð": "d", "Ð": "d", "ø": "o", "Ø": "o", "ł": "l",
                       "Ł": "l", "ß": "ss", "æ": "ae", "Æ": "ae", "œ": "oe", "Œ": "oe",
                       "\u0131": "i"})  # fmt: skip
# Words for "city", "ward", "prefecture"... that addresses add or leave out.
_SUFFIXES = ("city", "ku", "shi", "machi", "cho", "gun", "市", "区", "町", "村", "都", "府", "県")
_PREFIXES = ("thanhpho", "tp", "quan", "huyen", "cityof")


def _normal(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.translate(_FOLD))
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return "".join(c for c in bare.casefold() if c.isalnum())


def name_keys(name: str) -> set[str]:
    """The keys a place name is found under: its letters and digits without accents or
    case, with and without a word such as "city", "-ku" or "市" at either end."""
    key = _normal(name)
    keys = {key} if key else set()
    for suffix in _SUFFIXES:
        if key.endswith(suffix) and len(key) - len(suffix) >= 2:
            keys.add(key[: -len(suffix)])
    for prefix in _PREFIXES:
        if key.startswith(prefix) and len(key) - len(prefix) >= 2:
            keys.add(key[len(prefix) :])
    return keys


_ZIP5 = re.compile(r"^(\d{5})\d{4}$")


def normalise_postal_code(country: str, code: str) -> str:
    """The form postal codes are stored under: letters and digits, upper case; a US ZIP+4
    is looked up by its five-digit ZIP."""
    key = "".join(c for c in code.upper() if c.isalnum())
    if country == "US":
        match = _ZIP5.match(key)
        if match:
            return match.group(1)
    return key


# --- the tables ----------------------------------------------------------------------------

_lock = threading.Lock()


def _text(name: str) -> str | None:
    resource = resources.files(__package__).joinpath("data", name)
    if not resource.is_file():
        return None
    raw = resource.read_bytes()
    return (lzma.decompress(raw) if name.endswith(".xz") else raw).decode()


@dataclass(frozen=True, slots=True)
class _PostalTable:
    # Sorted codes and their coordinates in thousandths of a degree (arrays of machine
    # integers: a Japanese table of 140,000 codes takes a few megabytes, not tens).
    codes: list[str]
    lats: array[int]
    lngs: array[int]

    def get(self, code: str) -> tuple[float, float] | None:
        i = bisect_left(self.codes, code)
        if i < len(self.codes) and self.codes[i] == code:
            return self.lats[i] / 1000, self.lngs[i] / 1000
        return None


@cache
def _postal_table(country: str) -> _PostalTable | None:
    with _lock:
        text = _text(f"postal/{country}.tsv.xz")
    if text is None:
        return None
    table = _PostalTable([], array("i"), array("i"))
    for line in text.splitlines():
        code, lat, lng = line.split("\t")
        table.codes.append(code)
        table.lats.append(round(float(lat) * 1000))
        table.lngs.append(round(float(lng) * 1000))
    return table


# region code -> (latitude, longitude); the first is the most populous place of the name.
_Places = dict[str, list[tuple[str, float, float]]]


@cache
def _all_places() -> dict[str, _Places]:
    with _lock:
        text = _text("places.tsv.xz") or ""
    tables: dict[str, _Places] = {}
    for line in text.splitlines():
        country, key, region, lat, lng = line.split("\t")
        tables.setdefault(country, {}).setdefault(key, []).append(
            (region, float(lat), float(lng))
        )
    return tables


@cache
def _country_centres() -> dict[str, tuple[float, float]]:
    text = _text("countries.tsv") or ""
    centres = {}
    for line in text.splitlines():
        country, lat, lng = line.split("\t")
        centres[country] = (float(lat), float(lng))
    return centres


# --- lookups -------------------------------------------------------------------------------


def _by_postal_code(country: str, postal_code: str | None) -> tuple[float, float] | None:
    if not postal_code:
        return None
    table = _postal_table(country)
    return None if table is None else table.get(normalise_postal_code(country, postal_code))


def _matches(places: _Places, name: str) -> list[tuple[str, float, float]]:
    for key in sorted(name_keys(name), key=len, reverse=True):
        found = places.get(key)
        if found:
            return found
    return []


def _by_city(country: str, city: str | None, region: str | None) -> tuple[float, float] | None:
    """The city as written, else its first comma-separated part that is known ("Shibuya,
    Tokyo"); the other parts, like the address's region, pick among places of that name."""
    if not city:
        return None
    places = _all_places().get(country)
    if not places:
        return None
    found = _matches(places, city)
    parts = [p.strip() for p in city.split(",") if p.strip()]
    regions = {region.upper()} if region else set()
    if not found and len(parts) > 1:
        by_part = [_matches(places, part) for part in parts]
        found = next((m for m in by_part if m), [])
        regions |= {m[0][0] for m in by_part if m and m is not found}
    if not found:
        return None
    _, lat, lng = next((p for p in found if p[0] in regions), found[0])
    return lat, lng


def geocode(
    country: str, postal_code: str | None = None, city: str | None = None, region: str | None = None
) -> Coordinates | None:
    """Coordinates for an address from its postal code, else its city, else its country."""
    country = country.upper()
    point = _by_postal_code(country, postal_code)
    if point is not None:
        return Coordinates(*point, Source.POSTAL_CODE)
    point = _by_city(country, city, region)
    if point is not None:
        return Coordinates(*point, Source.CITY)
    centre = _country_centres().get(country)
    if centre is not None:
        return Coordinates(*centre, Source.COUNTRY)
    return None


def locate(address: Mapping[str, Any]) -> dict[str, Any]:
    """The address with ``latitude``, ``longitude`` and ``coordinates_source`` set: the
    coordinates it came with (``given``), else geocoded; unchanged but for a ``None``
    source when nothing is known about its country."""
    located = dict(address)
    lat, lng = address.get("latitude"), address.get("longitude")
    if lat is not None and lng is not None:
        source = address.get("coordinates_source") or Source.GIVEN.value
        located["coordinates_source"] = source
        return located
    country = str(address.get("country") or "")
    found = geocode(country, address.get("postal_code"), address.get("city"), address.get("region"))
    located["latitude"] = None if found is None else found.latitude
    located["longitude"] = None if found is None else found.longitude
    located["coordinates_source"] = None if found is None else found.source.value
    return located


def describe(source: str | None, address: Mapping[str, Any]) -> str:
    """Where a distance to this address comes from, for explanations."""
    if source == Source.POSTAL_CODE:
        return f"distance from postal code {address.get('postal_code')} ({DATASET})"
    if source == Source.CITY:
        return f"distance from the centre of {address.get('city')} ({DATASET})"
    if source == Source.COUNTRY:
        return f"distance from the centre of {address.get('country')} ({DATASET}): approximate"
    if source == Source.GIVEN:
        return "distance from the coordinates given with the address"
    return "no coordinates: assumed far"
