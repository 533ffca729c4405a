"""Staff API for promotions: CRUD, validation (422 naming the field, nothing written),
status changes, permissions, audit and events, cart preview and redemption listing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from mercato.auth.permissions import Role
from mercato.db import Database
from mercato.promotions import service
from mercato.promotions.engine import ACTION_TYPES, AmountOffItems, ItemSelector
from mercato.promotions.models import Promotion, PromotionBudget
from mercato.promotions.schemas import ActionType
from tests.conftest import assert_problem
from tests.helpers import audit_entries, count, created, fast_password_hashing, ok, outbox
from tests.promotions.conftest import FIVE_OFF, PERCENT_10, World, checkout

pytestmark = pytest.mark.slow

Headers = dict[str, str]


@pytest.fixture(autouse=True)
def _fast(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_password_hashing(monkeypatch)


def full_definition(world: World) -> dict[str, Any]:
    start = datetime(2030, 1, 1, tzinfo=UTC)
    return {
        "name": "Coffee week",
        "description": "20 % off coffee for members",
        "status": "active",
        "priority": 10,
        "stacking": "exclusive",
        "requires_code": True,
        "conditions": {
            "channel_ids": [world.channel_id],
            "currencies": ["eur"],
            "customer_groups": ["members"],
            "min_subtotal": {"EUR": "30", "JPY": 4000},
            "required_items": {"category_ids": [world.drinks]},
            "min_quantity": 2,
        },
        "action": {
            "type": "percent_off_items",
            "percent": "20",
            "items": {"category_ids": [world.coffee], "variant_ids": [world.beans]},
        },
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(days=7)).isoformat(),
        "budget": {"EUR": "500.00", "JPY": "60000"},
        "max_uses": 1000,
        "max_uses_per_customer": 1,
    }


def test_create_read_and_list_a_promotion(
    client: TestClient, owner_headers: Headers, world: World, db: Database
) -> None:
    body = created(
        client.post("/v1/promotions", json=full_definition(world), headers=owner_headers)
    )
    assert body["name"] == "Coffee week" and body["status"] == "active"
    assert body["conditions"] == {
        "channel_ids": [world.channel_id],
        "currencies": ["EUR"],
        "customer_ids": [],
        "customer_groups": ["members"],
        "first_order_only": False,
        "min_subtotal": {"EUR": "30.00", "JPY": "4000"},
        "required_items": {"product_ids": [], "variant_ids": [], "category_ids": [world.drinks]},
        "min_quantity": 2,
    }
    assert body["action"] == {
        "type": "percent_off_items",
        "percent": "20",
        "items": {"product_ids": [], "variant_ids": [world.beans], "category_ids": [world.coffee]},
    }
    assert body["budget"] == {"EUR": "500.00", "JPY": "60000"}
    assert body["spent"] == {} and body["redemptions"] == 0
    assert body["starts_at"].startswith("2030-01-01T00:00:00")
    assert ok(client.get(f"/v1/promotions/{body['id']}", headers=owner_headers)) == body
    listed = ok(client.get("/v1/promotions?status=active", headers=owner_headers))
    assert [p["id"] for p in listed["items"]] == [body["id"]]
    assert ok(client.get("/v1/promotions?status=paused", headers=owner_headers))["items"] == []
    (entry,) = audit_entries(db, "promotion.created")
    assert entry.entity_id == str(body["id"]) and entry.changes["budget"]["EUR"] == "500.00"
    (event,) = outbox(db, "promotion.created")
    assert event.data["id"] == body["id"] and event.data["action"]["percent"] == "20"


def test_listing_pages_through_promotions_with_their_usage(
    client: TestClient, owner_headers: Headers, world: World, db: Database, make_promotion: Any
) -> None:
    ids = [make_promotion(FIVE_OFF, name=f"P{i}", max_uses=9) for i in range(3)]
    checkout(db, world, "order-1")
    first = ok(client.get("/v1/promotions?limit=2", headers=owner_headers))
    rest = ok(
        client.get(f"/v1/promotions?limit=2&cursor={first['next_cursor']}", headers=owner_headers)
    )
    assert [p["id"] for p in first["items"] + rest["items"]] == ids[::-1]
    assert rest["next_cursor"] is None
    used = {p["id"]: (p["redemptions"], p["spent"]) for p in first["items"] + rest["items"]}
    assert used == dict.fromkeys(ids, (1, {"EUR": "5.00"}))


def test_amounts_are_quantized_to_the_currency(
    client: TestClient, owner_headers: Headers, world: World
) -> None:
    body = created(
        client.post(
            "/v1/promotions",
            json={
                "name": "Five off",
                "action": {
                    "type": "amount_off_order",
                    "amounts": {"EUR": 5, "JPY": "500", "KWD": "1.5"},
                },
                "budget": {"EUR": 100.5},
            },
            headers=owner_headers,
        )
    )
    assert body["action"]["amounts"] == {"EUR": "5.00", "JPY": "500", "KWD": "1.500"}
    assert body["budget"] == {"EUR": "100.50"}
    assert body["status"] == "draft"


def _action(**fields: Any) -> dict[str, Any]:
    return {"name": "Bad", "action": fields}


INVALID: list[tuple[str, Callable[[World], dict[str, Any]], str]] = [
    (
        "percent zero",
        lambda w: _action(type="percent_off_order", percent="0"),
        "body.action.percent",
    ),
    (
        "percent above 100",
        lambda w: _action(type="percent_off_order", percent=101),
        "body.action.percent",
    ),
    ("percent missing", lambda w: _action(type="percent_off_order"), "body.action.percent"),
    (
        "percent not a number",
        lambda w: _action(type="percent_off_order", percent="ten"),
        "body.action.percent",
    ),
    (
        "field of another type",
        lambda w: _action(type="amount_off_order", amounts={"EUR": 1}, percent=5),
        "body.action.percent",
    ),
    ("unknown type", lambda w: _action(type="half_price"), "body.action.type"),
    (
        "cents of a cent",
        lambda w: _action(type="amount_off_order", amounts={"EUR": "1.005"}),
        "body.action.amounts.EUR",
    ),
    (
        "yen with decimals",
        lambda w: _action(type="amount_off_items", amounts={"JPY": "10.5"}),
        "body.action.amounts.JPY",
    ),
    (
        "not a currency",
        lambda w: _action(type="amount_off_order", amounts={"EUX": "1"}),
        "body.action.amounts.EUX",
    ),
    (
        "negative amount",
        lambda w: _action(type="amount_off_order", amounts={"EUR": "-1"}),
        "body.action.amounts.EUR",
    ),
    (
        "float amount as number",
        lambda w: _action(type="amount_off_order", amounts={"EUR": 0.001}),
        "body.action.amounts.EUR",
    ),
    ("no amounts", lambda w: _action(type="amount_off_order", amounts={}), "body.action.amounts"),
    (
        "empty selector",
        lambda w: _action(type="percent_off_items", percent=5, items={}),
        "body.action.items",
    ),
    (
        "buy without get",
        lambda w: _action(type="buy_x_get_y", buy_quantity=2),
        "body.action.get_quantity",
    ),
    (
        "component of both kinds",
        lambda w: _action(
            type="fixed_price_bundle",
            prices={"EUR": "10"},
            components=[{"variant_id": w.beans, "product_id": w.mug_product}],
        ),
        "body.action.components[0]",
    ),
    (
        "bundle price too precise",
        lambda w: _action(
            type="fixed_price_bundle", prices={"EUR": "9.999"}, components=[{"variant_id": w.beans}]
        ),
        "body.action.prices.EUR",
    ),
    (
        "unknown variant",
        lambda w: _action(type="percent_off_items", percent=5, items={"variant_ids": [999_999]}),
        "body.action.items.variant_ids",
    ),
    (
        "unknown product",
        lambda w: _action(type="percent_off_items", percent=5, items={"product_ids": [999_999]}),
        "body.action.items.product_ids",
    ),
    (
        "unknown category",
        lambda w: {
            **_action(type="shipping"),
            "conditions": {"required_items": {"category_ids": [999_999]}},
        },
        "body.conditions.required_items.category_ids",
    ),
    (
        "unknown channel",
        lambda w: {**_action(type="shipping"), "conditions": {"channel_ids": [999_999]}},
        "body.conditions.channel_ids",
    ),
    (
        "unknown customer",
        lambda w: {**_action(type="shipping"), "conditions": {"customer_ids": [999_999]}},
        "body.conditions.customer_ids",
    ),
    (
        "bad condition currency",
        lambda w: {**_action(type="shipping"), "conditions": {"currencies": ["EURO"]}},
        "body.conditions.currencies[0]",
    ),
    (
        "minimum too precise",
        lambda w: {**_action(type="shipping"), "conditions": {"min_subtotal": {"EUR": "10.001"}}},
        "body.conditions.min_subtotal.EUR",
    ),
    (
        "min quantity zero",
        lambda w: {**_action(type="shipping"), "conditions": {"min_quantity": 0}},
        "body.conditions.min_quantity",
    ),
    (
        "ends before it starts",
        lambda w: {
            **_action(type="shipping"),
            "starts_at": "2030-01-02T00:00:00Z",
            "ends_at": "2030-01-01T00:00:00Z",
        },
        "body.ends_at",
    ),
    (
        "no time zone",
        lambda w: {**_action(type="shipping"), "starts_at": "2030-01-02T00:00:00"},
        "body.starts_at",
    ),
    (
        "zero budget",
        lambda w: {**_action(type="shipping"), "budget": {"EUR": "0"}},
        "body.budget.EUR",
    ),
    (
        "budget too precise",
        lambda w: {**_action(type="shipping"), "budget": {"JPY": "0.5"}},
        "body.budget.JPY",
    ),
    ("no uses", lambda w: {**_action(type="shipping"), "max_uses": 0}, "body.max_uses"),
    (
        "archived at birth",
        lambda w: {**_action(type="shipping"), "status": "archived"},
        "body.status",
    ),
    (
        "bad stacking",
        lambda w: {**_action(type="shipping"), "stacking": "sometimes"},
        "body.stacking",
    ),
    ("unknown field", lambda w: {**_action(type="shipping"), "discount": 5}, "body.discount"),
    ("blank name", lambda w: {**_action(type="shipping"), "name": "  "}, "body.name"),
]


def test_invalid_definitions_are_422_naming_the_field_and_write_nothing(
    client: TestClient, owner_headers: Headers, world: World, db: Database
) -> None:
    before = (count(db, Promotion), len(audit_entries(db)), len(outbox(db)))
    for case, make, field in INVALID:
        problem = assert_problem(
            client.post("/v1/promotions", json=make(world), headers=owner_headers), 422
        )
        assert field in [e["field"] for e in problem["errors"]], (case, problem)
    assert (count(db, Promotion), len(audit_entries(db)), len(outbox(db))) == before


def test_update_changes_only_what_is_sent_and_is_audited(
    client: TestClient, owner_headers: Headers, world: World, db: Database
) -> None:
    promo = created(
        client.post("/v1/promotions", json=full_definition(world), headers=owner_headers)
    )
    url = f"/v1/promotions/{promo['id']}"
    changed = ok(
        client.patch(
            url,
            json={
                "name": "Coffee fortnight",
                "description": None,
                "ends_at": "2030-01-15T00:00:00Z",
                "action": {"type": "shipping"},
                "budget": {"EUR": "250"},
            },
            headers=owner_headers,
        )
    )
    assert changed["name"] == "Coffee fortnight" and changed["description"] is None
    assert changed["action"] == {"type": "shipping", "percent": "100"}
    assert changed["budget"] == {"EUR": "250.00"}
    assert changed["conditions"] == promo["conditions"] and changed["priority"] == 10
    assert changed["ends_at"].startswith("2030-01-15")
    (entry,) = audit_entries(db, "promotion.updated")
    assert sorted(entry.changes) == ["action", "budget", "description", "ends_at", "name"]
    (event,) = outbox(db, "promotion.updated")
    assert event.data["changed"] == ["action", "budget", "description", "ends_at", "name"]
    with db.read() as session:
        assert session.query(PromotionBudget).count() == 1


INVALID_UPDATES: list[tuple[dict[str, Any], str]] = [
    ({"name": None}, "body.name"),
    ({"status": None}, "body.status"),
    ({"ends_at": "2029-12-31T00:00:00Z"}, "body.ends_at"),
    ({"starts_at": "2031-01-01T00:00:00Z"}, "body.starts_at"),
    ({"action": {"type": "percent_off_order", "percent": "-5"}}, "body.action.percent"),
    ({"budget": {"EUR": "1.234"}}, "body.budget.EUR"),
    ({"priority": "high"}, "body.priority"),
]


def test_invalid_updates_are_422_and_change_nothing(
    client: TestClient, owner_headers: Headers, world: World, db: Database
) -> None:
    promo = created(
        client.post("/v1/promotions", json=full_definition(world), headers=owner_headers)
    )
    url = f"/v1/promotions/{promo['id']}"
    for patch, field in INVALID_UPDATES:
        problem = assert_problem(client.patch(url, json=patch, headers=owner_headers), 422)
        assert problem["errors"][0]["field"] == field, (patch, problem)
    assert ok(client.get(url, headers=owner_headers)) == promo
    assert audit_entries(db, "promotion.updated") == []


def test_status_follows_its_life_cycle(
    client: TestClient, owner_headers: Headers, world: World
) -> None:
    promo = created(
        client.post(
            "/v1/promotions", json={"name": "P", "action": PERCENT_10}, headers=owner_headers
        )
    )
    url = f"/v1/promotions/{promo['id']}"

    def to(status: str) -> Any:
        return client.patch(url, json={"status": status}, headers=owner_headers)

    assert_problem(to("paused"), 409, "invalid-state")  # a draft never ran
    for status in ("active", "paused", "active", "archived"):
        assert ok(to(status))["status"] == status
    assert_problem(to("active"), 409, "invalid-state")
    assert_problem(client.patch(url, json={"name": "New"}, headers=owner_headers), 409)
    assert_problem(client.get("/v1/promotions/999999", headers=owner_headers), 404, "not-found")


def test_staff_need_the_promotion_permissions(
    client: TestClient,
    owner_headers: Headers,
    make_staff: Callable[..., Headers],
    world: World,
) -> None:
    analyst = make_staff(Role.ANALYST)
    promo = created(
        client.post(
            "/v1/promotions", json={"name": "P", "action": PERCENT_10}, headers=owner_headers
        )
    )
    assert ok(client.get(f"/v1/promotions/{promo['id']}", headers=analyst))["id"] == promo["id"]
    denied = assert_problem(
        client.post("/v1/promotions", json={"name": "P", "action": PERCENT_10}, headers=analyst),
        403,
        "forbidden",
    )
    assert denied["permission"] == "promotions:write"
    denied = assert_problem(
        client.post(
            f"/v1/promotions/{promo['id']}/codes/generate", json={"count": 1}, headers=analyst
        ),
        403,
    )
    assert denied["permission"] == "promotions:write"
    assert_problem(client.get("/v1/promotions"), 401)


def test_preview_a_cart(
    client: TestClient, owner_headers: Headers, world: World, make_promotion: Any
) -> None:
    coffee = make_promotion(
        {"type": "percent_off_items", "percent": "10", "items": {"category_ids": [world.drinks]}}
    )
    make_promotion(FIVE_OFF, requires_code=True, codes=("FIVEOFF",))
    line = {"line_id": "a", "variant_id": world.beans_large, "quantity": 2, "unit_price": "12.50"}
    cart: dict[str, Any] = {
        "currency": "eur",
        "channel_id": world.channel_id,
        "shipping": "4.90",
        "codes": ["fiveoff", "nothing"],
        "lines": [
            line,
            {"line_id": "b", "variant_id": world.mug, "quantity": 1, "unit_price": 20},
        ],
    }
    result = ok(client.post("/v1/promotions/evaluate", json=cart, headers=owner_headers))
    assert result["subtotal"] == "45.00" and result["shipping"] == "4.90"
    assert [(a["promotion_id"], a["amount"]) for a in result["applied"]] == [
        (coffee, "2.50"),
        (coffee + 1, "5.00"),
    ]
    assert result["rejected_codes"] == [
        {"code": "NOTHING", "promotion_id": None, "reason": "unknown-code"}
    ]
    assert result["discount"] == "7.50" and result["total"] == "42.40"
    bad = {**cart, "lines": [{**line, "unit_price": "12.505"}]}
    problem = assert_problem(
        client.post("/v1/promotions/evaluate", json=bad, headers=owner_headers), 422
    )
    assert problem["errors"][0]["field"] == "body.lines[0].unit_price"
    bad = {**cart, "lines": [{**line, "variant_id": 999_999}]}
    problem = assert_problem(
        client.post("/v1/promotions/evaluate", json=bad, headers=owner_headers), 422
    )
    assert problem["errors"][0]["field"] == "body.lines[0].variant_id"


def test_list_redemptions_by_promotion_and_reference(
    client: TestClient, owner_headers: Headers, world: World, db: Database, make_promotion: Any
) -> None:
    first = make_promotion(PERCENT_10, priority=1)
    second = make_promotion(FIVE_OFF)
    checkout(db, world, "order-1", customer=world.customers[0])
    checkout(db, world, "order-2")
    by_reference = ok(
        client.get("/v1/promotions/redemptions?reference=order-1", headers=owner_headers)
    )
    assert [(r["promotion_id"], r["amount"], r["status"]) for r in by_reference["items"]] == [
        (second, "5.00", "reserved"),
        (first, "4.50", "reserved"),
    ]
    assert by_reference["items"][0]["customer_id"] == world.customers[0]
    by_promotion = ok(
        client.get(f"/v1/promotions/redemptions?promotion_id={second}", headers=owner_headers)
    )
    assert [r["reference"] for r in by_promotion["items"]] == ["order-2", "order-1"]
    assert_problem(client.get("/v1/promotions/redemptions?status=lost", headers=owner_headers), 422)


# --- definitions survive storage exactly ---------------------------------------------------


def test_the_api_offers_exactly_the_engine_actions() -> None:
    assert {t.value for t in ActionType} == set(ACTION_TYPES)


CURRENCIES = st.sampled_from(["EUR", "JPY", "KWD", "VND", "USD"])


@st.composite
def money(draw: st.DrawFn) -> dict[str, Decimal]:
    found = {}
    for currency in draw(st.sets(CURRENCIES, min_size=1)):
        decimals = {"JPY": 0, "VND": 0, "KWD": 3}.get(currency, 2)
        units = draw(st.integers(min_value=1, max_value=10**12))
        found[currency] = Decimal(units).scaleb(-decimals)
    return found


@given(amounts=money(), ids=st.frozensets(st.integers(1, 10**6), min_size=1, max_size=5))
def test_stored_definitions_come_back_as_the_same_engine_objects(
    amounts: dict[str, Decimal], ids: frozenset[int]
) -> None:
    action = AmountOffItems(amounts=amounts, items=ItemSelector(variant_ids=ids))
    stored = service.action_json(action)
    assert all(isinstance(v, str) for v in stored["amounts"].values())
    assert service.action_from_json(stored) == action
