"""The catalog import file is described in the OpenAPI document, as the importer reads it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import TypeAdapter

from mercato.catalog.importexport import PRODUCT_COLUMNS
from mercato.catalog.schemas import ImportFileIn, ImportProductIn
from mercato.db import Database
from tests.conftest import assert_problem
from tests.helpers import detach_categories, fast_password_hashing, make_category, make_product, ok

Headers = dict[str, str]


@pytest.fixture(autouse=True)
def _fast_and_clean(monkeypatch: pytest.MonkeyPatch, db: Database) -> Iterator[None]:
    fast_password_hashing(monkeypatch)
    yield
    detach_categories(db)


def _import_body(client: TestClient) -> dict[str, Any]:
    operation = ok(client.get("/openapi.json"))["paths"]["/v1/catalog/import"]["post"]
    body: dict[str, Any] = operation["requestBody"]
    return body


@pytest.mark.slow
def test_the_document_describes_the_import_file(client: TestClient) -> None:
    body = _import_body(client)
    assert body["required"] is True
    assert set(body["content"]) == {"application/json", "text/csv"}
    csv_schema = body["content"]["text/csv"]["schema"]
    assert csv_schema["type"] == "string" and "product_code" in csv_schema["description"]
    as_list, as_object = body["content"]["application/json"]["schema"]["anyOf"]
    product = as_list["items"]
    assert as_object["properties"]["products"]["items"] == product
    # Exactly the fields the importer reads, the required ones required, nothing left to
    # a reference the document does not hold.
    assert set(product["properties"]) == {*PRODUCT_COLUMNS, "translations", "variants"}
    assert set(product["required"]) == {"product_code", "name"}
    assert product["additionalProperties"] is False
    assert "sku" in product["properties"]["variants"]["items"]["required"]
    assert "$ref" not in json.dumps(body)


def test_an_exported_catalog_is_a_valid_import_file(
    client: TestClient, owner_headers: Headers
) -> None:
    category = make_category(client, owner_headers, "coffee", translations={"ja": "コーヒー"})
    make_product(
        client,
        owner_headers,
        "KYOTO",
        category_id=category["id"],
        attributes={"roast": "dark"},
        translations={"ja": {"name": "京都ブレンド"}},
    )
    make_product(client, owner_headers, "BARE", skus=[])
    exported = client.get("/v1/catalog/export?format=json", headers=owner_headers)
    products = TypeAdapter(list[ImportProductIn]).validate_json(exported.content)
    assert sorted(p.product_code for p in products) == ["BARE", "KYOTO"]
    wrapped = ImportFileIn(products=products).model_dump_json(exclude_none=True)
    report = client.post(
        "/v1/catalog/import?format=json&dry_run=true",
        content=wrapped.encode(),
        headers={**owner_headers, "content-type": "application/json"},
    )
    assert ok(report)["products"] == 2


def test_a_bad_import_file_is_a_422_naming_line_and_field(
    client: TestClient, owner_headers: Headers
) -> None:
    body = [{"product_code": "OK", "name": "Fine"}, {"product_code": "NO-NAME", "colour": "red"}]
    problem = assert_problem(
        client.post(
            "/v1/catalog/import?format=json",
            content=json.dumps(body).encode(),
            headers={**owner_headers, "content-type": "application/json"},
        ),
        422,
        "import-invalid",
    )
    errors = {(e["line"], e["field"]) for e in problem["report"]["errors"]}
    assert errors == {(2, "colour"), (2, "name")}
    problem = assert_problem(
        client.post(
            "/v1/catalog/import?format=xml",
            content=b"<catalog/>",
            headers={**owner_headers, "content-type": "application/xml"},
        ),
        422,
    )
    assert problem["errors"][0]["field"] == "query.format"
