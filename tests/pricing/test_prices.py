"""Price lists: explicit, targeted and scheduled prices, conversion with rounding rules."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from mercato.auth.permissions import Role
from mercato.auth.principal import Principal
from mercato.catalog import service as catalog
from mercato.catalog.schemas import ProductIn, ProductStatus, VariantIn
from mercato.db import Database, utcnow
from mercato.money import RoundingRule
from mercato.pricing import service as pricing
from mercato.pricing.models import Price
from tests.conftest import assert_problem

SYSTEM = Principal.system("tests")
D = Decimal


@pytest.fixture
def variants(db: Database) -> list[int]:
    with db.transaction() as session:
        product = catalog.create_product(
            session,
            SYSTEM,
            ProductIn(
                code="BEANS",
                name="Beans",
                status=ProductStatus.ACTIVE,
                variants=[VariantIn(sku="BEANS-250"), VariantIn(sku="BEANS-1KG")],
            ),
        )
        pricing.create_price_list(
            session, SYSTEM, code="EU", name="Europe", base_currency="EUR", tax_inclusive=True
        )
        return [v.id for v in product.variants]


def _set(db: Database, *prices: pricing.PriceInput) -> None:
    with db.transaction() as session:
        pricing.set_prices(session, SYSTEM, "EU", list(prices))


def _resolve(db: Database, ids: list[int], currency: str = "EUR", **kw: object) -> dict:
    with db.read() as session:
        return pricing.resolve_prices(session, ids, price_list="EU", currency=currency, **kw)  # type: ignore[arg-type]


def test_explicit_targeted_and_scheduled_prices(db: Database, variants: list[int]) -> None:
    v = variants[0]
    now = utcnow()
    _set(
        db,
        pricing.PriceInput(v, "EUR", D("12.90")),
        pricing.PriceInput(v, "EUR", D("11.90"), country="AT"),
        pricing.PriceInput(v, "EUR", D("10.90"), customer_group="members"),
        pricing.PriceInput(
            v,
            "EUR",
            D("9.90"),
            starts_at=now - timedelta(hours=1),
            ends_at=now + timedelta(hours=1),
        ),
        pricing.PriceInput(v, "EUR", D("5.00"), starts_at=now + timedelta(days=1)),
    )
    assert _resolve(db, [v])[v].amount == D("9.90")  # the running sale
    assert _resolve(db, [v])[v].compare_at == D("12.90")
    later = now + timedelta(hours=2)
    assert _resolve(db, [v], at=later)[v].amount == D("12.90")
    assert _resolve(db, [v], at=later, country="AT")[v].amount == D("11.90")
    assert _resolve(db, [v], at=later, country="AT", customer_group="members")[v].amount == (
        D("10.90")
    )
    assert _resolve(db, [v], at=now + timedelta(days=2))[v].amount == D("5.00")
    assert variants[1] not in _resolve(db, variants)  # no price, not sellable


def test_conversion_with_rounding_rules_and_explicit_prices_win(
    db: Database, variants: list[int]
) -> None:
    a, b = variants
    _set(
        db,
        pricing.PriceInput(a, "EUR", D("12.90")),
        pricing.PriceInput(b, "EUR", D("39.00")),
        pricing.PriceInput(b, "JPY", D(6800)),
    )
    day = utcnow() - timedelta(days=1)
    with db.transaction() as session:
        pricing.import_rates(
            session,
            SYSTEM,
            [
                pricing.RateInput("EUR", "JPY", D("161.2345"), day - timedelta(days=10)),
                pricing.RateInput("EUR", "JPY", D("162.5"), day),
                pricing.RateInput("EUR", "VND", D("27612.5"), day),
                pricing.RateInput("EUR", "USD", D("1.0812"), day),
            ],
        )
        pricing.set_rounding(session, SYSTEM, "JPY", RoundingRule(D(10)))
        pricing.set_rounding(session, SYSTEM, "VND", RoundingRule(D(1000)))
        pricing.set_rounding(session, SYSTEM, "USD", RoundingRule(D("0.01"), ending=D("0.99")))
    jpy = _resolve(db, variants, "JPY")
    assert (jpy[a].amount, jpy[a].source) == (D(2100), "converted")  # 12.90 x 162.5 = 2096.25
    assert (jpy[b].amount, jpy[b].source) == (D(6800), "explicit")
    assert _resolve(db, [a], "VND")[a].amount == D(356000)  # 356,200.25 to 1000 VND steps
    assert _resolve(db, [a], "USD")[a].amount == D("13.99")  # 13.95 -> .99 ending
    # The rate in force at the time is used, not the latest.
    older = _resolve(db, [a], "JPY", at=day - timedelta(days=2))[a]
    assert older.amount == D(2080) and older.rate == D("161.2345")
    assert _resolve(db, [a], "SGD") == {}  # no explicit price and no rate


def test_resolution_is_a_fixed_number_of_statements(db: Database, variants: list[int]) -> None:
    from sqlalchemy import event

    _set(db, *(pricing.PriceInput(v, "EUR", D("1.00")) for v in variants))
    with db.transaction() as session:
        pricing.import_rates(session, SYSTEM, [pricing.RateInput("EUR", "JPY", D(160), utcnow())])
    seen: list[str] = []
    listener = lambda *args: seen.append(args[2])  # noqa: E731
    event.listen(db.engine, "before_cursor_execute", listener)
    try:
        _resolve(db, variants, "JPY")
    finally:
        event.remove(db.engine, "before_cursor_execute", listener)
    statements = [s for s in seen if not s.startswith(("BEGIN", "ROLLBACK"))]
    assert len(statements) <= 4, statements


@pytest.mark.slow
def test_prices_api_validation_and_permissions(
    client: TestClient,
    owner_headers: dict[str, str],
    variants: list[int],
    db: Database,
    make_staff: Callable[..., dict[str, str]],
) -> None:
    def count() -> int:
        with db.read() as session:
            return int(session.scalar(select(func.count()).select_from(Price)) or 0)

    ok = client.put(
        "/v1/price-lists/EU/prices",
        headers=owner_headers,
        json={
            "prices": [
                {"sku": "BEANS-250", "currency": "EUR", "amount": "12.90"},
                {"variant_id": variants[1], "currency": "JPY", "amount": 6800},
            ]
        },
    )
    assert ok.status_code == 200, ok.text
    bad_cases = [
        ({"sku": "BEANS-250", "currency": "JPY", "amount": "12.5"}, "body.prices[0].amount"),
        ({"sku": "BEANS-250", "currency": "EUR", "amount": "1.234"}, "body.prices[0].amount"),
        ({"sku": "NOPE", "currency": "EUR", "amount": "1"}, "body.prices[0].sku"),
        ({"sku": "BEANS-250", "currency": "ABC", "amount": "1"}, "body.prices.0.currency"),
        ({"sku": "BEANS-250", "currency": "EUR", "amount": "-1"}, "body.prices.0.amount"),
    ]
    for price, field in bad_cases:
        problem = assert_problem(
            client.put(
                "/v1/price-lists/EU/prices", headers=owner_headers, json={"prices": [price]}
            ),
            422,
        )
        fields = [e["field"].replace("[", ".").replace("]", "") for e in problem["errors"]]
        assert field.replace("[", ".").replace("]", "") in fields, problem
    assert count() == 2
    resolved = client.get(
        f"/v1/prices/resolve?price_list=EU&currency=JPY&variant_ids={variants[1]}&locale=ja-JP",
        headers=owner_headers,
    ).json()["items"]
    assert resolved[0]["amount"] == "6800" and resolved[0]["formatted"] == "￥6,800"
    analyst = make_staff(Role.ANALYST)
    assert client.get("/v1/price-lists", headers=analyst).status_code == 200
    assert_problem(
        client.put(
            "/v1/price-lists/EU/prices",
            headers=analyst,
            json={"prices": [{"sku": "BEANS-250", "currency": "EUR", "amount": "1"}]},
        ),
        403,
    )


@pytest.mark.slow
def test_rates_csv_import(
    client: TestClient, owner_headers: dict[str, str], db: Database, variants: list[int]
) -> None:
    csv_body = (
        "base_currency,quote_currency,rate,effective_at,source\n"
        "EUR,JPY,162.5,2026-11-01T00:00:00Z,ECB\n"
        "EUR,USD,1.08,2026-11-01T00:00:00Z,ECB\n"
    )
    ok = client.post(
        "/v1/exchange-rates/import?format=csv",
        content=csv_body,
        headers={**owner_headers, "content-type": "text/csv"},
    )
    assert ok.status_code == 201 and ok.json() == {"imported": 2}
    bad = "base_currency,quote_currency,rate,effective_at\nEUR,JPY,abc,2026-11-01T00:00:00Z\n"
    problem = assert_problem(
        client.post("/v1/exchange-rates/import", content=bad, headers=owner_headers), 422
    )
    assert problem["errors"][0]["field"] == "line 2"
    rates = client.get("/v1/exchange-rates?base=EUR", headers=owner_headers).json()["items"]
    assert {r["quote_currency"] for r in rates} == {"JPY", "USD"}


def test_decimal_amounts_survive_the_database_exactly(db: Database, variants: list[int]) -> None:
    _set(db, pricing.PriceInput(variants[0], "KWD", D("123456789.123")))
    with db.read() as session:
        stored = pricing.list_prices(session, "EU").items[0].amount
    assert stored == D("123456789.123")


def test_a_customer_in_several_groups_gets_the_lowest_of_their_prices(
    db: Database, variants: list[int]
) -> None:
    v, w = variants
    now = utcnow()
    _set(
        db,
        pricing.PriceInput(v, "EUR", D("20.00")),
        pricing.PriceInput(v, "EUR", D("18.00"), customer_group="members"),
        pricing.PriceInput(v, "EUR", D("16.00"), customer_group="vip"),
        pricing.PriceInput(v, "EUR", D("17.00"), customer_group="staff"),
        pricing.PriceInput(w, "EUR", D("30.00")),
        pricing.PriceInput(w, "EUR", D("29.00"), customer_group="vip"),
        # A sale for everyone, lower than the vip price while it runs.
        pricing.PriceInput(
            w, "EUR", D("25.00"), starts_at=now - timedelta(hours=1), ends_at=now + timedelta(1)
        ),
    )
    both = _resolve(db, [v, w], customer_groups=["members", "vip"])
    assert both[v].amount == D("16.00")  # not members' 18.00, whichever sorts first
    assert both[w].amount == D("25.00") and both[w].compare_at == D("30.00")
    assert _resolve(db, [v], customer_groups=["members"])[v].amount == D("18.00")
    assert _resolve(db, [v], customer_groups=["members", "nobody"])[v].amount == D("18.00")
    assert _resolve(db, [v], customer_group="members", customer_groups=["staff"])[v].amount == (
        D("17.00")
    )
    assert _resolve(db, [v])[v].amount == D("20.00")
    later = now + timedelta(days=2)
    assert _resolve(db, [w], at=later, customer_groups=["members", "vip"])[w].amount == D("29.00")
