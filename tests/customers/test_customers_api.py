from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from mercato.auth.permissions import Role
from mercato.customers.models import Customer
from mercato.db import Database
from mercato.pagination import encode_cursor
from tests.conftest import assert_problem
from tests.helpers import channel_key, count, fast_password_hashing, make_channel, ok, outbox

Headers = dict[str, str]
PASSWORD = "a long enough secret"


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_password_hashing(monkeypatch)


@pytest.fixture
def channel(client: TestClient, owner_headers: Headers) -> dict[str, Any]:
    created = make_channel(client, owner_headers, "web-de", default_locale="de-DE")
    return {
        **created,
        "headers": {"X-Channel-Key": channel_key(client, owner_headers, created["id"])},
    }


def _register(client: TestClient, store: Headers, **fields: Any) -> Any:
    body = {"email": "hana@example.com", "password": PASSWORD, **fields}
    return client.post("/v1/store/customers", json=body, headers=store)


def test_register_login_and_me(client: TestClient, channel: dict[str, Any], db: Database) -> None:
    store = channel["headers"]
    response = _register(
        client,
        store,
        email="  Hana.Sato@Example.COM ",
        first_name="Hana",
        last_name="Sato",
        phone="+49 30 901820",
        locale="de-DE",
    )
    assert response.status_code == 201, response.text
    registered = response.json()
    assert registered["token_type"] == "bearer"
    assert registered["token"].startswith("mct_")
    customer = registered["customer"]
    assert customer["email"] == "hana.sato@example.com"
    assert customer["phone"] == "+4930901820"
    assert (customer["first_name"], customer["last_name"]) == ("Hana", "Sato")
    assert customer["registered_channel_id"] == channel["id"]

    me = ok(
        client.get(
            "/v1/store/customers/me",
            headers={**store, "Authorization": f"Bearer {registered['token']}"},
        )
    )
    assert me == customer

    login = ok(
        client.post(
            "/v1/store/customers/login",
            json={"email": "HANA.SATO@example.com", "password": PASSWORD},
            headers=store,
        )
    )
    assert login["customer"]["id"] == customer["id"]
    assert login["token"] != registered["token"]
    again = client.get(
        "/v1/store/customers/me", headers={**store, "Authorization": f"Bearer {login['token']}"}
    )
    assert ok(again)["id"] == customer["id"]

    with db.read() as session:
        stored = session.scalars(select(Customer)).one()
        assert stored.password_hash is not None and stored.password_hash.startswith("$argon2id$")
        assert PASSWORD not in stored.password_hash
    events = outbox(db, "customer.registered")
    assert [e.data for e in events] == [
        {"customer_id": customer["id"], "channel_id": channel["id"]}
    ]


def test_the_account_is_shared_by_every_channel(
    client: TestClient, owner_headers: Headers, channel: dict[str, Any]
) -> None:
    token = _register(client, channel["headers"]).json()["token"]
    app = make_channel(client, owner_headers, "app", type="app")
    app_headers = {"X-Channel-Key": channel_key(client, owner_headers, app["id"])}
    me = client.get(
        "/v1/store/customers/me", headers={**app_headers, "Authorization": f"Bearer {token}"}
    )
    assert ok(me)["email"] == "hana@example.com"
    login = client.post(
        "/v1/store/customers/login",
        json={"email": "hana@example.com", "password": PASSWORD},
        headers=app_headers,
    )
    assert ok(login)["customer"]["registered_channel_id"] == channel["id"]


E164 = [
    ("+49 30 901820", "+4930901820"),
    ("+81 3-1234-5678", "+81312345678"),
    ("+1 (650) 253-0000", "+16502530000"),
    ("+84 24 3825 3536", "+842438253536"),
    ("  +65 6123 4567 ", "+6561234567"),
]


def test_phone_numbers_are_stored_as_e164(client: TestClient, channel: dict[str, Any]) -> None:
    for n, (phone, e164) in enumerate(E164):
        response = _register(client, channel["headers"], email=f"p{n}@example.com", phone=phone)
        assert response.status_code == 201, (phone, response.text)
        assert response.json()["customer"]["phone"] == e164


def test_bad_phone_is_422(client: TestClient, channel: dict[str, Any], db: Database) -> None:
    for phone in ("12345", "030 901820", "+49 1", "call me", "+999 123456789", "+1 555 0100"):
        problem = assert_problem(_register(client, channel["headers"], phone=phone), 422)
        assert [e["field"] for e in problem["errors"]] == ["body.phone"], phone
    assert count(db, Customer) == 0


def test_bad_registration_is_422(client: TestClient, channel: dict[str, Any], db: Database) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"email": "not-an-email"}, "body.email"),
        ({"password": "short"}, "body.password"),
        ({"loyalty_tier": "gold"}, "body.loyalty_tier"),
        ({"locale": "xx-Nowhere"}, "body.locale"),
    ]
    for fields, field in cases:
        problem = assert_problem(_register(client, channel["headers"], **fields), 422)
        assert field in [e["field"] for e in problem["errors"]], fields
    assert count(db, Customer) == 0


