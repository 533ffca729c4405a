from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from mercato.auth.permissions import ROLE_PERMISSIONS, Permission, Role
from tests.conftest import OWNER_EMAIL, PASSWORD, assert_problem, login

pytestmark = pytest.mark.slow

LOCATION = {
    "code": "STORE-BER",
    "name": "Berlin Mitte",
    "type": "store",
    "address": {"line1": "Rosenthaler Str. 1", "city": "Berlin", "country": "DE"},
    "timezone": "Europe/Berlin",
    "latitude": 52.53,
    "longitude": 13.40,
    "capabilities": {"pickup": True, "ship_from_store": True, "returns": True},
}


def _location(client: TestClient, headers: dict[str, str], code: str) -> int:
    response = client.post("/v1/locations", json={**LOCATION, "code": code}, headers=headers)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def test_login_me_and_logout(client: TestClient, owner_headers: dict[str, str]) -> None:
    me = client.get("/v1/auth/me", headers=owner_headers)
    assert me.status_code == 200
    assert me.json()["user"]["email"] == OWNER_EMAIL
    assert "staff:write" in me.json()["permissions"]
    assert client.post("/v1/auth/logout", headers=owner_headers).status_code == 204
    assert_problem(client.get("/v1/auth/me", headers=owner_headers), 401, "invalid-token")


def test_wrong_password_and_unknown_user_look_the_same(
    client: TestClient, owner_headers: dict[str, str]
) -> None:
    wrong = client.post("/v1/auth/login", json={"email": OWNER_EMAIL, "password": "nope"})
    unknown = client.post("/v1/auth/login", json={"email": "x@example.com", "password": "nope"})
    assert assert_problem(wrong, 401)["code"] == assert_problem(unknown, 401)["code"]


def test_password_is_stored_as_argon2(db: object, owner_headers: dict[str, str]) -> None:
    from sqlalchemy import select

    from mercato.auth.models import StaffUser
    from mercato.db import Database

    assert isinstance(db, Database)
    with db.read() as session:
        stored = session.scalar(select(StaffUser.password_hash))
    assert stored is not None and stored.startswith("$argon2") and PASSWORD not in stored


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer nonsense"}, {"Authorization": "Basic abc"}],
)
def test_staff_endpoints_refuse_missing_or_wrong_tokens(
    client: TestClient, headers: dict[str, str]
) -> None:
    for path in ("/v1/staff", "/v1/locations", "/v1/audit", "/v1/auth/me"):
        assert_problem(client.get(path, headers=headers), 401)


def test_unknown_field_in_body_is_rejected(
    client: TestClient, owner_headers: dict[str, str]
) -> None:
    body = assert_problem(
        client.post(
            "/v1/staff",
            json={
                "email": "a@example.com",
                "name": "A",
                "password": "long enough pw",
                "role": "analyst",
                "is_boss": True,
            },
            headers=owner_headers,
        ),
        422,
    )
    assert {"field": "body.is_boss", "reason": "unknown field"} in body["errors"]


# The permission matrix: for each role, one endpoint guarded by each permission.
GUARDED = [
    (Permission.STAFF_READ, "GET", "/v1/staff", None),
    (Permission.AUDIT_READ, "GET", "/v1/audit", None),
    (Permission.LOCATIONS_READ, "GET", "/v1/locations", None),
    (Permission.LOCATIONS_WRITE, "POST", "/v1/locations", {**LOCATION, "code": "NEW-{n}"}),
]


@pytest.mark.parametrize("role", list(Role))
def test_permission_matrix(
    client: TestClient,
    owner_headers: dict[str, str],
    make_staff: Callable[..., dict[str, str]],
    role: Role,
) -> None:
    store = _location(client, owner_headers, "HOME")
    headers = make_staff(role, [store])
    for n, (permission, method, path, body) in enumerate(GUARDED):
        payload = None if body is None else {**body, "code": f"NEW-{n}"}
        response = client.request(method, path, json=payload, headers=headers)
        if permission in ROLE_PERMISSIONS[role]:
            assert response.status_code in (200, 201), (role, path, response.text)
        else:
            problem = assert_problem(response, 403, "forbidden")
            assert problem["permission"] == permission.value


def test_store_roles_need_a_location(client: TestClient, owner_headers: dict[str, str]) -> None:
    body = assert_problem(
        client.post(
            "/v1/staff",
            json={
                "email": "assoc@example.com",
                "name": "Assoc",
                "password": "long enough pw",
                "role": "store_associate",
            },
            headers=owner_headers,
        ),
        422,
    )
    assert body["errors"][0]["field"] == "location_ids"


