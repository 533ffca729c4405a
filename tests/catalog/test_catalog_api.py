from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mercato.catalog import service as catalog_service
from mercato.db import Database
from mercato.pagination import encode_cursor
from tests.conftest import OWNER_EMAIL, assert_problem
from tests.helpers import (
    audit_entries,
    created,
    detach_categories,
    fast_password_hashing,
    gtin,
    make_category,
    make_product,
    ok,
    outbox,
    snapshot_counts,
    wrong_gtin,
)

Headers = dict[str, str]


@pytest.fixture(autouse=True)
def _fast_and_clean(monkeypatch: pytest.MonkeyPatch, db: Database) -> Iterator[None]:
    fast_password_hashing(monkeypatch)
    yield
    detach_categories(db)


def _fields(problem: dict[str, Any]) -> list[str]:
    return [e["field"] for e in problem.get("errors", [])]


# --- categories ---------------------------------------------------------------------------


def test_category_tree_with_translations(client: TestClient, owner_headers: Headers) -> None:
    drinks = make_category(
        client, owner_headers, "drinks", translations={"ja": "飲み物", "de_de": "Getränke"}
    )
    coffee = make_category(client, owner_headers, "coffee", parent_id=drinks["id"])
    beans = make_category(client, owner_headers, "beans", parent_id=coffee["id"])
    assert drinks["translations"] == {"ja": "飲み物", "de-DE": "Getränke"}
    assert beans["parent_id"] == coffee["id"]

    page = ok(client.get("/v1/categories", headers=owner_headers))
    assert page["next_cursor"] is None
    listed = {c["code"]: c for c in page["items"]}
    assert listed["drinks"]["parent_id"] is None
    assert listed["coffee"]["parent_id"] == drinks["id"]
    assert listed["beans"]["parent_id"] == coffee["id"]
    assert listed["drinks"]["translations"] == {"ja": "飲み物", "de-DE": "Getränke"}

    patched = ok(
        client.patch(
            f"/v1/categories/{coffee['id']}",
            json={"translations": {"ja": "コーヒー", "vi": "Cà phê"}, "position": 3},
            headers=owner_headers,
        )
    )
    assert patched["translations"] == {"ja": "コーヒー", "vi": "Cà phê"}
    assert patched["position"] == 3
    got = ok(client.get(f"/v1/categories/{coffee['id']}", headers=owner_headers))
    assert got["translations"] == {"ja": "コーヒー", "vi": "Cà phê"}

    # Moving a subtree elsewhere is fine; beans follow coffee.
    tea = make_category(client, owner_headers, "tea")
    moved = ok(
        client.patch(
            f"/v1/categories/{coffee['id']}", json={"parent_id": tea["id"]}, headers=owner_headers
        )
    )
    assert moved["parent_id"] == tea["id"]
    assert_problem(client.get("/v1/categories/999999", headers=owner_headers), 404, "not-found")


@pytest.mark.slow
def test_category_cycle_is_rejected_and_changes_nothing(
    client: TestClient, owner_headers: Headers, db: Database
) -> None:
    root = make_category(client, owner_headers, "root")
    child = make_category(client, owner_headers, "child", parent_id=root["id"])
    grandchild = make_category(client, owner_headers, "grandchild", parent_id=child["id"])
    before = snapshot_counts(db)

    for category, parent in ((root, grandchild), (root, child), (child, child)):
        problem = assert_problem(
            client.patch(
                f"/v1/categories/{category['id']}",
                json={"parent_id": parent["id"]},
                headers=owner_headers,
            ),
            422,
            "validation-error",
        )
        assert _fields(problem) == ["body.parent_id"]

    unknown = assert_problem(
        client.patch(
            f"/v1/categories/{child['id']}", json={"parent_id": 999999}, headers=owner_headers
        ),
        422,
    )
    assert _fields(unknown) == ["body.parent_id"]
    unknown_on_create = assert_problem(
        client.post(
            "/v1/categories",
            json={"code": "orphan", "name": "Orphan", "parent_id": 999999},
            headers=owner_headers,
        ),
        422,
    )
    assert _fields(unknown_on_create) == ["body.parent_id"]

    assert (
        ok(client.get(f"/v1/categories/{root['id']}", headers=owner_headers))["parent_id"] is None
    )
    assert snapshot_counts(db) == before