def test_locale_is_normalised(client: TestClient, channel: dict[str, Any]) -> None:
    response = _register(client, channel["headers"], locale="ja_jp")
    assert response.status_code == 201, response.text
    assert response.json()["customer"]["locale"] == "ja-JP"


@pytest.mark.slow
def test_duplicate_email_is_409(client: TestClient, channel: dict[str, Any], db: Database) -> None:
    assert _register(client, channel["headers"]).status_code == 201
    assert_problem(
        _register(client, channel["headers"], email="HANA@example.com"), 409, "duplicate-email"
    )
    assert count(db, Customer) == 1
    assert len(outbox(db, "customer.registered")) == 1


def test_wrong_credentials_are_401(client: TestClient, channel: dict[str, Any]) -> None:
    store = channel["headers"]
    token = _register(client, store).json()["token"]
    wrong = client.post(
        "/v1/store/customers/login",
        json={"email": "hana@example.com", "password": "not the password"},
        headers=store,
    )
    unknown = client.post(
        "/v1/store/customers/login",
        json={"email": "nobody@example.com", "password": PASSWORD},
        headers=store,
    )
    assert assert_problem(wrong, 401)["code"] == assert_problem(unknown, 401)["code"]

    me = "/v1/store/customers/me"
    assert_problem(client.get(me, headers=store), 401, "missing-customer-token")
    assert_problem(
        client.get(me, headers={**store, "Authorization": "Bearer mct_forged"}),
        401,
        "invalid-customer-token",
    )
    # A customer token needs a channel key as well.
    assert_problem(client.get(me, headers={"Authorization": f"Bearer {token}"}), 401)
    assert_problem(
        client.post("/v1/store/customers", json={"email": "a@example.com", "password": PASSWORD}),
        401,
        "missing-channel-key",
    )


def test_staff_see_customers_and_analysts_see_no_personal_data(
    client: TestClient,
    channel: dict[str, Any],
    owner_headers: Headers,
    make_staff: Callable[..., Headers],
) -> None:
    store = channel["headers"]
    ids = []
    for n in range(3):
        response = _register(
            client,
            store,
            email=f"shopper{n}@example.com",
            first_name=f"First{n}",
            last_name=f"Last{n}",
            phone=f"+49 30 90182{n}",
            locale="de-DE",
        )
        ids.append(response.json()["customer"]["id"])

    listed = ok(client.get("/v1/customers", headers=owner_headers))
    assert [c["email"] for c in listed["items"]] == [f"shopper{n}@example.com" for n in range(3)]
    one = ok(client.get(f"/v1/customers/{ids[1]}", headers=owner_headers))
    assert (one["first_name"], one["phone"]) == ("First1", "+4930901821")
    by_email = ok(client.get("/v1/customers?email=SHOPPER2@example.com", headers=owner_headers))
    assert [c["id"] for c in by_email["items"]] == [ids[2]]

    support = make_staff(Role.SUPPORT_AGENT)
    assert ok(client.get(f"/v1/customers/{ids[0]}", headers=support))["email"] == (
        "shopper0@example.com"
    )

    analyst = make_staff(Role.ANALYST)
    redacted = ok(client.get("/v1/customers", headers=analyst))["items"]
    assert [c["id"] for c in redacted] == ids
    for record in [*redacted, ok(client.get(f"/v1/customers/{ids[1]}", headers=analyst))]:
        assert record["email"] is None
        assert record["phone"] is None
        assert record["first_name"] is None
        assert record["last_name"] is None
        assert record["locale"] == "de-DE"
        assert record["registered_channel_id"] == channel["id"]
    # Looking a customer up by email is itself personal data.
    problem = assert_problem(
        client.get("/v1/customers?email=shopper0@example.com", headers=analyst), 403, "forbidden"
    )
    assert problem["permission"] == "customers:pii"
    assert_problem(client.get("/v1/customers/999999", headers=owner_headers), 404)


def test_customer_list_pagination(
    client: TestClient, channel: dict[str, Any], owner_headers: Headers
) -> None:
    for n in range(5):
        _register(client, channel["headers"], email=f"c{n}@example.com")
    seen: list[int] = []
    url = "/v1/customers?limit=2"
    while url:
        page = ok(client.get(url, headers=owner_headers))
        seen += [c["id"] for c in page["items"]]
        url = f"/v1/customers?limit=2&cursor={page['next_cursor']}" if page["next_cursor"] else ""
    assert len(seen) == 5 and seen == sorted(set(seen))
    for garbage in ("garbage!", encode_cursor("abc"), encode_cursor({"id": 1})):
        problem = assert_problem(
            client.get(f"/v1/customers?cursor={garbage}", headers=owner_headers), 422
        )
        assert [e["field"] for e in problem["errors"]] == ["query.cursor"]
