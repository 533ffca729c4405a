from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete

from mercato.catalog.models import Product, ProductTranslation, Variant
from mercato.db import Database
from tests.conftest import assert_problem
from tests.helpers import (
    audit_entries,
    count,
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

BARCODE_250 = gtin("490000000101")
BARCODE_1000 = gtin("490000000102")

GOOD_CSV = f"""\
product_code,name,description,status,tax_class,category_code,media_urls,sku,barcode,weight_g,\
option:size,option:grind,name:ja,description:ja,name:de-DE
KYOTO,Kyoto Blend,Dark and smooth,active,food,coffee,https://img.example/k1.jpg|https://img.example/k2.jpg,\
KB-250,{BARCODE_250},260,250 g,whole,京都ブレンド,深煎り,Kyoto-Mischung
KYOTO,Kyoto Blend,Dark and smooth,active,food,coffee,,KB-1000,{BARCODE_1000},1040,1 kg,ground,,,
TEE,Logo tee,,draft,standard,,,TEE-M,,,M,,,,
"""


@pytest.fixture(autouse=True)
def _fast_and_clean(monkeypatch: pytest.MonkeyPatch, db: Database) -> Iterator[None]:
    fast_password_hashing(monkeypatch)
    yield
    detach_categories(db)


def _import(
    client: TestClient, headers: Headers, body: str, fmt: str, *, dry_run: bool = False
) -> Any:
    url = f"/v1/catalog/import?format={fmt}" + ("&dry_run=true" if dry_run else "")
    content_type = "text/csv" if fmt == "csv" else "application/json"
    return client.post(
        url, content=body.encode(), headers={**headers, "content-type": content_type}
    )


def _by_code(client: TestClient, headers: Headers) -> dict[str, dict[str, Any]]:
    page = ok(client.get("/v1/products?limit=200", headers=headers))
    return {p["code"]: p for p in page["items"]}


def _csv(rows: list[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


def _errors(response: Any) -> list[tuple[int, str]]:
    problem = assert_problem(response, 422, "import-invalid")
    report = problem["report"]
    assert report["imported"] is False
    return [(e["line"], e["field"]) for e in report["errors"]]


def test_csv_import_creates_products_variants_options_and_translations(
    client: TestClient, owner_headers: Headers, db: Database
) -> None:
    coffee = make_category(client, owner_headers, "coffee")
    report = ok(_import(client, owner_headers, GOOD_CSV, "csv"))
    assert report == {
        "format": "csv",
        "dry_run": False,
        "rows": 3,
        "products": 2,
        "variants": 3,
        "created": 2,
        "updated": 0,
        "errors": [],
        "imported": True,
    }
    products = _by_code(client, owner_headers)
    kyoto = products["KYOTO"]
    assert kyoto["name"] == "Kyoto Blend"
    assert kyoto["description"] == "Dark and smooth"
    assert kyoto["status"] == "active" and kyoto["tax_class"] == "food"
    assert kyoto["category_id"] == coffee["id"]
    assert kyoto["media_urls"] == ["https://img.example/k1.jpg", "https://img.example/k2.jpg"]
    assert {t["locale"]: (t["name"], t["description"]) for t in kyoto["translations"]} == {
        "ja": ("京都ブレンド", "深煎り"),
        "de-DE": ("Kyoto-Mischung", None),
    }
    variants = {v["sku"]: v for v in kyoto["variants"]}
    assert variants["KB-250"]["barcode"] == BARCODE_250
    assert variants["KB-250"]["weight_g"] == 260
    assert variants["KB-250"]["options"] == {"size": "250 g", "grind": "whole"}
    assert variants["KB-1000"]["options"] == {"size": "1 kg", "grind": "ground"}
    tee = products["TEE"]
    assert tee["status"] == "draft" and tee["category_id"] is None
    assert tee["translations"] == []
    assert [(v["sku"], v["options"]) for v in tee["variants"]] == [("TEE-M", {"size": "M"})]

    # Imported products are searchable in every language, like created ones.
    found = ok(client.get("/v1/products?q=京都", headers=owner_headers))["items"]
    assert [p["code"] for p in found] == ["KYOTO"]

    # One audit entry for the import, one event per product (both new: product.created).
    assert [e.action for e in audit_entries(db, "catalog.imported")] == ["catalog.imported"]
    created_events = outbox(db, "product.created")
    assert sorted(e.data["code"] for e in created_events) == ["KYOTO", "TEE"]
    assert outbox(db, "product.updated") == []


def test_json_import_creates_products(
    client: TestClient, owner_headers: Headers, db: Database
) -> None:
    make_category(client, owner_headers, "tea")
    records = [
        {
            "product_code": "SENCHA",
            "name": "Sencha",
            "status": "active",
            "category_code": "tea",
            "translations": {
                "ja_JP": {"name": "煎茶", "description": "静岡産"},
                "vi": {"name": "Trà"},
            },
            "variants": [
                {"sku": "SEN-100", "barcode": gtin("490000000201"), "options": {"size": "100 g"}},
                {"sku": "SEN-500", "options": {"size": "500 g"}, "active": False},
            ],
        },
        {"product_code": "EMPTY", "name": "Coming soon"},
    ]
    report = ok(_import(client, owner_headers, json.dumps({"products": records}), "json"))
    assert (report["products"], report["variants"], report["created"]) == (2, 2, 2)
    products = _by_code(client, owner_headers)
    sencha = products["SENCHA"]
    assert {t["locale"] for t in sencha["translations"]} == {"ja-JP", "vi"}
    assert {v["sku"]: v["active"] for v in sencha["variants"]} == {
        "SEN-100": True,
        "SEN-500": False,
    }
    assert products["EMPTY"]["variants"] == []
    assert count(db, Variant) == 2


def test_dry_run_reports_every_bad_csv_row_and_imports_nothing(
    client: TestClient, owner_headers: Headers, db: Database
) -> None:
    make_category(client, owner_headers, "coffee")
    rows = [
        ["product_code", "name", "status", "category_code", "sku", "barcode", "weight_g"],
        ["GOOD", "Good", "active", "coffee", "G-1", gtin("490000000301"), "100"],  # line 2
        ["BAD1", "Bad barcode", "active", "", "B1-1", wrong_gtin("490000000302"), ""],  # 3
        ["GOOD", "Good", "active", "coffee", "G-2", "", ""],  # line 4
        ["BAD2", "Bad status", "sold", "", "B2-1", "", ""],  # line 5
        ["BAD3", "Bad weight", "", "", "B3-1", "", "heavy"],  # line 6
        ["BAD4", "Bad category", "", "nowhere", "B4-1", "", ""],  # line 7
        ["", "No code", "", "", "B5-1", "", ""],  # line 8
        ["BAD6", "Bad sku", "", "", "has space", "", ""],  # line 9
        ["GOOD", "Good", "active", "coffee", "G-1", "", ""],  # line 10: SKU twice
    ]
    body = _csv(rows)
    before = snapshot_counts(db)

    dry = _import(client, owner_headers, body, "csv", dry_run=True)
    assert _errors(dry) == [
        (3, "barcode"),
        (5, "status"),
        (6, "weight_g"),
        (7, "category_code"),
        (8, "product_code"),
        (9, "sku"),
        (10, "sku"),
    ]
    report = dry.json()["report"]
    assert report["dry_run"] is True
    assert "check digit" in report["errors"][0]["reason"]
    assert snapshot_counts(db) == before

    # The same file for real: the same report, still nothing written.
    assert _errors(_import(client, owner_headers, body, "csv")) == _errors(dry)
    assert snapshot_counts(db) == before

    # A dry run of a good file says what it would do and writes nothing either.
    good = ok(_import(client, owner_headers, _csv(rows[:2] + rows[3:4]), "csv", dry_run=True))
    assert (good["dry_run"], good["imported"], good["products"], good["variants"]) == (
        True,
        False,
        1,
        2,
    )
    assert snapshot_counts(db) == before


def test_one_bad_row_means_nothing_is_imported(
    client: TestClient, owner_headers: Headers, db: Database
) -> None:
    rows = [["product_code", "name", "sku", "barcode"]]
    rows += [[f"P{n}", f"Product {n}", f"P{n}-1", ""] for n in range(20)]
    rows.append(["LAST", "Last", "LAST-1", "12345"])  # line 22: not a GTIN
    before = snapshot_counts(db)
    assert _errors(_import(client, owner_headers, _csv(rows), "csv")) == [(22, "barcode")]
    assert snapshot_counts(db) == before

    records: list[dict[str, Any]] = [
        {"product_code": f"J{n}", "name": f"J {n}", "variants": [{"sku": f"J{n}-1"}]}
        for n in range(5)
    ]
    records[3]["variants"][0]["weight_g"] = -5
    problem = assert_problem(
        _import(client, owner_headers, json.dumps(records), "json"), 422, "import-invalid"
    )
    assert [(e["line"], e["field"]) for e in problem["report"]["errors"]] == [
        (4, "variants[0].weight_g")
    ]
    assert snapshot_counts(db) == before


def test_file_level_problems(client: TestClient, owner_headers: Headers, db: Database) -> None:
    before = snapshot_counts(db)
    assert _errors(
        _import(client, owner_headers, "product_code,name,colour\nA,A,red\n", "csv")
    ) == [
        (1, "colour"),
        (1, "sku"),
    ]
    assert _errors(_import(client, owner_headers, "", "csv")) == [(1, "header")]
    extra_cells = "product_code,name,sku\nA,A,A-1,surplus\n"
    assert _errors(_import(client, owner_headers, extra_cells, "csv")) == [(2, "row")]
    assert _errors(_import(client, owner_headers, "{not json", "json")) == [(1, "file")]
    assert _errors(_import(client, owner_headers, '{"a": 1}', "json")) == [(1, "file")]
    translated_description_only = "product_code,name,sku,description:ja\nA,A,A-1,説明\n"
    assert _errors(_import(client, owner_headers, translated_description_only, "csv")) == [
        (2, "name:ja")
    ]
    bad_locale = "product_code,name,sku,name:xx-Nowhere\nA,A,A-1,x\n"
    assert _errors(_import(client, owner_headers, bad_locale, "csv")) == [
        (2, "translations.xx-Nowhere")
    ]
    not_utf8 = client.post(
        "/v1/catalog/import?format=csv",
        content="product_code,name,sku\nA,Café,A-1\n".encode("latin-1"),
        headers={**owner_headers, "content-type": "text/csv"},
    )
    assert assert_problem(not_utf8, 422)["errors"] == [
        {"field": "body", "reason": "the file is not UTF-8"}
    ]
    assert_problem(_import(client, owner_headers, "[]", "xml"), 422)
    assert_problem(client.post("/v1/catalog/import", content=b"[]", headers=owner_headers), 422)
    assert snapshot_counts(db) == before


def test_json_values_of_the_wrong_type_are_reported_not_a_server_error(
    client: TestClient, owner_headers: Headers, db: Database
) -> None:
    records: list[Any] = [
        {"product_code": "A", "name": "A", "status": ["active"]},
        {"product_code": "B", "name": "B", "category_code": {"code": "tea"}},
        {"product_code": "C", "name": "C", "description": {"en": "text"}},
        {"product_code": "D", "name": "D", "variants": {"sku": "D-1"}},
        {"product_code": "E", "name": "E", "media_urls": "https://img.example/e.jpg"},
        {"product_code": "F", "name": "F", "translations": "ja"},
        {"product_code": "G", "name": "G", "tax_class": 7},
        {"product_code": 8, "name": ["H"]},
        "not an object",
        {"product_code": "J", "name": "J", "colour": "red"},
        {"product_code": "K", "name": "K", "variants": [{"sku": "K-1", "options": {"size": 1}}]},
    ]
    before = snapshot_counts(db)
    response = _import(client, owner_headers, json.dumps(records), "json", dry_run=True)
    lines = sorted({line for line, _ in _errors(response)})
    assert lines == list(range(1, 12))
    assert snapshot_counts(db) == before


@pytest.mark.slow
def test_reimport_updates_instead_of_duplicating(
    client: TestClient, owner_headers: Headers, db: Database
) -> None:
    make_category(client, owner_headers, "coffee")
    ok(_import(client, owner_headers, GOOD_CSV, "csv"))
    counts = snapshot_counts(db)
    again = ok(_import(client, owner_headers, GOOD_CSV, "csv"))
    assert (again["created"], again["updated"]) == (0, 2)
    after = snapshot_counts(db)
    for table in ("products", "variants", "product_translations", "categories"):
        assert after[table] == counts[table], table
    assert len(outbox(db, "product.updated")) == 2

    changed = GOOD_CSV.replace("Kyoto Blend", "Kyoto Blend Mk II").replace(
        "TEE,Logo tee,,draft,standard,,,TEE-M,,,M,,,,",
        "TEE,Logo tee,,active,standard,,,TEE-M,,,M,,,,\n"
        "TEE,Logo tee,,active,standard,,,TEE-L,,,L,,,,",
    )
    third = ok(_import(client, owner_headers, changed, "csv"))
    assert (third["created"], third["updated"]) == (0, 2)
    products = _by_code(client, owner_headers)
    assert products["KYOTO"]["name"] == "Kyoto Blend Mk II"
    assert products["TEE"]["status"] == "active"
    assert sorted(v["sku"] for v in products["TEE"]["variants"]) == ["TEE-L", "TEE-M"]
    assert count(db, Product) == 2
    assert count(db, Variant) == 4


def test_a_sku_or_barcode_of_another_product_is_refused(
    client: TestClient, owner_headers: Headers, db: Database
) -> None:
    barcode = gtin("490000000401")
    make_product(client, owner_headers, "OWNER", variants=[{"sku": "TAKEN", "barcode": barcode}])
    before = snapshot_counts(db)
    body = _csv(
        [
            ["product_code", "name", "sku", "barcode"],
            ["THIEF", "Thief", "FREE-1", ""],
            ["THIEF", "Thief", "TAKEN", ""],
            ["OTHER", "Other", "FREE-2", barcode],
        ]
    )
    problem = assert_problem(_import(client, owner_headers, body, "csv"), 422, "import-invalid")
    errors = problem["report"]["errors"]
    assert [(e["line"], e["field"]) for e in errors] == [(3, "sku"), (4, "barcode")]
    assert "OWNER" in errors[0]["reason"]
    assert snapshot_counts(db) == before
    # The same SKU on its own product is an update.
    ok(_import(client, owner_headers, "product_code,name,sku\nOWNER,Owner,TAKEN\n", "csv"))


def _wipe_products(db: Database) -> None:
    with db.transaction() as session:
        session.execute(delete(Variant))
        session.execute(delete(ProductTranslation))
        session.execute(delete(Product))


def _build_catalog(client: TestClient, headers: Headers) -> None:
    drinks = make_category(client, headers, "drinks", translations={"ja": "飲み物"})
    coffee = make_category(client, headers, "coffee", parent_id=drinks["id"])
    make_product(
        client,
        headers,
        "KYOTO",
        name="Kyoto Blend",
        description='Dark, "smooth"\nand sweet',
        status="active",
        tax_class="food",
        category_id=coffee["id"],
        media_urls=["https://img.example/k1.jpg", "https://img.example/k2.jpg"],
        attributes={"roast": "dark", "origins": ["Ethiopia", "Brazil"], "score": 86.5},
        translations={
            "ja": {"name": "京都ブレンド", "description": "深煎り"},
            "de-AT": {"name": "Kyoto-Mischung"},
        },
        variants=[
            {
                "sku": "KB-250",
                "barcode": gtin("490000000501"),
                "options": {"size": "250 g", "grind": "whole"},
                "weight_g": 260,
                "length_mm": 120,
                "width_mm": 80,
                "height_mm": 200,
                "hs_code": "090121",
                "country_of_origin": "ET",
                "position": 1,
            },
            {"sku": "KB-1000", "options": {"size": "1 kg"}, "position": 2, "active": False},
        ],
    )
    make_product(
        client,
        headers,
        "TEE",
        name="Logo tee",
        status="archived",
        translations={"vi": {"name": "Áo thun", "description": "Cotton, 100%"}},
        variants=[{"sku": "TEE-M", "options": {"size": "M", "colour": "black"}}],
    )
    make_product(client, headers, "SOON", name="Coming soon", variants=[])


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_export_import_round_trip_gives_the_same_catalog(
    client: TestClient, owner_headers: Headers, db: Database, fmt: str
) -> None:
    _build_catalog(client, owner_headers)
    original = _by_code(client, owner_headers)
    exported = client.get(f"/v1/catalog/export?format={fmt}", headers=owner_headers)
    assert exported.status_code == 200
    text = exported.text
    as_json = client.get("/v1/catalog/export?format=json", headers=owner_headers).json()

    _wipe_products(db)
    assert count(db, Product) == 0
    report = ok(_import(client, owner_headers, text, fmt))
    assert (report["created"], report["updated"]) == (3, 0)

    assert client.get(f"/v1/catalog/export?format={fmt}", headers=owner_headers).text == text
    assert client.get("/v1/catalog/export?format=json", headers=owner_headers).json() == as_json
    restored = _by_code(client, owner_headers)
    volatile = {"id", "product_id", "created_at", "updated_at"}

    def stable(product: dict[str, Any]) -> dict[str, Any]:
        return {
            **{k: v for k, v in product.items() if k not in volatile},
            "variants": [
                {k: v for k, v in variant.items() if k not in volatile}
                for variant in product["variants"]
            ],
        }

    assert {c: stable(p) for c, p in restored.items()} == {
        c: stable(p) for c, p in original.items()
    }


def test_export_shapes(client: TestClient, owner_headers: Headers) -> None:
    _build_catalog(client, owner_headers)
    records = client.get("/v1/catalog/export", headers=owner_headers).json()
    assert [r["product_code"] for r in records] == ["KYOTO", "TEE", "SOON"]
    assert records[0]["category_code"] == "coffee"
    assert records[0]["translations"]["ja"] == {"name": "京都ブレンド", "description": "深煎り"}
    response = client.get("/v1/catalog/export?format=csv", headers=owner_headers)
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["sku"] for r in rows] == ["KB-250", "KB-1000", "TEE-M", ""]
    assert rows[0]["option:size"] == "250 g" and rows[2]["option:colour"] == "black"
    assert rows[0]["name:ja"] == "京都ブレンド" and rows[2]["name:vi"] == "Áo thun"
