from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from mercato.channels.models import ChannelApiKey
from mercato.db import Database
from tests.conftest import assert_problem
from tests.helpers import (
    audit_entries,
    channel_key,
    detach_categories,
    fast_password_hashing,
    make_category,
    make_channel,
    make_location,
    make_product,
    ok,
    outbox,
    snapshot_counts,
)

pytestmark = pytest.mark.slow

Headers = dict[str, str]


@pytest.fixture(autouse=True)
def _fast_and_clean(monkeypatch: pytest.MonkeyPatch, db: Database) -> Iterator[None]:
    fast_password_hashing(monkeypatch)
    yield
    detach_categories(db)


def _fields(problem: dict[str, Any]) -> list[str]:
    return [e["field"] for e in problem.get("errors", [])]


# --- channels -----------------------------------------------------------------------------


def test_create_get_list_and_patch_a_channel(
    client: TestClient, owner_headers: Headers, db: Database
) -> None:
    warehouse = make_location(client, owner_headers, "WH-TYO")
    store = make_location(client, owner_headers, "ST-SHIBUYA")
    category = make_category(client, owner_headers, "coffee")
    channel = make_channel(
        client,
        owner_headers,
        "web-jp",
        default_locale="ja_jp",
        locales=["en", "ja-JP", "EN"],
        currencies=["jpy", "usd"],
        price_list="JP",
        country="jp",
        ship_to_countries=["jp", "KR"],
        locations=[
            {"location_id": store["id"], "priority": 2},
            {"location_id": warehouse["id"], "priority": 1},
        ],
        assortment_category_ids=[category["id"]],
    )
    assert channel["default_locale"] == "ja-JP"
    assert channel["locales"] == ["ja-JP", "en"]  # normalised, deduplicated, default first
    assert channel["currencies"] == ["JPY", "USD"]
    assert channel["country"] == "JP"
    assert channel["ship_to_countries"] == ["JP", "KR"]
    assert channel["locations"] == [
        {"location_id": warehouse["id"], "priority": 1},
        {"location_id": store["id"], "priority": 2},
    ]
    assert channel["assortment_category_ids"] == [category["id"]]
    assert ok(client.get(f"/v1/channels/{channel['id']}", headers=owner_headers)) == channel
    listed = ok(client.get("/v1/channels", headers=owner_headers))
    assert [c["code"] for c in listed["items"]] == ["web-jp"] and listed["next_cursor"] is None

    patched = ok(
        client.patch(
            f"/v1/channels/{channel['id']}",
            json={
                "name": "Japan web store",
                "default_locale": "en",
                "currencies": ["JPY"],
                "locations": [{"location_id": store["id"]}],
                "assortment_category_ids": None,
            },
            headers=owner_headers,
        )
    )
    assert patched["name"] == "Japan web store"
    assert patched["default_locale"] == "en"
    assert patched["locales"] == ["en", "ja-JP"]
    assert patched["currencies"] == ["JPY"]
    assert patched["locations"] == [{"location_id": store["id"], "priority": 0}]
    assert patched["assortment_category_ids"] is None

    # A new default locale the channel did not serve joins its locales.
    widened = ok(
        client.patch(
            f"/v1/channels/{channel['id']}", json={"default_locale": "de-DE"}, headers=owner_headers
        )
    )
    assert widened["locales"] == ["de-DE", "en", "ja-JP"]

    assert [e.action for e in audit_entries(db) if e.entity_type == "channel"] == [
        "channel.created",
        "channel.updated",
        "channel.updated",
    ]
    assert [e.type for e in outbox(db) if e.type.startswith("channel.")] == [
        "channel.created",
        "channel.updated",
        "channel.updated",
    ]
    assert_problem(client.get("/v1/channels/999999", headers=owner_headers), 404)
    assert_problem(
        client.patch("/v1/channels/999999", json={"name": "x"}, headers=owner_headers), 404
    )


