"""Input no database can store is a 422 naming the field on every route, never a 500:
integers beyond a BIGINT, money filters finer than amounts are kept, NUL characters."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import assert_problem
from tests.helpers import (
    channel_key,
    fast_password_hashing,
    make_channel,
    make_location,
    snapshot_counts,
)

Headers = dict[str, str]
TOO_BIG = 2**63  # one more than the largest BIGINT


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_password_hashing(monkeypatch)


def _fields(response: Any, status: int = 422) -> list[str]:
    problem = assert_problem(response, status, "validation-error")
    return [e["field"] for e in problem["errors"]]


@pytest.mark.parametrize(
    "path, field",
    [
        (f"/v1/orders/{TOO_BIG}", "path.order_id"),
        (f"/v1/locations/{TOO_BIG}", "path.location_id"),
        (f"/v1/inventory/levels/{TOO_BIG}/1", "path.variant_id"),
        (f"/v1/orders?customer_id={TOO_BIG}", "query.customer_id"),
        (f"/v1/orders?location_id=-{TOO_BIG}", "query.location_id"),
        (f"/v1/products?category_id={10**30}", "query.category_id"),
    ],
)
def test_integers_beyond_a_bigint_in_the_url_are_422(
    client: TestClient, owner_headers: Headers, path: str, field: str
) -> None:
    response = client.get(path, headers=owner_headers)
    assert _fields(response) == [field]
    assert "between" in response.json()["errors"][0]["reason"]


def test_the_largest_bigint_is_an_ordinary_not_found(
    client: TestClient, owner_headers: Headers
) -> None:
    assert_problem(client.get(f"/v1/orders/{TOO_BIG - 1}", headers=owner_headers), 404)


def test_integers_beyond_a_bigint_in_a_body_are_422_and_change_nothing(
    client: TestClient, owner_headers: Headers, db: Any
) -> None:
    before = snapshot_counts(db)
    body = {"code": "coffee", "name": "Coffee", "parent_id": TOO_BIG}
    assert _fields(client.post("/v1/categories", json=body, headers=owner_headers)) == [
        "body.parent_id"
    ]
    location = make_location(client, owner_headers, "WH-1")
    before = snapshot_counts(db)
    lines = {"lines": [{"variant_id": 1, "quantity": 1}, {"variant_id": -TOO_BIG, "quantity": 1}]}
    response = client.post(
        "/v1/inventory/transfers",
        json={"from_location_id": location["id"], "to_location_id": TOO_BIG, **lines},
        headers=owner_headers,
    )
    assert _fields(response) == ["body.to_location_id", "body.lines[1].variant_id"]
    assert snapshot_counts(db) == before


@pytest.mark.parametrize("value", ["0.00001", "12.34567", "NaN", "Infinity", "1e30"])
def test_money_filters_finer_than_amounts_are_kept_are_422(
    client: TestClient, owner_headers: Headers, value: str
) -> None:
    response = client.get(f"/v1/orders?min_total={value}", headers=owner_headers)
    assert _fields(response) == ["query.min_total"]
    response = client.get(f"/v1/orders?max_total={value}", headers=owner_headers)
    assert _fields(response) == ["query.max_total"]


def test_money_filters_with_four_decimals_work(client: TestClient, owner_headers: Headers) -> None:
    response = client.get("/v1/orders?min_total=0.0001&max_total=99.5", headers=owner_headers)
    assert response.status_code == 200, response.text


def test_nul_in_body_text_is_422_naming_the_field(
    client: TestClient, owner_headers: Headers, db: Any
) -> None:
    before = snapshot_counts(db)
    body = {"code": "coffee", "name": "Cof\x00fee", "translations": {"de": "Kaf\x00fee"}}
    assert _fields(client.post("/v1/categories", json=body, headers=owner_headers)) == [
        "body.name",
        "body.translations.de",
    ]
    keyed = {"code": "tea", "name": "Tea", "translations": {"d\x00e": "Tee"}}
    assert _fields(client.post("/v1/categories", json=keyed, headers=owner_headers)) == [
        "body.translations.de"
    ]
    assert snapshot_counts(db) == before


def test_nul_in_query_and_path_text_is_422(client: TestClient, owner_headers: Headers) -> None:
    assert _fields(client.get("/v1/customers?email=a%00b@example.com", headers=owner_headers)) == [
        "query.email"
    ]
    assert _fields(client.get("/v1/orders/by-number/A%00B", headers=owner_headers)) == [
        "path.number"
    ]


def test_nul_in_an_imported_file_is_refused_and_nothing_is_written(
    client: TestClient, owner_headers: Headers, db: Any
) -> None:
    before = snapshot_counts(db)
    csv = "product_code,name,sku\nA,Fine,A-1\nB,Bro\x00ken,B-1\n"
    response = client.post(
        "/v1/catalog/import?format=csv",
        content=csv.encode(),
        headers={**owner_headers, "content-type": "text/csv"},
    )
    problem = assert_problem(response, 422, "import-invalid")
    assert [(e["line"], e["field"]) for e in problem["report"]["errors"]] == [(3, "name")]
    assert snapshot_counts(db) == before


@pytest.mark.parametrize(
    "path",
    [
        "/v1/prices/resolve?price_list=EU&currency=EUR&variant_ids=1,{big}",
        "/v1/inventory/availability?variant_ids={big},2",
    ],
)
def test_id_lists_beyond_a_bigint_are_422(
    client: TestClient, owner_headers: Headers, path: str
) -> None:
    response = client.get(path.format(big=TOO_BIG), headers=owner_headers)
    assert _fields(response) == ["query.variant_ids"]


@pytest.mark.slow
def test_shopper_id_lists_beyond_a_bigint_are_422(
    client: TestClient, owner_headers: Headers
) -> None:
    channel = make_channel(client, owner_headers, "web")
    store = {"X-Channel-Key": channel_key(client, owner_headers, channel["id"])}
    response = client.get(f"/v1/store/availability?variant_ids=1,-{TOO_BIG}", headers=store)
    assert _fields(response) == ["query.variant_ids"]
