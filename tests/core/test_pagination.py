"""Every cursor-paginated list refuses a cursor it did not issue with a 422, never a 500."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from mercato.pagination import encode_cursor
from tests.conftest import assert_problem
from tests.helpers import (
    channel_key,
    fast_password_hashing,
    make_channel,
    make_location,
    make_product,
    ok,
)

pytestmark = pytest.mark.slow

Headers = dict[str, str]

STAFF_LISTS = ["/v1/products", "/v1/customers", "/v1/staff", "/v1/audit", "/v1/locations"]
# Not base64, base64 of something else, and well-formed cursors of the wrong type.
FOREIGN_CURSORS = [
    "garbage!",
    "bm90LWpzb24",
    encode_cursor("abc"),
    encode_cursor("12"),
    encode_cursor([1]),
    encode_cursor({"id": 1}),
    encode_cursor(True),
    encode_cursor(1.5),
]


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_password_hashing(monkeypatch)


def test_foreign_cursors_are_422(client: TestClient, owner_headers: Headers) -> None:
    make_location(client, owner_headers, "WH-1")
    for path in STAFF_LISTS:
        for cursor in FOREIGN_CURSORS:
            problem = assert_problem(
                client.get(f"{path}?cursor={cursor}", headers=owner_headers),
                422,
                "validation-error",
            )
            assert [e["field"] for e in problem["errors"]] == ["query.cursor"], (path, cursor)


def test_issued_cursors_walk_every_row_once(client: TestClient, owner_headers: Headers) -> None:
    channel = make_channel(client, owner_headers, "web")
    store = {"X-Channel-Key": channel_key(client, owner_headers, channel["id"])}
    for n in range(3):
        make_location(client, owner_headers, f"WH-{n}")
        client.post("/v1/products", json={"code": f"P{n}", "name": f"P{n}"}, headers=owner_headers)
        client.post(
            "/v1/store/customers",
            json={"email": f"c{n}@example.com", "password": "long enough pw"},
            headers=store,
        )
        staff = {"email": f"s{n}@example.com", "name": "S", "password": "long enough pw"}
        client.post("/v1/staff", json={**staff, "role": "analyst"}, headers=owner_headers)
    for path in STAFF_LISTS:
        everything = ok(client.get(f"{path}?limit=100", headers=owner_headers))["items"]
        assert len(everything) >= 3, path
        seen: list[int] = []
        cursor = ""
        while True:
            page = ok(client.get(f"{path}?limit=1{cursor}", headers=owner_headers))
            seen += [item["id"] for item in page["items"]]
            if page["next_cursor"] is None:
                break
            cursor = f"&cursor={page['next_cursor']}"
        assert seen == [item["id"] for item in everything], path


def test_storefront_cursor_is_checked_too(client: TestClient, owner_headers: Headers) -> None:
    channel = make_channel(client, owner_headers, "web")
    store = {"X-Channel-Key": channel_key(client, owner_headers, channel["id"])}
    for cursor in FOREIGN_CURSORS:
        assert_problem(client.get(f"/v1/store/products?cursor={cursor}", headers=store), 422)


# Lists keyed by id take no composite key, and the stock levels list (keyed by variant and
# location) takes nothing else: each refuses the other's cursors.
ID_LISTS = [
    "/v1/inventory/transfers",
    "/v1/inventory/movements",
    "/v1/payments",
    "/v1/gift-cards",
]
HUGE = 2**70


@pytest.mark.parametrize("path", ID_LISTS)
def test_id_lists_refuse_composite_and_garbage_cursors(
    client: TestClient, owner_headers: Headers, path: str
) -> None:
    for cursor in [*FOREIGN_CURSORS, encode_cursor([1, 2]), encode_cursor(HUGE), "x" * 5000]:
        problem = assert_problem(
            client.get(f"{path}?cursor={cursor}", headers=owner_headers), 422, "validation-error"
        )
        assert [e["field"] for e in problem["errors"]] == ["query.cursor"], (path, cursor)


def test_levels_refuse_id_cursors(client: TestClient, owner_headers: Headers) -> None:
    for cursor in [*FOREIGN_CURSORS, encode_cursor(5), encode_cursor([1, 2, 3])]:
        problem = assert_problem(
            client.get(f"/v1/inventory/levels?cursor={cursor}", headers=owner_headers), 422
        )
        assert [e["field"] for e in problem["errors"]] == ["query.cursor"], cursor
    assert ok(
        client.get(f"/v1/inventory/levels?cursor={encode_cursor([1, 2])}", headers=owner_headers)
    ) == {"items": [], "next_cursor": None}


def test_categories_channels_and_keys_page_through_every_row(
    client: TestClient, owner_headers: Headers
) -> None:
    # Positions out of id order: categories page in tree order (position, then id).
    for n, position in enumerate([2, 0, 1, 0]):
        body = {"code": f"cat-{n}", "name": f"Cat {n}", "position": position}
        assert client.post("/v1/categories", json=body, headers=owner_headers).status_code == 201
    channels = [make_channel(client, owner_headers, f"web-{n}") for n in range(3)]
    store = {"X-Channel-Key": channel_key(client, owner_headers, channels[0]["id"])}
    for _ in range(2):
        channel_key(client, owner_headers, channels[0]["id"])
    keys_path = f"/v1/channels/{channels[0]['id']}/keys"

    def walk(path: str, headers: Headers, key: str) -> list[Any]:
        seen: list[Any] = []
        cursor = ""
        while True:
            page = ok(client.get(f"{path}?limit=1{cursor}", headers=headers))
            assert len(page["items"]) <= 1
            seen += [item[key] for item in page["items"]]
            if page["next_cursor"] is None:
                return seen
            cursor = f"&cursor={page['next_cursor']}"

    expected_order = ["cat-1", "cat-3", "cat-2", "cat-0"]
    assert walk("/v1/categories", owner_headers, "code") == expected_order
    assert walk("/v1/store/categories", store, "code") == expected_order
    assert walk("/v1/channels", owner_headers, "code") == ["web-0", "web-1", "web-2"]
    assert len(walk(keys_path, owner_headers, "id")) == 3
    for path, headers in [
        ("/v1/categories", owner_headers),
        ("/v1/store/categories", store),
        ("/v1/channels", owner_headers),
        (keys_path, owner_headers),
    ]:
        for cursor in FOREIGN_CURSORS:
            problem = assert_problem(client.get(f"{path}?cursor={cursor}", headers=headers), 422)
            assert [e["field"] for e in problem["errors"]] == ["query.cursor"], (path, cursor)


# Lists that answered bare arrays before they took the one page shape.
FORMERLY_BARE_LISTS = [
    "/v1/store/customers/me/addresses",
    "/v1/customers/{customer_id}/timeline",
    "/v1/price-lists",
    "/v1/price-lists/{code}/prices",
    "/v1/prices/resolve",
    "/v1/exchange-rates",
    "/v1/currency-rounding",
    "/v1/shipping/carriers",
    "/v1/shipping/zones",
    "/v1/shipping/rate-tables",
    "/v1/shipping/labels",
    "/v1/shipping/customs",
    "/v1/shipping/customs-exchange-rates",
    "/v1/orders/{order_id}/notes",
    "/v1/orders/{order_id}/routing",
    "/v1/support/sla-policies",
    "/v1/fulfillment/orders",
    "/v1/privacy/requests",
    "/v1/loyalty/campaigns",
    "/v1/return-policies",
]


def _schema_of(document: dict[str, Any], operation: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = operation["responses"]["200"]["content"]["application/json"][
        "schema"
    ]
    ref = schema.get("$ref")
    return document["components"]["schemas"][ref.rsplit("/", 1)[1]] if ref else schema


def test_every_list_has_the_one_page_shape(app: Any) -> None:
    document = app.openapi()
    for path, item in document["paths"].items():
        operation = item.get("get")
        if operation is None or "application/json" not in str(operation["responses"].get("200")):
            continue
        schema = _schema_of(document, operation)
        assert schema.get("type") != "array", path
        if schema.get("properties", {}).get("items", {}).get("type") == "array":
            assert "next_cursor" in schema["properties"], path
    for path in FORMERLY_BARE_LISTS:
        schema = _schema_of(document, document["paths"][path]["get"])
        assert {"items", "next_cursor"} <= set(schema["properties"]), path


def test_reference_lists_answer_a_page(client: TestClient, owner_headers: Headers) -> None:
    for path in ["/v1/shipping/carriers", "/v1/price-lists", "/v1/return-policies"]:
        assert ok(client.get(path, headers=owner_headers)) == {"items": [], "next_cursor": None}


def test_privacy_requests_page_newest_first(client: TestClient, owner_headers: Headers) -> None:
    channel = make_channel(client, owner_headers, "web")
    store = {"X-Channel-Key": channel_key(client, owner_headers, channel["id"])}
    for n in range(3):
        body = {"email": f"p{n}@example.com", "password": "long enough pw"}
        client.post("/v1/store/customers", json=body, headers=store)
    customers = ok(client.get("/v1/customers", headers=owner_headers))["items"]
    for customer in customers:
        path = f"/v1/customers/{customer['id']}/privacy/export"
        exported = client.post(path, json={}, headers=owner_headers)
        assert exported.status_code == 200, exported.text
    everything = ok(client.get("/v1/privacy/requests", headers=owner_headers))
    assert everything["next_cursor"] is None and len(everything["items"]) == 3
    ids = [r["id"] for r in everything["items"]]
    assert ids == sorted(ids, reverse=True)
    seen: list[int] = []
    cursor = ""
    while True:
        page = ok(client.get(f"/v1/privacy/requests?limit=2{cursor}", headers=owner_headers))
        seen += [r["id"] for r in page["items"]]
        if page["next_cursor"] is None:
            break
        cursor = f"&cursor={page['next_cursor']}"
    assert seen == ids


def test_a_price_list_pages_through_its_prices(client: TestClient, owner_headers: Headers) -> None:
    price_list = {"code": "EU", "name": "Europe", "base_currency": "EUR", "tax_inclusive": True}
    assert client.post("/v1/price-lists", json=price_list, headers=owner_headers).status_code == 201
    make_product(client, owner_headers, "P", skus=["P-1", "P-2", "P-3"])
    prices = [
        {"sku": sku, "currency": currency, "amount": "10"}
        for sku in ("P-1", "P-2", "P-3")
        for currency in ("USD", "EUR")
    ]
    put = client.put("/v1/price-lists/EU/prices", json={"prices": prices}, headers=owner_headers)
    assert put.status_code == 200, put.text
    everything = ok(client.get("/v1/price-lists/EU/prices", headers=owner_headers))
    assert len(everything["items"]) == 6 and everything["next_cursor"] is None
    seen: list[int] = []
    cursor = ""
    while True:
        page = ok(client.get(f"/v1/price-lists/EU/prices?limit=4{cursor}", headers=owner_headers))
        seen += [p["id"] for p in page["items"]]
        if page["next_cursor"] is None:
            break
        cursor = f"&cursor={page['next_cursor']}"
    assert seen == [p["id"] for p in everything["items"]]
    variants = [p["variant_id"] for p in everything["items"]]
    assert variants == sorted(variants)