BAD_CHANNELS: list[tuple[dict[str, Any], str]] = [
    ({"default_locale": "xx-Nowhere"}, "body.default_locale"),
    ({"locales": ["en", "klingon-XX"]}, "body.locales"),
    ({"currencies": ["ABC"]}, "body.currencies"),
    ({"currencies": ["XXX"]}, "body.currencies"),  # "no currency" is not one to sell in
    ({"currencies": []}, "body.currencies"),
    ({"country": "XX"}, "body.country"),
    ({"country": "Germany"}, "body.country"),
    ({"ship_to_countries": ["DE", "EU"]}, "body.ship_to_countries"),
    ({"type": "kiosk"}, "body.type"),
    ({"code": "has space"}, "body.code"),
    ({"locations": [{"location_id": 999999}]}, "body.locations"),
    ({"assortment_category_ids": [999999]}, "body.assortment_category_ids"),
    ({"colour": "red"}, "body.colour"),
    ({"locations": [{"location_id": 1, "rank": 1}]}, "body.locations[0].rank"),
]


def test_channel_input_is_validated(
    client: TestClient, owner_headers: Headers, db: Database
) -> None:
    before = snapshot_counts(db)
    for fields, field in BAD_CHANNELS:
        body = {
            "code": "web-x",
            "name": "X",
            "type": "web",
            "default_locale": "en",
            "currencies": ["EUR"],
            **fields,
        }
        problem = assert_problem(
            client.post("/v1/channels", json=body, headers=owner_headers), 422, "validation-error"
        )
        assert field in _fields(problem), (fields, problem)
    assert snapshot_counts(db) == before


def test_channel_patch_is_validated_and_changes_nothing_when_bad(
    client: TestClient, owner_headers: Headers, db: Database
) -> None:
    location = make_location(client, owner_headers, "WH-1")
    channel = make_channel(
        client,
        owner_headers,
        "web-de",
        default_locale="de-DE",
        locations=[{"location_id": location["id"]}],
    )
    assert_problem(
        client.post(
            "/v1/channels",
            json={
                "code": "web-de",
                "name": "Again",
                "type": "web",
                "default_locale": "de",
                "currencies": ["EUR"],
            },
            headers=owner_headers,
        ),
        409,
        "duplicate-code",
    )
    before = snapshot_counts(db)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"locales": ["de-DE", "zz-ZZ"]}, "body.locales"),
        ({"default_locale": "nope-nope"}, "body.default_locale"),
        ({"currencies": ["EUR", "EURO"]}, "body.currencies"),
        ({"currencies": None}, "body.currencies"),
        ({"name": None}, "body.name"),
        ({"locales": None}, "body.locales"),
        ({"default_locale": None}, "body.default_locale"),
        ({"active": None}, "body.active"),
        ({"ship_to_countries": None}, "body.ship_to_countries"),
        ({"locations": None}, "body.locations"),
        ({"country": "QQ"}, "body.country"),
        ({"locations": [{"location_id": 999999}]}, "body.locations"),
        ({"locations": [{"location_id": location["id"]}] * 2}, "body.locations"),
        ({"name": "Renamed", "assortment_category_ids": [999999]}, "body.assortment_category_ids"),
        ({"code": "renamed"}, "body.code"),
    ]
    for patch, field in cases:
        problem = assert_problem(
            client.patch(f"/v1/channels/{channel['id']}", json=patch, headers=owner_headers), 422
        )
        assert field in _fields(problem), (patch, problem)
    assert ok(client.get(f"/v1/channels/{channel['id']}", headers=owner_headers)) == channel
    assert snapshot_counts(db) == before


# --- API keys -----------------------------------------------------------------------------


def test_api_keys_are_shown_once_stored_hashed_and_revocable(
    client: TestClient, owner_headers: Headers, db: Database
) -> None:
    channel = make_channel(client, owner_headers, "web-us")
    issued = client.post(
        f"/v1/channels/{channel['id']}/keys", json={"name": "storefront"}, headers=owner_headers
    )
    assert issued.status_code == 201
    key = issued.json()
    secret = key["key"]
    assert secret.startswith("mck_") and len(secret) > 40
    assert key["key_prefix"] == secret[:12]
    assert key["revoked_at"] is None

    listed = ok(client.get(f"/v1/channels/{channel['id']}/keys", headers=owner_headers))
    assert listed == {"items": [{k: v for k, v in key.items() if k != "key"}], "next_cursor": None}
    assert secret not in str(listed)
    with db.read() as session:
        stored = session.scalars(select(ChannelApiKey)).one()
        assert stored.key_hash != secret and secret not in stored.key_hash
        assert len(stored.key_hash) == 64

    store = {"X-Channel-Key": secret}
    assert ok(client.get("/v1/store/channel", headers=store))["code"] == "web-us"

    second = channel_key(client, owner_headers, channel["id"])
    assert second != secret
    revoked = ok(
        client.delete(f"/v1/channels/{channel['id']}/keys/{key['id']}", headers=owner_headers)
    )
    assert revoked["revoked_at"] is not None
    assert_problem(client.get("/v1/store/channel", headers=store), 401, "invalid-channel-key")
    assert_problem(client.get("/v1/store/products", headers=store), 401)
    # The other key still works; revoking twice is harmless.
    assert ok(client.get("/v1/store/channel", headers={"X-Channel-Key": second}))
    ok(client.delete(f"/v1/channels/{channel['id']}/keys/{key['id']}", headers=owner_headers))
    assert [e.action for e in audit_entries(db, "channel.key_revoked")] == ["channel.key_revoked"]

    other = make_channel(client, owner_headers, "web-other")
    assert_problem(
        client.delete(f"/v1/channels/{other['id']}/keys/{key['id']}", headers=owner_headers), 404
    )
    assert_problem(
        client.post("/v1/channels/999999/keys", json={"name": "x"}, headers=owner_headers), 404
    )