def test_category_bad_input(client: TestClient, owner_headers: Headers, db: Database) -> None:
    make_category(client, owner_headers, "shoes")
    before = snapshot_counts(db)
    assert_problem(
        client.post("/v1/categories", json={"code": "shoes", "name": "x"}, headers=owner_headers),
        409,
        "duplicate-code",
    )
    bad_locale = assert_problem(
        client.post(
            "/v1/categories",
            json={"code": "boots", "name": "Boots", "translations": {"zz-Nope": "x"}},
            headers=owner_headers,
        ),
        422,
    )
    assert _fields(bad_locale) == ["body.translations"]
    unknown = assert_problem(
        client.post(
            "/v1/categories",
            json={"code": "boots", "name": "Boots", "colour": "red"},
            headers=owner_headers,
        ),
        422,
    )
    assert {"field": "body.colour", "reason": "unknown field"} in unknown["errors"]
    shoes = ok(client.get("/v1/categories", headers=owner_headers))["items"][0]
    for field in ("name", "position", "translations"):
        null = assert_problem(
            client.patch(
                f"/v1/categories/{shoes['id']}", json={field: None}, headers=owner_headers
            ),
            422,
        )
        assert _fields(null) == [f"body.{field}"]
    assert ok(client.get(f"/v1/categories/{shoes['id']}", headers=owner_headers)) == shoes
    assert snapshot_counts(db) == before


# --- products and variants ----------------------------------------------------------------


def test_create_get_and_patch_a_product_with_variants(
    client: TestClient, owner_headers: Headers
) -> None:
    category = make_category(client, owner_headers, "coffee")
    barcode = gtin("400638133393")
    product = make_product(
        client,
        owner_headers,
        "KYOTO",
        name="Kyoto Blend",
        description="Dark and smooth",
        category_id=category["id"],
        tax_class="food",
        media_urls=["https://img.example/kyoto.jpg"],
        attributes={"origin": ["Ethiopia", "Brazil"], "roast": "dark"},
        variants=[
            {
                "sku": "KYOTO-250",
                "barcode": barcode,
                "options": {"size": "250 g"},
                "weight_g": 260,
                "hs_code": "0901.21",
                "country_of_origin": "br",
                "position": 1,
            },
            {"sku": "KYOTO-1000", "options": {"size": "1 kg"}, "position": 2},
        ],
    )
    assert product["status"] == "draft"
    assert product["category_id"] == category["id"]
    assert [v["sku"] for v in product["variants"]] == ["KYOTO-250", "KYOTO-1000"]
    first = product["variants"][0]
    assert first["barcode"] == barcode
    assert first["hs_code"] == "090121"
    assert first["country_of_origin"] == "BR"
    assert first["options"] == {"size": "250 g"}
    assert first["active"] is True

    got = ok(client.get(f"/v1/products/{product['id']}", headers=owner_headers))
    assert got["attributes"] == {"origin": ["Ethiopia", "Brazil"], "roast": "dark"}
    assert got["variants"] == product["variants"]

    patched = ok(
        client.patch(
            f"/v1/products/{product['id']}",
            json={"name": "Kyoto Blend No. 2", "status": "active"},
            headers=owner_headers,
        )
    )
    assert patched["name"] == "Kyoto Blend No. 2"
    assert patched["status"] == "active"
    assert patched["description"] == "Dark and smooth"  # untouched fields stay
    assert patched["updated_at"] >= product["updated_at"]

    archived = ok(
        client.patch(
            f"/v1/products/{product['id']}", json={"status": "archived"}, headers=owner_headers
        )
    )
    assert archived["status"] == "archived"
    assert_problem(
        client.patch(
            f"/v1/products/{product['id']}", json={"status": "sold-out"}, headers=owner_headers
        ),
        422,
    )
    assert_problem(
        client.patch(f"/v1/products/{product['id']}", json={"name": None}, headers=owner_headers),
        422,
    )

    added = created(
        client.post(
            f"/v1/products/{product['id']}/variants",
            json={"sku": "KYOTO-500", "options": {"size": "500 g"}},
            headers=owner_headers,
        )
    )
    assert added["product_id"] == product["id"]
    variant = ok(
        client.patch(
            f"/v1/variants/{added['id']}",
            json={"active": False, "weight_g": 510},
            headers=owner_headers,
        )
    )
    assert variant["active"] is False and variant["weight_g"] == 510
    assert ok(client.get(f"/v1/variants/{added['id']}", headers=owner_headers)) == variant
    reloaded = ok(client.get(f"/v1/products/{product['id']}", headers=owner_headers))
    skus = [v["sku"] for v in reloaded["variants"]]
    assert sorted(skus) == ["KYOTO-1000", "KYOTO-250", "KYOTO-500"]

    assert_problem(client.get("/v1/products/999999", headers=owner_headers), 404, "not-found")
    assert_problem(client.get("/v1/variants/999999", headers=owner_headers), 404, "not-found")
    assert_problem(
        client.patch("/v1/products/999999", json={"name": "x"}, headers=owner_headers), 404
    )


