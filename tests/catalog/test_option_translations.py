"""Option names and values ("Grind: Whole bean") are translated like product names: in
the catalog, its import and export, the shopper API (products and carts) and the demo."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mercato.db import Database
from tests.commerce.conftest import DemoWorld
from tests.commerce.helpers import add, new_cart, ok
from tests.conftest import assert_problem
from tests.helpers import detach_categories, fast_password_hashing

Headers = dict[str, str]

GRIND_DE = {"name": "Mahlgrad", "values": {"Whole bean": "Ganze Bohne", "Filter": "Filter"}}
PRODUCT = {
    "product_code": "OPT-KYOTO",
    "name": "Kyoto Blend",
    "status": "active",
    "tax_class": "food",
    "translations": {
        "de": {"name": "Kyoto-Mischung", "options": {"grind": GRIND_DE}},
        "ja": {"name": "京都ブレンド"},
    },
    "variants": [
        {"sku": "OPT-WB", "options": {"grind": "Whole bean", "size": "250g"}},
        {"sku": "OPT-FI", "options": {"grind": "Filter", "size": "250g"}},
    ],
}


@pytest.fixture(autouse=True)
def _fast_and_clean(monkeypatch: pytest.MonkeyPatch, db: Database) -> Iterator[None]:
    fast_password_hashing(monkeypatch)
    yield
    detach_categories(db)


def _import(client: TestClient, headers: Headers, body: str, fmt: str) -> Any:
    content_type = "text/csv" if fmt == "csv" else "application/json"
    return client.post(
        f"/v1/catalog/import?format={fmt}",
        content=body.encode(),
        headers={**headers, "content-type": content_type},
    )


def _translations(client: TestClient, headers: Headers) -> dict[str, Any]:
    products = ok(client.get("/v1/products", headers=headers))["items"]
    product = next(p for p in products if p["code"] == "OPT-KYOTO")
    return {t["locale"]: t for t in product["translations"]}


def test_json_import_and_export_carry_option_translations(
    client: TestClient, owner_headers: Headers
) -> None:
    ok(_import(client, owner_headers, json.dumps([PRODUCT]), "json"))
    by_locale = _translations(client, owner_headers)
    assert by_locale["de"]["options"] == {"grind": GRIND_DE}
    assert by_locale["ja"]["options"] == {}

    exported = ok(client.get("/v1/catalog/export", headers=owner_headers))
    record = next(r for r in exported if r["product_code"] == "OPT-KYOTO")
    assert record["translations"]["de"]["options"] == {"grind": GRIND_DE}
    assert "options" not in record["translations"]["ja"]


def test_csv_round_trip_of_option_translations(
    client: TestClient, owner_headers: Headers
) -> None:
    ok(_import(client, owner_headers, json.dumps([PRODUCT]), "json"))
    text = client.get("/v1/catalog/export?format=csv", headers=owner_headers).text
    rows = [r for r in csv.DictReader(io.StringIO(text)) if r["product_code"] == "OPT-KYOTO"]
    assert [(r["option:grind"], r["option_value:de:grind"]) for r in rows] == [
        ("Whole bean", "Ganze Bohne"),
        ("Filter", "Filter"),
    ]
    assert {r["option_name:de:grind"] for r in rows} == {"Mahlgrad"}

    # Change the German values in the file and import it back.
    edited = text.replace("Ganze Bohne", "Ganze Bohnen")
    ok(_import(client, owner_headers, edited, "csv"))
    grind = _translations(client, owner_headers)["de"]["options"]["grind"]
    values = {"Whole bean": "Ganze Bohnen", "Filter": "Filter"}
    assert grind == {"name": "Mahlgrad", "values": values}

    # A file without option translation columns leaves them as they are.
    plain = (
        "product_code,name,sku,option:grind,name:de\n"
        "OPT-KYOTO,Kyoto Blend,OPT-WB,Whole bean,K\n"
    )
    ok(_import(client, owner_headers, plain, "csv"))
    assert _translations(client, owner_headers)["de"]["options"]["grind"] == grind


def test_option_translations_need_the_translated_name(
    client: TestClient, owner_headers: Headers
) -> None:
    body = "product_code,name,sku,option:grind,option_value:fr:grind\nX,X,X-1,Whole bean,Grain\n"
    problem = assert_problem(_import(client, owner_headers, body, "csv"), 422)
    assert "option_name:fr" in json.dumps(problem)


def test_staff_translate_options_of_a_product(client: TestClient, owner_headers: Headers) -> None:
    ok(_import(client, owner_headers, json.dumps([PRODUCT]), "json"))
    product_id = next(
        p["id"]
        for p in ok(client.get("/v1/products", headers=owner_headers))["items"]
        if p["code"] == "OPT-KYOTO"
    )
    grind = {"name": "挽き方", "values": {"Filter": "フィルター"}}
    body = {"name": "京都ブレンド", "options": {"grind": grind}}
    ok(client.put(f"/v1/products/{product_id}/translations/ja", headers=owner_headers, json=body))
    assert _translations(client, owner_headers)["ja"]["options"] == body["options"]
    too_long = {"name": "x", "options": {"grind": {"values": {"Filter": "x" * 101}}}}
    problem = assert_problem(
        client.put(
            f"/v1/products/{product_id}/translations/ja", headers=owner_headers, json=too_long
        ),
        422,
    )
    assert problem["errors"][0]["field"].startswith("body.options")


def _demo_variant(world: DemoWorld, channel: str, option: str) -> tuple[int, dict[str, str]]:
    """A demo coffee's whole-bean variant as the channel's shopper sees it."""
    products = ok(
        world.client.get("/v1/store/products?q=Organic&limit=5", headers=world.key(channel))
    )["items"]
    for product in products:
        for variant in product["variants"]:
            if variant["sku"].endswith("-WHO") and option in variant["options"]:
                return int(variant["id"]), variant["options"]
    raise AssertionError(f"no whole-bean coffee with {option!r} on {channel}")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("channel", "option", "whole_bean"),
    [
        ("web-de", "Mahlgrad", "Ganze Bohne"),
        ("web-jp", "挽き方", "豆のまま"),
        ("web-vn", "Độ xay", "Nguyên hạt"),
        ("web-us", "grind", "Whole bean"),
    ],
)
def test_demo_shoppers_see_options_in_their_language(
    demo_world: DemoWorld, channel: str, option: str, whole_bean: str
) -> None:
    variant, options = _demo_variant(demo_world, channel, option)
    assert options[option] == whole_bean
    key = demo_world.key(channel)
    cart = add(demo_world.client, key, new_cart(demo_world.client, key)["token"], variant, 1)
    [line] = cart["lines"]
    assert line["options"][option] == whole_bean
    assert whole_bean in line["name"]