def test_inactive_channel_key_is_refused(client: TestClient, owner_headers: Headers) -> None:
    channel = make_channel(client, owner_headers, "popup")
    secret = channel_key(client, owner_headers, channel["id"])
    ok(client.patch(f"/v1/channels/{channel['id']}", json={"active": False}, headers=owner_headers))
    assert_problem(
        client.get("/v1/store/products", headers={"X-Channel-Key": secret}),
        401,
        "channel-inactive",
    )


def test_store_endpoints_need_a_valid_channel_key(
    client: TestClient, owner_headers: Headers
) -> None:
    for path in ("/v1/store/products", "/v1/store/categories", "/v1/store/channel"):
        assert_problem(client.get(path), 401, "missing-channel-key")
        assert_problem(
            client.get(path, headers={"X-Channel-Key": "mck_wrong"}), 401, "invalid-channel-key"
        )
        # A staff token is not a channel key.
        assert_problem(client.get(path, headers=owner_headers), 401, "missing-channel-key")


# --- the storefront -----------------------------------------------------------------------


@pytest.fixture
def shop(client: TestClient, owner_headers: Headers) -> dict[str, Any]:
    """A small translated catalog and three channels over it."""
    drinks = make_category(
        client, owner_headers, "drinks", translations={"ja": "飲み物", "de": "Getränke"}
    )
    coffee = make_category(
        client,
        owner_headers,
        "coffee",
        parent_id=drinks["id"],
        translations={"ja": "コーヒー", "de": "Kaffee"},
    )
    apparel = make_category(
        client, owner_headers, "apparel", translations={"ja": "アパレル", "de": "Bekleidung"}
    )
    kyoto = make_product(
        client,
        owner_headers,
        "KYOTO",
        name="Kyoto Blend",
        description="Dark roast",
        status="active",
        category_id=coffee["id"],
        translations={
            "ja": {"name": "京都ブレンド", "description": "深煎り"},
            "de": {"name": "Kyoto-Mischung"},
        },
        variants=[
            {"sku": "KB-250", "options": {"size": "250 g"}},
            {"sku": "KB-1000", "options": {"size": "1 kg"}, "active": False},
        ],
    )
    tea = make_product(
        client,
        owner_headers,
        "SENCHA",
        name="Sencha",
        status="active",
        category_id=drinks["id"],
        translations={"ja-JP": {"name": "静岡煎茶"}, "ja": {"name": "煎茶"}},
    )
    tee = make_product(
        client,
        owner_headers,
        "TEE",
        name="Logo tee",
        status="active",
        category_id=apparel["id"],
    )
    draft = make_product(
        client, owner_headers, "DRAFT", name="Secret", status="draft", category_id=coffee["id"]
    )
    archived = make_product(
        client, owner_headers, "OLD", name="Old", status="archived", category_id=coffee["id"]
    )
    jp = make_channel(
        client,
        owner_headers,
        "web-jp",
        default_locale="ja-JP",
        locales=["en-US"],
        currencies=["JPY"],
    )
    at = make_channel(client, owner_headers, "web-at", default_locale="de-AT", currencies=["EUR"])
    drinks_only = make_channel(
        client,
        owner_headers,
        "drinks-shop",
        default_locale="en-US",
        locales=["ja-JP"],
        assortment_category_ids=[drinks["id"]],
    )
    return {
        "categories": {"drinks": drinks, "coffee": coffee, "apparel": apparel},
        "products": {
            "kyoto": kyoto,
            "tea": tea,
            "tee": tee,
            "draft": draft,
            "archived": archived,
        },
        "jp": {"X-Channel-Key": channel_key(client, owner_headers, jp["id"])},
        "at": {"X-Channel-Key": channel_key(client, owner_headers, at["id"])},
        "drinks": {"X-Channel-Key": channel_key(client, owner_headers, drinks_only["id"])},
    }