def test_translations_per_locale_and_fallback_chain(
    client: TestClient, owner_headers: Headers, db: Database
) -> None:
    product = make_product(
        client,
        owner_headers,
        "MATCHA",
        name="Matcha tin",
        description="Ceremonial grade",
        translations={
            "ja": {"name": "抹茶缶", "description": "お点前用"},
            "de": {"name": "Matcha-Dose"},
        },
    )
    assert {t["locale"]: t["name"] for t in product["translations"]} == {
        "de": "Matcha-Dose",
        "ja": "抹茶缶",
    }
    with_region = ok(
        client.put(
            f"/v1/products/{product['id']}/translations/de_CH",
            json={"name": "Matcha-Büchse"},
            headers=owner_headers,
        )
    )
    assert {t["locale"] for t in with_region["translations"]} == {"de", "de-CH", "ja"}
    updated = ok(
        client.put(
            f"/v1/products/{product['id']}/translations/ja",
            json={"name": "抹茶の缶", "description": "お点前用"},
            headers=owner_headers,
        )
    )
    assert {t["locale"]: t["name"] for t in updated["translations"]}["ja"] == "抹茶の缶"

    with db.read() as session:
        loaded = catalog_service.get_product(session, product["id"])
        assert catalog_service.localized(loaded, "ja-JP") == ("抹茶の缶", "お点前用")
        assert catalog_service.localized(loaded, "ja") == ("抹茶の缶", "お点前用")
        # de-AT has no translation of its own: its language, de, answers.
        assert catalog_service.localized(loaded, "de-AT") == ("Matcha-Dose", "Ceremonial grade")
        assert catalog_service.localized(loaded, "de-CH")[0] == "Matcha-Büchse"
        # No Vietnamese or French at all: the default name and description.
        assert catalog_service.localized(loaded, "vi-VN") == ("Matcha tin", "Ceremonial grade")
        assert catalog_service.localized(loaded, "fr")[0] == "Matcha tin"

    deleted = ok(
        client.delete(f"/v1/products/{product['id']}/translations/ja", headers=owner_headers)
    )
    assert {t["locale"] for t in deleted["translations"]} == {"de", "de-CH"}
    with db.read() as session:
        loaded = catalog_service.get_product(session, product["id"])
        assert catalog_service.localized(loaded, "ja-JP")[0] == "Matcha tin"
    assert_problem(
        client.delete(f"/v1/products/{product['id']}/translations/ja", headers=owner_headers),
        404,
    )
    bad = assert_problem(
        client.put(
            f"/v1/products/{product['id']}/translations/xx-Nowhere-Land",
            json={"name": "?"},
            headers=owner_headers,
        ),
        422,
    )
    assert _fields(bad) == ["path.locale"]
    bad_body = assert_problem(
        client.post(
            "/v1/products",
            json={"code": "X", "name": "X", "translations": {"klingon": {"name": "x"}}},
            headers=owner_headers,
        ),
        422,
    )
    assert _fields(bad_body) == ["body.translations"]


def _search(client: TestClient, headers: Headers, query: str) -> list[str]:
    page = ok(client.get(f"/v1/products?limit=200&{query}", headers=headers))
    return sorted(p["code"] for p in page["items"])