def test_unknown_location_for_staff_is_422(
    client: TestClient, owner_headers: dict[str, str]
) -> None:
    body = assert_problem(
        client.post(
            "/v1/staff",
            json={
                "email": "assoc@example.com",
                "name": "Assoc",
                "password": "long enough pw",
                "role": "store_associate",
                "location_ids": [999],
            },
            headers=owner_headers,
        ),
        422,
    )
    assert body["errors"][0]["field"] == "body.location_ids"
    assert client.get("/v1/staff", headers=owner_headers).json()["items"][0]["email"] == OWNER_EMAIL
    assert len(client.get("/v1/staff", headers=owner_headers).json()["items"]) == 1


def test_admin_cannot_create_owner_but_owner_can(
    client: TestClient, owner_headers: dict[str, str], make_staff: Callable[..., dict[str, str]]
) -> None:
    admin = make_staff(Role.ADMIN)
    new_owner = {
        "email": "second-owner@example.com",
        "name": "Second",
        "password": "long enough pw",
        "role": "owner",
    }
    assert_problem(client.post("/v1/staff", json=new_owner, headers=admin), 403)
    assert client.post("/v1/staff", json=new_owner, headers=owner_headers).status_code == 201


def test_duplicate_staff_email_is_409(client: TestClient, owner_headers: dict[str, str]) -> None:
    user = {
        "email": "dup@example.com",
        "name": "D",
        "password": "long enough pw",
        "role": "analyst",
    }
    assert client.post("/v1/staff", json=user, headers=owner_headers).status_code == 201
    assert_problem(
        client.post("/v1/staff", json=user, headers=owner_headers), 409, "duplicate-email"
    )


def test_deactivated_user_loses_access(client: TestClient, owner_headers: dict[str, str]) -> None:
    created = client.post(
        "/v1/staff",
        json={
            "email": "gone@example.com",
            "name": "G",
            "password": "long enough pw",
            "role": "analyst",
        },
        headers=owner_headers,
    ).json()
    headers = login(client, "gone@example.com", "long enough pw")
    assert client.get("/v1/locations", headers=headers).status_code == 200
    patched = client.patch(
        f"/v1/staff/{created['id']}", json={"active": False}, headers=owner_headers
    )
    assert patched.status_code == 200
    assert_problem(client.get("/v1/locations", headers=headers), 401)


def test_audit_log_records_who_changed_what(
    client: TestClient, owner_headers: dict[str, str]
) -> None:
    location_id = _location(client, owner_headers, "AUDITED")
    client.patch(f"/v1/locations/{location_id}", json={"name": "Renamed"}, headers=owner_headers)
    entries = client.get(
        f"/v1/audit?entity_type=location&entity_id={location_id}", headers=owner_headers
    ).json()["items"]
    assert [e["action"] for e in entries] == ["location.updated", "location.created"]
    assert entries[0]["actor_label"] == OWNER_EMAIL
    assert entries[0]["changes"] == {"name": "Renamed"}
    assert entries[0]["request_id"]


def test_failed_request_writes_no_audit_entry(
    client: TestClient, owner_headers: dict[str, str]
) -> None:
    _location(client, owner_headers, "ONE")
    before = client.get("/v1/audit", headers=owner_headers).json()["items"]
    assert_problem(
        client.post("/v1/locations", json={**LOCATION, "code": "ONE"}, headers=owner_headers), 409
    )
    assert client.get("/v1/audit", headers=owner_headers).json()["items"] == before


def test_integration_api_token(client: TestClient, owner_headers: dict[str, str]) -> None:
    created = client.post(
        "/v1/staff",
        json={
            "email": "erp@example.com",
            "name": "ERP",
            "password": "long enough pw",
            "role": "integration",
        },
        headers=owner_headers,
    ).json()
    token = client.post(
        f"/v1/staff/{created['id']}/api-tokens", json={"name": "erp-sync"}, headers=owner_headers
    ).json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/v1/locations", headers=headers).status_code == 200
    assert_problem(client.get("/v1/staff", headers=headers), 403)


def test_audit_pagination(client: TestClient, owner_headers: dict[str, str]) -> None:
    for n in range(5):
        _location(client, owner_headers, f"L{n}")
    first = client.get("/v1/audit?limit=2", headers=owner_headers).json()
    second = client.get(
        f"/v1/audit?limit=2&cursor={first['next_cursor']}", headers=owner_headers
    ).json()
    ids = [e["id"] for e in first["items"] + second["items"]]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 4
    assert_problem(client.get("/v1/audit?cursor=garbage!", headers=owner_headers), 422)