def _names(page: dict[str, Any]) -> dict[str, str]:
    return {p["code"]: p["name"] for p in page["items"]}


def test_storefront_answers_in_the_channels_language(
    client: TestClient, shop: dict[str, Any]
) -> None:
    page = ok(client.get("/v1/store/products", headers=shop["jp"]))
    assert page["locale"] == "ja-JP"
    # ja-JP where it exists, else ja, else the default name.
    assert _names(page) == {"KYOTO": "京都ブレンド", "SENCHA": "静岡煎茶", "TEE": "Logo tee"}
    kyoto = next(p for p in page["items"] if p["code"] == "KYOTO")
    assert kyoto["locale"] == "ja-JP"
    assert kyoto["description"] == "深煎り"
    assert kyoto["category"]["name"] == "コーヒー"
    # Inactive variants are not for sale.
    assert [v["sku"] for v in kyoto["variants"]] == ["KB-250"]

    german = ok(client.get("/v1/store/products", headers=shop["at"]))
    assert german["locale"] == "de-AT"
    assert _names(german) == {"KYOTO": "Kyoto-Mischung", "SENCHA": "Sencha", "TEE": "Logo tee"}
    kyoto_de = next(p for p in german["items"] if p["code"] == "KYOTO")
    assert kyoto_de["description"] == "Dark roast"  # no German description: the default one
    assert kyoto_de["category"]["name"] == "Kaffee"

    info = ok(client.get("/v1/store/channel", headers=shop["jp"]))
    assert (info["code"], info["locale"], info["locales"], info["currencies"]) == (
        "web-jp",
        "ja-JP",
        ["ja-JP", "en-US"],
        ["JPY"],
    )


def test_locale_query_and_accept_language_choose_among_the_channels_locales(
    client: TestClient, shop: dict[str, Any]
) -> None:
    jp = shop["jp"]

    def names(url: str, **headers: str) -> tuple[str, dict[str, str]]:
        page = ok(client.get(url, headers={**jp, **headers}))
        return page["locale"], _names(page)

    english = {"KYOTO": "Kyoto Blend", "SENCHA": "Sencha", "TEE": "Logo tee"}
    assert names("/v1/store/products?locale=en-US") == ("en-US", english)
    assert names("/v1/store/products?locale=en") == ("en-US", english)  # same language
    assert names("/v1/store/products", **{"Accept-Language": "en-GB,en;q=0.8"}) == (
        "en-US",
        english,
    )
    # Accept-Language weights: ja is preferred to en here.
    assert names("/v1/store/products", **{"Accept-Language": "en;q=0.5, ja;q=0.9"})[0] == "ja-JP"
    # The explicit locale wins over the header.
    assert names("/v1/store/products?locale=en-US", **{"Accept-Language": "ja"})[0] == "en-US"
    # A language the channel does not serve falls back to its default.
    assert names("/v1/store/products?locale=de-DE")[0] == "ja-JP"
    assert names("/v1/store/products", **{"Accept-Language": "fr-FR, de;q=0.5"})[0] == "ja-JP"
    assert names("/v1/store/products?locale=not-a-locale")[0] == "ja-JP"

    tea_id = shop["products"]["tea"]["id"]
    single = ok(client.get(f"/v1/store/products/{tea_id}?locale=en-US", headers=jp))
    assert (single["locale"], single["name"]) == ("en-US", "Sencha")
    assert ok(client.get(f"/v1/store/products/{tea_id}", headers=jp))["name"] == "静岡煎茶"

    categories = ok(client.get("/v1/store/categories", headers=jp))["items"]
    assert {c["code"]: c["name"] for c in categories} == {
        "drinks": "飲み物",
        "coffee": "コーヒー",
        "apparel": "アパレル",
    }
    in_english = ok(client.get("/v1/store/categories?locale=en-US", headers=jp))["items"]
    assert {c["code"]: c["name"] for c in in_english} == {
        "drinks": "Drinks",
        "coffee": "Coffee",
        "apparel": "Apparel",
    }
    at_categories = ok(client.get("/v1/store/categories", headers=shop["at"]))["items"]
    assert {c["code"]: c["name"] for c in at_categories}["drinks"] == "Getränke"


