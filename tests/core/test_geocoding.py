"""Offline geocoding: postal code, else city, else the country's centre; coordinates given
with an address are kept."""

from __future__ import annotations

import pytest

from mercato.fulfillment.sourcing import haversine_km
from mercato.geocoding import Source, describe, geocode, locate

BERLIN_MITTE_STORE = (52.5270, 13.4020)


def _km(found: object, point: tuple[float, float]) -> float:
    assert found is not None
    return haversine_km(found.latitude, found.longitude, *point)  # type: ignore[attr-defined]


@pytest.mark.slow
def test_every_demo_country_is_placed_from_its_postal_codes_or_cities() -> None:
    cases = [
        (("DE", "10115", "Berlin"), Source.POSTAL_CODE, BERLIN_MITTE_STORE, 3),
        (("JP", "150-0001", "Shibuya-ku"), Source.POSTAL_CODE, (35.6595, 139.7005), 3),
        (("SG", "238859", None), Source.POSTAL_CODE, (1.3048, 103.8318), 3),
        (("US", "10012-3456", None), Source.POSTAL_CODE, (40.7233, -74.0030), 3),
        # GeoNames has no Vietnamese postal codes: Vietnam is placed by its cities.
        (("VN", "100000", "Hà Nội"), Source.CITY, (21.0340, 105.8500), 5),
        (("VN", None, "Hồ Chí Minh"), Source.CITY, (10.7769, 106.7009), 10),
        (("VN", None, "Đà Lạt"), Source.CITY, (11.9404, 108.4583), 5),
        (("JP", None, "渋谷区"), Source.CITY, (35.6595, 139.7005), 3),
        (("DE", None, "München"), Source.CITY, (48.1374, 11.5755), 3),
    ]
    for args, source, point, within_km in cases:
        found = geocode(*args)
        assert found is not None and found.source is source, (args, found)
        assert _km(found, point) < within_km, (args, found)


def test_an_unknown_postal_code_falls_back_to_the_city_then_the_country() -> None:
    by_city = geocode("DE", "00000", "Berlin")
    assert by_city is not None and by_city.source is Source.CITY
    assert _km(by_city, BERLIN_MITTE_STORE) < 5
    by_country = geocode("DE", "00000", "Nowhere-on-the-map")
    assert by_country is not None and by_country.source is Source.COUNTRY
    assert 100 < _km(by_country, BERLIN_MITTE_STORE) < 400
    assert geocode("XX", "1", "Nowhere") is None


def test_region_and_comma_separated_parts_pick_among_places_of_one_name() -> None:
    maine = geocode("US", None, "Portland", region="ME")
    oregon = geocode("US", None, "Portland")
    assert maine is not None and round(maine.longitude) == -70
    assert oregon is not None and round(oregon.longitude) == -123
    shibuya = geocode("JP", None, "Shibuya, Tokyo")
    assert shibuya is not None and shibuya.source is Source.CITY
    assert _km(shibuya, (35.6595, 139.7005)) < 3


def test_locate_keeps_given_coordinates_and_says_where_others_come_from() -> None:
    given = locate({"country": "DE", "postal_code": "10115", "latitude": 1.0, "longitude": 2.0})
    assert (given["latitude"], given["coordinates_source"]) == (1.0, "given")
    found = locate({"country": "DE", "postal_code": "10115", "city": "Berlin"})
    assert found["coordinates_source"] == "postal_code"
    assert locate(found) == found  # placing an address twice changes nothing
    assert describe("postal_code", found) == "distance from postal code 10115 (GeoNames)"
    unknown = locate({"country": "XX", "city": "Nowhere"})
    assert unknown["coordinates_source"] is None and unknown["latitude"] is None
    assert describe(None, unknown) == "no coordinates: assumed far"