@pytest.mark.slow
def test_search_and_filters(client: TestClient, owner_headers: Headers) -> None:
    drinks = make_category(client, owner_headers, "drinks")
    coffee = make_category(client, owner_headers, "coffee", parent_id=drinks["id"])
    beans = make_category(client, owner_headers, "beans", parent_id=coffee["id"])
    apparel = make_category(client, owner_headers, "apparel")
    barcode = gtin("490000000001")
    make_product(
        client,
        owner_headers,
        "KYOTO",
        name="Kyoto Blend",
        category_id=beans["id"],
        status="active",
        translations={"ja": {"name": "京都ブレンド"}, "de": {"name": "Kyoto-Mischung"}},
        variants=[{"sku": "KB-250", "barcode": barcode}, {"sku": "KB-1000"}],
    )
    make_product(
        client,
        owner_headers,
        "SENCHA",
        name="Sencha green tea",
        category_id=drinks["id"],
        status="active",
        translations={"ja": {"name": "煎茶"}, "vi": {"name": "Trà xanh Sencha"}},
        skus=["SEN-100"],
    )
    make_product(
        client,
        owner_headers,
        "TEE",
        name="Logo T-shirt",
        category_id=apparel["id"],
        translations={"de": {"name": "Logo-T-Shirt"}},
        skus=["TEE-M", "TEE-L"],
    )
    make_product(client, owner_headers, "MUG", name="Mug 100% ceramic", skus=["MUG-1"])

    # Text search: code, names in every language, SKUs; every word must match.
    assert _search(client, owner_headers, "q=京都") == ["KYOTO"]
    assert _search(client, owner_headers, "q=mischung") == ["KYOTO"]
    assert _search(client, owner_headers, "q=kb-1000") == ["KYOTO"]
    assert _search(client, owner_headers, "q=trà") == ["SENCHA"]
    assert _search(client, owner_headers, "q=煎茶") == ["SENCHA"]
    assert _search(client, owner_headers, "q=LOGO shirt") == ["TEE"]
    assert _search(client, owner_headers, "q=logo kyoto") == []
    assert _search(client, owner_headers, "q=100%25") == ["MUG"]
    assert _search(client, owner_headers, "q=_") == []  # LIKE wildcards are escaped
    assert _search(client, owner_headers, f"q={barcode}") == ["KYOTO"]

    # Category filters include subcategories unless told otherwise.
    assert _search(client, owner_headers, f"category_id={drinks['id']}") == ["KYOTO", "SENCHA"]
    assert _search(client, owner_headers, f"category_id={coffee['id']}") == ["KYOTO"]
    assert _search(
        client, owner_headers, f"category_id={drinks['id']}&include_subcategories=false"
    ) == ["SENCHA"]
    assert _search(client, owner_headers, f"category_id={apparel['id']}&q=shirt") == ["TEE"]
    assert_problem(client.get("/v1/products?category_id=999999", headers=owner_headers), 404)

    assert _search(client, owner_headers, "sku=KB-1000") == ["KYOTO"]
    assert _search(client, owner_headers, "sku=KB") == []  # exact, not a prefix
    assert _search(client, owner_headers, f"barcode={barcode}") == ["KYOTO"]
    assert _search(client, owner_headers, "status=active") == ["KYOTO", "SENCHA"]
    assert _search(client, owner_headers, "status=draft") == ["MUG", "TEE"]
    assert _search(client, owner_headers, "status=archived") == []
    assert _search(client, owner_headers, "status=active&q=tea") == ["SENCHA"]
    assert_problem(client.get("/v1/products?status=deleted", headers=owner_headers), 422)


