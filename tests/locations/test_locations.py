"""Locations: where stock lives, with their hours, capabilities, place and capacity."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mercato.auth.principal import Principal
from mercato.db import Database
from mercato.errors import Conflict, NotFound, ValidationProblem
from mercato.locations import service
from mercato.locations.models import Location
from mercato.locations.schemas import (
    Address,
    Capabilities,
    LocationIn,
    LocationPatch,
    LocationType,
)
from tests.conftest import assert_problem
from tests.helpers import LOCATION, audit_entries, created, fast_password_hashing, ok, outbox

Headers = dict[str, str]
MakeStaff = Callable[..., Headers]

STORE: dict[str, Any] = {
    "code": "ST-BER",
    "name": "Berlin Mitte",
    "type": "store",
    "address": {"line1": "Rosenthaler Str. 1", "city": "Berlin", "country": "de"},
    "timezone": "Europe/Berlin",
    "latitude": 52.53,
    "longitude": 13.40,
    "opening_hours": {"sat": [["10:00", "18:00"]], "mon": [["14:00", "20:00"], ["09:00", "12:00"]]},
    "capabilities": {"pickup": True, "ship_from_store": True, "returns": True},
    "daily_capacity": 40,
}


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_password_hashing(monkeypatch)


def _fields(problem: dict[str, Any]) -> list[str]:
    return [e["field"] for e in problem.get("errors", [])]


def _create(client: TestClient, headers: Headers, **overrides: Any) -> dict[str, Any]:
    return created(client.post("/v1/locations", json={**STORE, **overrides}, headers=headers))


# --- service --------------------------------------------------------------------------------


def _data(code: str, **overrides: Any) -> LocationIn:
    return LocationIn.model_validate({**STORE, "code": code, **overrides})


def test_service_create_update_and_list(db: Database, system: Principal) -> None:
    with db.transaction() as session:
        store = service.create_location(session, system, _data("S1"))
        service.create_location(
            session,
            system,
            _data("W1", type="warehouse", capabilities={"ship": True}, opening_hours={}),
        )
        service.create_location(
            session,
            system,
            _data("S2", address={"country": "JP"}, timezone="Asia/Tokyo", active=False),
        )
        store_id = store.id
    with db.transaction() as session:
        assert store.country == "DE"
        assert store.opening_hours["mon"] == [["09:00", "12:00"], ["14:00", "20:00"]]
        changed = service.update_location(
            session,
            system,
            store_id,
            LocationPatch(name="Berlin Mitte (new)", daily_capacity=None),
        )
        assert changed.name == "Berlin Mitte (new)" and changed.daily_capacity is None
        assert changed.timezone == "Europe/Berlin"  # untouched fields stay
    with db.read() as session:

        def codes(**filters: Any) -> list[str]:
            return [x.code for x in service.list_locations(session, **filters).items]

        assert codes() == ["S1", "W1", "S2"]
        assert codes(type="store") == ["S1", "S2"]
        assert codes(country="jp") == ["S2"]
        assert codes(capability="ship") == ["W1"]
        assert codes(capability="pickup") == ["S1", "S2"]
        assert codes(active=False) == ["S2"]
        first = service.list_locations(session, limit=2)
        assert [x.code for x in first.items] == ["S1", "W1"] and first.next_cursor
        rest = service.list_locations(session, cursor=first.next_cursor, limit=2)
        assert [x.code for x in rest.items] == ["S2"] and rest.next_cursor is None
        assert service.all_ids(session) == sorted(
            x.id for x in session.query(Location).filter(Location.active.is_(True))
        )


def test_service_refuses_duplicates_unknowns_and_nulls(db: Database, system: Principal) -> None:
    with db.transaction() as session:
        service.create_location(session, system, _data("S1"))
    with pytest.raises(Conflict), db.transaction() as session:
        service.create_location(session, system, _data("S1"))
    with pytest.raises(NotFound), db.transaction() as session:
        service.update_location(session, system, 999_999, LocationPatch(name="x"))
    with db.read() as session:
        s1 = service.list_locations(session).items[0].id
    for name in service.NOT_NULL_FIELDS:
        with pytest.raises(ValidationProblem) as caught, db.transaction() as session:
            service.update_location(session, system, s1, LocationPatch.model_validate({name: None}))
        assert caught.value.errors[0]["field"] == f"body.{name}"
    with pytest.raises(ValidationProblem) as missing, db.read() as session:
        service.require_existing(session, [s1, 424242], field="locations")
    assert missing.value.errors[0] == {
        "field": "body.locations",
        "reason": "unknown location ids [424242]",
    }


def test_nearest_orders_by_distance_and_skips_unplaced() -> None:
    def place(code: str, lat: float | None, lon: float | None) -> Location:
        return Location(code=code, latitude=lat, longitude=lon, id=len(code))

    berlin, hamburg, nowhere = (
        place("B", 52.52, 13.40),
        place("HH", 53.55, 9.99),
        place("N", None, None),
    )
    found = service.nearest([hamburg, nowhere, berlin], 52.4, 13.1)
    assert [loc.code for loc, _ in found] == ["B", "HH"]
    assert 20 < found[0][1] < 30  # Potsdam to Berlin Mitte, great-circle
    assert service.haversine_km(0, 0, 0, 1) == pytest.approx(111.19, abs=0.01)


def test_schema_rules() -> None:
    assert Address(country="jp").country == "JP"
    assert Capabilities().model_dump() == {
        "ship": False,
        "pickup": False,
        "ship_from_store": False,
        "returns": False,
    }
    assert LocationType("dropship") is LocationType.DROPSHIP


# --- API ------------------------------------------------------------------------------------


def test_create_and_read(client: TestClient, owner_headers: Headers, db: Database) -> None:
    store = _create(client, owner_headers)
    assert store["address"]["country"] == "DE"
    assert store["opening_hours"] == {
        "mon": [["09:00", "12:00"], ["14:00", "20:00"]],
        "sat": [["10:00", "18:00"]],
    }
    assert store["capabilities"] == {
        "ship": False,
        "pickup": True,
        "ship_from_store": True,
        "returns": True,
    }
    assert store["daily_capacity"] == 40 and store["active"] is True
    assert ok(client.get(f"/v1/locations/{store['id']}", headers=owner_headers)) == store
    assert [e.type for e in outbox(db, "location.created")] == ["location.created"]
    assert [e.entity_id for e in audit_entries(db, "location.created")] == [str(store["id"])]
    assert_problem(
        client.post("/v1/locations", json=STORE, headers=owner_headers), 409, "duplicate-code"
    )


@pytest.mark.slow
def test_list_filters(client: TestClient, owner_headers: Headers) -> None:
    _create(client, owner_headers)
    created(client.post("/v1/locations", json=LOCATION, headers=owner_headers))
    _create(
        client,
        owner_headers,
        code="ST-TYO",
        address={"country": "JP"},
        timezone="Asia/Tokyo",
        capabilities={"pickup": True},
        active=False,
    )

    def codes(query: str) -> list[str]:
        page = ok(client.get(f"/v1/locations{query}", headers=owner_headers))
        return [x["code"] for x in page["items"]]

    assert codes("") == ["ST-BER", "WH-1", "ST-TYO"]
    assert codes("?type=store") == ["ST-BER", "ST-TYO"]
    assert codes("?type=warehouse&country=de") == ["WH-1"]
    assert codes("?country=JP") == ["ST-TYO"]
    assert codes("?capability=ship") == ["WH-1"]
    assert codes("?capability=ship_from_store") == ["ST-BER"]
    assert codes("?capability=pickup&active=true") == ["ST-BER"]
    assert codes("?active=false") == ["ST-TYO"]
    for query, field in [
        ("?type=shop", "query.type"),
        ("?country=DEU", "query.country"),
        ("?capability=fly", "query.capability"),
        ("?limit=0", "query.limit"),
    ]:
        problem = assert_problem(client.get(f"/v1/locations{query}", headers=owner_headers), 422)
        assert _fields(problem) == [field], query


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"timezone": "Mars/Olympus"}, "body.timezone"),
        ({"timezone": "+02:00"}, "body.timezone"),
        ({"opening_hours": {"monday": [["09:00", "17:00"]]}}, "body.opening_hours"),
        ({"opening_hours": {"mon": [["9:00", "17:00"]]}}, "body.opening_hours"),
        ({"opening_hours": {"mon": [["09:00", "24:00"]]}}, "body.opening_hours"),
        ({"opening_hours": {"mon": [["18:00", "09:00"]]}}, "body.opening_hours"),
        ({"opening_hours": {"mon": ["09:00", "17:00"]}}, "body.opening_hours"),
        ({"opening_hours": {"mon": "09:00-17:00"}}, "body.opening_hours"),
        ({"latitude": 52.5, "longitude": None}, "body"),
        ({"latitude": None, "longitude": 13.4}, "body"),
        ({"latitude": 91, "longitude": 0}, "body.latitude"),
        ({"latitude": 0, "longitude": -181}, "body.longitude"),
        ({"daily_capacity": -1}, "body.daily_capacity"),
        ({"daily_capacity": 1.5}, "body.daily_capacity"),
        ({"type": "kiosk"}, "body.type"),
        ({"code": "has space"}, "body.code"),
        ({"address": {"country": "XX"}}, "body.address.country"),
        ({"capabilities": {"teleport": True}}, "body.capabilities.teleport"),
        ({"colour": "red"}, "body.colour"),
    ],
)
def test_create_refuses_bad_input(
    client: TestClient, owner_headers: Headers, db: Database, change: dict[str, Any], field: str
) -> None:
    problem = assert_problem(
        client.post("/v1/locations", json={**STORE, **change}, headers=owner_headers), 422
    )
    assert _fields(problem) == [field], problem
    with db.read() as session:
        assert session.query(Location).count() == 0


def test_coordinates_are_optional_together(client: TestClient, owner_headers: Headers) -> None:
    # Without coordinates a location is placed from its address (here its city, Berlin).
    placeless = _create(client, owner_headers, latitude=None, longitude=None)
    assert placeless["coordinates_source"] == "city"
    assert (round(placeless["latitude"]), round(placeless["longitude"])) == (53, 13)
    path = f"/v1/locations/{placeless['id']}"
    # Half a position is refused; a whole one, and clearing both, are fine.
    problem = assert_problem(client.patch(path, json={"latitude": 1.0}, headers=owner_headers), 422)
    assert _fields(problem) == ["body.latitude"]
    moved = ok(client.patch(path, json={"latitude": 1.0, "longitude": 2.0}, headers=owner_headers))
    assert (moved["latitude"], moved["longitude"]) == (1.0, 2.0)
    assert moved["coordinates_source"] == "given"
    # Once placed, one coordinate may move alone.
    assert ok(client.patch(path, json={"longitude": 3.0}, headers=owner_headers))["latitude"] == 1.0
    problem = assert_problem(
        client.patch(path, json={"latitude": None}, headers=owner_headers), 422
    )
    assert _fields(problem) == ["body.latitude"]
    # Clearing both goes back to the address's place.
    cleared = ok(
        client.patch(path, json={"latitude": None, "longitude": None}, headers=owner_headers)
    )
    assert cleared["coordinates_source"] == "city"
    assert cleared["latitude"] == placeless["latitude"]


@pytest.mark.slow
def test_patch_changes_what_is_sent(
    client: TestClient, owner_headers: Headers, db: Database
) -> None:
    store = _create(client, owner_headers)
    path = f"/v1/locations/{store['id']}"
    patched = ok(
        client.patch(
            path,
            json={
                "opening_hours": {"sun": [["11:00", "16:00"]]},
                "capabilities": {"pickup": True},
                "address": {"city": "Potsdam", "country": "de"},
                "daily_capacity": None,
                "active": False,
            },
            headers=owner_headers,
        )
    )
    assert patched["opening_hours"] == {"sun": [["11:00", "16:00"]]}
    assert patched["capabilities"]["ship_from_store"] is False
    assert patched["address"] == {
        "line1": None,
        "line2": None,
        "city": "Potsdam",
        "region": None,
        "postal_code": None,
        "country": "DE",
    }
    assert patched["daily_capacity"] is None and patched["active"] is False
    assert patched["name"] == store["name"] and patched["timezone"] == store["timezone"]
    assert (
        ok(client.patch(path, json={"daily_capacity": 12}, headers=owner_headers))["daily_capacity"]
        == 12
    )
    assert len(outbox(db, "location.updated")) == 2


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["name", "timezone", "active", "opening_hours", "address", "capabilities"]
)
def test_patch_refuses_null_for_required_fields(
    client: TestClient, owner_headers: Headers, name: str
) -> None:
    store = _create(client, owner_headers)
    path = f"/v1/locations/{store['id']}"
    problem = assert_problem(
        client.patch(path, json={name: None}, headers=owner_headers), 422, "validation-error"
    )
    assert _fields(problem) == [f"body.{name}"]
    assert ok(client.get(path, headers=owner_headers)) == store


@pytest.mark.slow
@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"timezone": "Europe/Atlantis"}, "body.timezone"),
        ({"opening_hours": {"xyz": []}}, "body.opening_hours"),
        ({"daily_capacity": -5}, "body.daily_capacity"),
        ({"name": ""}, "body.name"),
        ({"code": "NEW"}, "body.code"),
        ({"type": "warehouse"}, "body.type"),
    ],
)
def test_patch_refuses_bad_input(
    client: TestClient, owner_headers: Headers, change: dict[str, Any], field: str
) -> None:
    store = _create(client, owner_headers)
    path = f"/v1/locations/{store['id']}"
    problem = assert_problem(client.patch(path, json=change, headers=owner_headers), 422)
    assert _fields(problem) == [field]
    assert ok(client.get(path, headers=owner_headers)) == store


@pytest.mark.slow
def test_unknown_location_is_404(client: TestClient, owner_headers: Headers) -> None:
    assert_problem(client.get("/v1/locations/999999", headers=owner_headers), 404, "not-found")
    assert_problem(
        client.patch("/v1/locations/999999", json={"name": "x"}, headers=owner_headers),
        404,
        "not-found",
    )
    problem = assert_problem(client.get("/v1/locations/abc", headers=owner_headers), 422)
    assert _fields(problem) == ["path.location_id"]


def test_permissions(client: TestClient, owner_headers: Headers, make_staff: MakeStaff) -> None:
    store = _create(client, owner_headers)
    path = f"/v1/locations/{store['id']}"
    assert_problem(client.get("/v1/locations"), 401, "missing-token")
    assert_problem(client.post("/v1/locations", json=STORE), 401)
    for role in ("analyst", "support_agent", "integration"):
        headers = make_staff(role)
        assert ok(client.get(path, headers=headers))["id"] == store["id"]
        assert_problem(client.patch(path, json={"name": "x"}, headers=headers), 403, "forbidden")
        assert_problem(
            client.post("/v1/locations", json={**STORE, "code": "X"}, headers=headers),
            403,
            "forbidden",
        )
    manager = make_staff("store_manager", [store["id"]])
    assert ok(client.get("/v1/locations", headers=manager))["items"][0]["id"] == store["id"]
    assert_problem(client.patch(path, json={"name": "x"}, headers=manager), 403, "forbidden")
    admin = make_staff("admin")
    assert ok(client.patch(path, json={"name": "Renamed"}, headers=admin))["name"] == "Renamed"