def test_only_active_products_are_shown(client: TestClient, shop: dict[str, Any]) -> None:
    page = ok(client.get("/v1/store/products?limit=100", headers=shop["at"]))
    assert sorted(p["code"] for p in page["items"]) == ["KYOTO", "SENCHA", "TEE"]
    for hidden in ("draft", "archived"):
        product_id = shop["products"][hidden]["id"]
        assert_problem(
            client.get(f"/v1/store/products/{product_id}", headers=shop["at"]), 404, "not-found"
        )
    assert_problem(client.get("/v1/store/products/999999", headers=shop["at"]), 404)
    found = ok(client.get("/v1/store/products?q=secret", headers=shop["at"]))
    assert found["items"] == []


def test_assortment_restricts_products_and_categories(
    client: TestClient, shop: dict[str, Any]
) -> None:
    drinks = shop["drinks"]
    page = ok(client.get("/v1/store/products", headers=drinks))
    # drinks and its subcategory coffee; apparel is outside the assortment.
    assert sorted(p["code"] for p in page["items"]) == ["KYOTO", "SENCHA"]
    tee_id = shop["products"]["tee"]["id"]
    assert_problem(client.get(f"/v1/store/products/{tee_id}", headers=drinks), 404, "not-found")
    kyoto_id = shop["products"]["kyoto"]["id"]
    assert ok(client.get(f"/v1/store/products/{kyoto_id}", headers=drinks))["code"] == "KYOTO"

    assert [
        p["code"]
        for p in ok(client.get("/v1/store/products?category=coffee", headers=drinks))["items"]
    ] == ["KYOTO"]
    assert ok(client.get("/v1/store/products?category=apparel", headers=drinks))["items"] == []
    assert ok(client.get("/v1/store/products?q=tee", headers=drinks))["items"] == []
    assert_problem(client.get("/v1/store/products?category=nowhere", headers=drinks), 404)

    categories = ok(client.get("/v1/store/categories?locale=ja", headers=drinks))["items"]
    assert {c["code"]: c["name"] for c in categories} == {"drinks": "飲み物", "coffee": "コーヒー"}

    # Without an assortment the category filter includes subcategories as well.
    everything = shop["at"]
    drinks_page = ok(client.get("/v1/store/products?category=drinks", headers=everything))
    assert sorted(p["code"] for p in drinks_page["items"]) == ["KYOTO", "SENCHA"]


def test_storefront_search_and_pagination(client: TestClient, shop: dict[str, Any]) -> None:
    jp = shop["jp"]
    assert [
        p["code"] for p in ok(client.get("/v1/store/products?q=京都", headers=jp))["items"]
    ] == ["KYOTO"]
    first = ok(client.get("/v1/store/products?limit=2", headers=jp))
    assert len(first["items"]) == 2 and first["next_cursor"]
    second = ok(client.get(f"/v1/store/products?limit=2&cursor={first['next_cursor']}", headers=jp))
    codes = [p["code"] for p in first["items"] + second["items"]]
    assert sorted(codes) == ["KYOTO", "SENCHA", "TEE"] and second["next_cursor"] is None
    assert_problem(client.get("/v1/store/products?cursor=%%%", headers=jp), 422)
    assert_problem(client.get("/v1/store/products?sku=KB-250", headers=jp), 422)


def test_a_channel_says_who_pays_import_duties(
    client: TestClient, owner_headers: Headers, db: Database
) -> None:
    channel = make_channel(client, owner_headers, "web-x")
    # By default the carrier collects them on delivery (delivered at place).
    assert channel["import_duties"] == "dap"
    path = f"/v1/channels/{channel['id']}"
    changed = ok(client.patch(path, json={"import_duties": "ddp"}, headers=owner_headers))
    assert changed["import_duties"] == "ddp"
    before = snapshot_counts(db)
    for value, field in (("exw", "body.import_duties"), (None, "body.import_duties")):
        problem = assert_problem(
            client.patch(path, json={"import_duties": value}, headers=owner_headers), 422
        )
        assert _fields(problem) == [field], problem
    assert snapshot_counts(db) == before
    assert ok(client.get(path, headers=owner_headers))["import_duties"] == "ddp"