@pytest.mark.slow
def test_cursor_pagination_walks_every_product_once(
    client: TestClient, owner_headers: Headers
) -> None:
    ids = [make_product(client, owner_headers, f"P{n:02d}")["id"] for n in range(11)]
    seen: list[int] = []
    cursor: str | None = None
    pages = 0
    while True:
        url = "/v1/products?limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = ok(client.get(url, headers=owner_headers))
        assert len(page["items"]) <= 3
        seen += [p["id"] for p in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert pages < 10
    assert pages == 4
    assert seen == sorted(ids) and len(set(seen)) == 11

    # Filters apply on every page.
    filtered = ok(client.get("/v1/products?limit=2&q=p0", headers=owner_headers))
    rest = ok(
        client.get(
            f"/v1/products?limit=100&q=p0&cursor={filtered['next_cursor']}", headers=owner_headers
        )
    )
    codes = [p["code"] for p in filtered["items"] + rest["items"]]
    assert codes == [f"P0{n}" for n in range(10)]

    for garbage in ("garbage!", "bm90LWpzb24", encode_cursor("abc"), encode_cursor([1])):
        problem = assert_problem(
            client.get(f"/v1/products?cursor={garbage}", headers=owner_headers), 422
        )
        assert _fields(problem) == ["query.cursor"]
    assert_problem(client.get("/v1/products?limit=0", headers=owner_headers), 422)
    assert_problem(client.get("/v1/products?limit=100000", headers=owner_headers), 422)


@pytest.mark.slow
def test_duplicate_sku_and_barcode_are_409_naming_the_field(
    client: TestClient, owner_headers: Headers, db: Database
) -> None:
    barcode = gtin("400000000001")
    other_barcode = gtin("400000000002")
    first = make_product(
        client, owner_headers, "FIRST", variants=[{"sku": "SKU-1", "barcode": barcode}]
    )
    before = snapshot_counts(db)

    dup_sku = assert_problem(
        client.post(
            "/v1/products",
            json={"code": "SECOND", "name": "Second", "variants": [{"sku": "SKU-1"}]},
            headers=owner_headers,
        ),
        409,
        "duplicate-sku",
    )
    assert _fields(dup_sku) == ["body.variants[0].sku"]

    dup_barcode = assert_problem(
        client.post(
            "/v1/products",
            json={
                "code": "SECOND",
                "name": "Second",
                "variants": [{"sku": "SKU-2"}, {"sku": "SKU-3", "barcode": barcode}],
            },
            headers=owner_headers,
        ),
        409,
        "duplicate-barcode",
    )
    assert _fields(dup_barcode) == ["body.variants[1].barcode"]

    twice = assert_problem(
        client.post(
            "/v1/products",
            json={
                "code": "SECOND",
                "name": "Second",
                "variants": [{"sku": "SKU-9"}, {"sku": "SKU-9"}],
            },
            headers=owner_headers,
        ),
        422,
    )
    assert _fields(twice) == ["body.variants[1].sku"]

    on_add = assert_problem(
        client.post(
            f"/v1/products/{first['id']}/variants", json={"sku": "SKU-1"}, headers=owner_headers
        ),
        409,
        "duplicate-sku",
    )
    assert _fields(on_add) == ["body.sku"]

    assert_problem(
        client.post("/v1/products", json={"code": "FIRST", "name": "Again"}, headers=owner_headers),
        409,
        "duplicate-code",
    )
    assert snapshot_counts(db) == before

    second = make_product(
        client,
        owner_headers,
        "SECOND",
        variants=[{"sku": "SKU-2", "barcode": other_barcode}],
    )
    variant_id = second["variants"][0]["id"]
    on_patch = assert_problem(
        client.patch(
            f"/v1/variants/{variant_id}", json={"barcode": barcode}, headers=owner_headers
        ),
        409,
        "duplicate-barcode",
    )
    assert _fields(on_patch) == ["body.barcode"]
    # Setting a variant's own barcode again is not a conflict.
    same = client.patch(
        f"/v1/variants/{variant_id}", json={"barcode": other_barcode}, headers=owner_headers
    )
    assert ok(same)["barcode"] == other_barcode


def test_barcodes_are_checked_as_gtins(client: TestClient, owner_headers: Headers) -> None:
    for good in (gtin("9638507"), gtin("03600029145"), gtin("400638133393"), gtin("1061414100001")):
        make_product(client, owner_headers, f"OK-{good}", variants=[{"sku": good, "barcode": good}])
    # Non-numeric barcodes are other symbologies (Code 128 and the like) and pass as given.
    make_product(client, owner_headers, "CODE128", variants=[{"sku": "C1", "barcode": "ABC-123"}])

    for bad in (wrong_gtin("400638133393"), wrong_gtin("9638507"), "12345", "40063813339 3"):
        problem = assert_problem(
            client.post(
                "/v1/products",
                json={"code": "BAD", "name": "Bad", "variants": [{"sku": "B1", "barcode": bad}]},
                headers=owner_headers,
            ),
            422,
        )
        assert _fields(problem) == ["body.variants[0].barcode"], bad
    wrong = assert_problem(
        client.post(
            "/v1/products",
            json={
                "code": "BAD",
                "name": "Bad",
                "variants": [{"sku": "B1", "barcode": wrong_gtin("400638133393")}],
            },
            headers=owner_headers,
        ),
        422,
    )
    assert "check digit" in wrong["errors"][0]["reason"]
    variant_id = make_product(client, owner_headers, "PATCHME")["variants"][0]["id"]
    on_patch = assert_problem(
        client.patch(
            f"/v1/variants/{variant_id}",
            json={"barcode": wrong_gtin("9638507")},
            headers=owner_headers,
        ),
        422,
    )
    assert _fields(on_patch) == ["body.barcode"]


def test_unknown_fields_are_rejected(client: TestClient, owner_headers: Headers) -> None:
    product = make_product(client, owner_headers, "P1")
    cases = [
        ("POST", "/v1/products", {"code": "P2", "name": "P2", "colour": "red"}, "body.colour"),
        (
            "POST",
            "/v1/products",
            {"code": "P2", "name": "P2", "variants": [{"sku": "S", "price": 1}]},
            "body.variants[0].price",
        ),
        (
            "POST",
            "/v1/products",
            {"code": "P2", "name": "P2", "translations": {"ja": {"name": "x", "slug": "x"}}},
            "body.translations.ja.slug",
        ),
        ("PATCH", f"/v1/products/{product['id']}", {"sku": "X"}, "body.sku"),
        (
            "PATCH",
            f"/v1/variants/{product['variants'][0]['id']}",
            {"sku": "RENAMED"},
            "body.sku",
        ),
        (
            "POST",
            f"/v1/products/{product['id']}/variants",
            {"sku": "S2", "stock": 3},
            "body.stock",
        ),
        (
            "PUT",
            f"/v1/products/{product['id']}/translations/ja",
            {"name": "x", "title": "x"},
            "body.title",
        ),
    ]
    for method, path, body, field in cases:
        problem = assert_problem(
            client.request(method, path, json=body, headers=owner_headers), 422, "validation-error"
        )
        assert {"field": field, "reason": "unknown field"} in problem["errors"], (path, problem)
    assert_problem(client.get("/v1/products?colour=red", headers=owner_headers), 422)


@pytest.mark.slow
def test_bad_input_changes_nothing(
    client: TestClient, owner_headers: Headers, db: Database
) -> None:
    category = make_category(client, owner_headers, "cat")
    product = make_product(
        client, owner_headers, "KEEP", variants=[{"sku": "KEEP-1", "barcode": gtin("400000000011")}]
    )
    before = snapshot_counts(db)
    pid, vid = product["id"], product["variants"][0]["id"]
    bad_requests: list[tuple[str, str, Any]] = [
        ("POST", "/v1/products", {"code": "N", "name": "N", "category_id": 999999}),
        ("POST", "/v1/products", {"code": "N", "name": "N", "tax_class": "luxury"}),
        ("POST", "/v1/products", {"code": "N", "name": "N", "media_urls": ["ftp://x"]}),
        ("POST", "/v1/products", {"code": "bad code", "name": "N"}),
        ("POST", "/v1/products", {"code": "N", "name": ""}),
        (
            "POST",
            "/v1/products",
            {"code": "N", "name": "N", "variants": [{"sku": "N-1"}, {"sku": "KEEP-1"}]},
        ),
        (
            "POST",
            "/v1/products",
            {"code": "N", "name": "N", "variants": [{"sku": "N-1", "hs_code": "12"}]},
        ),
        (
            "POST",
            "/v1/products",
            {"code": "N", "name": "N", "variants": [{"sku": "N-1", "country_of_origin": "XX"}]},
        ),
        ("PATCH", f"/v1/products/{pid}", {"category_id": 999999}),
        ("PATCH", f"/v1/products/{pid}", {"name": "New", "tax_class": "luxury"}),
        ("PATCH", f"/v1/products/{pid}", {"name": "New", "status": None}),
        ("PATCH", f"/v1/variants/{vid}", {"weight_g": -1}),
        ("PATCH", f"/v1/variants/{vid}", {"active": None}),
        ("POST", f"/v1/products/{pid}/variants", {"sku": "KEEP-1"}),
        ("PUT", f"/v1/products/{pid}/translations/ja", {"name": ""}),
        ("PATCH", f"/v1/categories/{category['id']}", {"parent_id": category["id"]}),
    ]
    for method, path, body in bad_requests:
        response = client.request(method, path, json=body, headers=owner_headers)
        assert response.status_code in (409, 422), (method, path, body, response.text)
    assert snapshot_counts(db) == before
    unchanged = ok(client.get(f"/v1/products/{pid}", headers=owner_headers))
    assert unchanged["name"] == product["name"]
    assert unchanged["status"] == "draft"
    assert unchanged["variants"] == product["variants"]
    assert unchanged["updated_at"] == product["updated_at"]


def test_audit_entries_and_outbox_events_are_written_with_the_change(
    client: TestClient, owner_headers: Headers, db: Database
) -> None:
    response = client.post(
        "/v1/products",
        json={"code": "EVT", "name": "Evented", "variants": [{"sku": "EVT-1"}]},
        headers={**owner_headers, "X-Request-ID": "req-create-1"},
    )
    product = created(response)

    events = outbox(db, "product.created")
    assert len(events) == 1
    event = events[0]
    assert event.aggregate_type == "product" and event.aggregate_id == str(product["id"])
    assert event.data["id"] == product["id"]
    assert event.data["code"] == "EVT"
    assert event.data["status"] == "draft"
    assert event.data["variant_ids"] == [product["variants"][0]["id"]]
    assert event.dispatched_at is None  # the dispatcher is off in tests; the row waits

    entries = audit_entries(db, "product.created")
    assert len(entries) == 1
    entry = entries[0]
    assert entry.entity_type == "product" and entry.entity_id == str(product["id"])
    assert entry.actor_label == OWNER_EMAIL
    assert entry.request_id == "req-create-1"
    assert entry.changes["variants"] == ["EVT-1"]

    ok(
        client.patch(
            f"/v1/products/{product['id']}",
            json={"status": "active"},
            headers={**owner_headers, "X-Request-ID": "req-patch-1"},
        )
    )
    updated = outbox(db, "product.updated")
    assert len(updated) == 1 and updated[0].data["status"] == "active"
    patch_entry = audit_entries(db, "product.updated")
    assert len(patch_entry) == 1
    assert patch_entry[0].changes == {"status": "active"}
    assert patch_entry[0].request_id == "req-patch-1"

    # Each variant or translation change is an update of the product too.
    created(
        client.post(
            f"/v1/products/{product['id']}/variants", json={"sku": "EVT-2"}, headers=owner_headers
        )
    )
    ok(
        client.put(
            f"/v1/products/{product['id']}/translations/ja",
            json={"name": "イベント"},
            headers=owner_headers,
        )
    )
    updated = outbox(db, "product.updated")
    assert len(updated) == 3
    assert len(updated[-1].data["variant_ids"]) == 2
    actions = [e.action for e in audit_entries(db) if e.entity_type == "product"]
    assert actions == [
        "product.created",
        "product.updated",
        "variant.created",
        "product.translated",
    ]
    visible = ok(
        client.get(
            f"/v1/audit?entity_type=product&entity_id={product['id']}", headers=owner_headers
        )
    )["items"]
    assert [e["action"] for e in visible][::-1] == actions

    # A request that fails after validation (a conflict) leaves neither an event nor an entry.
    before = snapshot_counts(db)
    assert_problem(
        client.post(
            "/v1/products",
            json={"code": "EVT2", "name": "x", "variants": [{"sku": "EVT-1"}]},
            headers=owner_headers,
        ),
        409,
    )
    # A PATCH that changes nothing writes nothing either.
    ok(client.patch(f"/v1/products/{product['id']}", json={}, headers=owner_headers))
    assert snapshot_counts(db) == before


def test_category_changes_are_audited_and_published(
    client: TestClient, owner_headers: Headers, db: Database
) -> None:
    category = make_category(client, owner_headers, "events")
    ok(client.patch(f"/v1/categories/{category['id']}", json={"name": "E"}, headers=owner_headers))
    assert [e.type for e in outbox(db)] == ["category.created", "category.updated"]
    assert [e.action for e in audit_entries(db) if e.entity_type == "category"] == [
        "category.created",
        "category.updated",
    ]
