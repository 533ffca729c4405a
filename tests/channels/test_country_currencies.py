"""A channel selling in several currencies quotes each shopper in their country's currency
(``country_currencies``), through the channel's price list and exchange rates."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient

from mercato.db import Database
from tests.commerce.conftest import DemoWorld
from tests.commerce.helpers import TOKYO, add, new_cart, ok
from tests.conftest import assert_problem
from tests.helpers import detach_categories, fast_password_hashing

Headers = dict[str, str]


@pytest.fixture
def _fast(monkeypatch: pytest.MonkeyPatch, db: Database) -> Iterator[None]:
    fast_password_hashing(monkeypatch)
    yield
    detach_categories(db)


def _euro_item(world: DemoWorld) -> int:
    """Priced in euros on the global list only: other currencies are converted."""
    return world.new_product({"WH-TYO": 10, "WH-NJ": 10}, {"GLOBAL": {"EUR": "10.00"}})


@pytest.mark.parametrize(
    ("country", "currency"),
    [("JP", "JPY"), ("DE", "EUR"), ("SG", "SGD"), ("VN", "VND"), ("US", "USD"), ("FR", "USD")],
)
def test_the_app_quotes_each_country_in_its_currency(
    demo_world: DemoWorld, country: str, currency: str
) -> None:
    client, app = demo_world.client, demo_world.key("app")
    item = _euro_item(demo_world)
    cart = new_cart(client, app, country=country)
    assert cart["currency"] == currency
    priced = add(client, app, cart["token"], item, 1)
    assert priced["lines"][0]["unit_price"] is not None, priced
    assert priced["currency"] == currency

    channel = ok(client.get("/v1/store/channel", headers=app))
    assert channel["country_currencies"]["JP"] == "JPY"
    product = _product_of(demo_world, item)
    page = ok(client.get(f"/v1/store/products/{product}?country={country}", headers=app))
    assert page["variants"][0]["price"]["currency"] == currency
    assert page["variants"][0]["price"]["amount"] == priced["lines"][0]["unit_price"]["amount"]


def test_an_explicit_currency_wins_and_the_default_stays_without_a_country(
    demo_world: DemoWorld,
) -> None:
    client, app = demo_world.client, demo_world.key("app")
    assert new_cart(client, app)["currency"] == "USD"
    assert new_cart(client, app, country="JP", currency="EUR")["currency"] == "EUR"
    item = _euro_item(demo_world)
    page = ok(client.get(f"/v1/store/products/{_product_of(demo_world, item)}", headers=app))
    assert page["variants"][0]["price"]["currency"] == "USD"
    bad = client.get("/v1/store/products?country=XX", headers=app)
    assert assert_problem(bad, 422)["errors"][0]["field"] == "query.country"
    assert_problem(client.post("/v1/store/carts", headers=app, json={"country": "XX"}), 422)


def test_a_cart_follows_its_shipping_country_unless_the_shopper_chose(
    demo_world: DemoWorld,
) -> None:
    client, app = demo_world.client, demo_world.key("app")
    item = _euro_item(demo_world)
    token = new_cart(client, app)["token"]
    add(client, app, token, item, 1)
    to_tokyo = {"shipping_address": TOKYO}
    shipped = ok(client.patch(f"/v1/store/carts/{token}", headers=app, json=to_tokyo))
    assert shipped["currency"] == "JPY"
    assert Decimal(shipped["lines"][0]["unit_price"]["amount"]) > 1000

    chosen = new_cart(client, app, currency="EUR")["token"]
    kept = ok(
        client.patch(f"/v1/store/carts/{chosen}", headers=app, json={"shipping_address": TOKYO})
    )
    assert kept["currency"] == "EUR"

    # A cart from another channel keeps the currency of its price list.
    web = new_cart(client, demo_world.key("web-jp"))["token"]
    germany = {**TOKYO, "country": "DE", "region": None, "postal_code": "10119"}
    to_germany = {"shipping_address": germany}
    moved = ok(client.patch(f"/v1/store/carts/{web}", headers=app, json=to_germany))
    assert moved["currency"] == "JPY"


@pytest.mark.usefixtures("_fast")
def test_staff_set_the_rule_only_with_currencies_the_channel_sells(
    client: TestClient, owner_headers: Headers
) -> None:
    body = {
        "code": "global-app",
        "name": "Global app",
        "type": "app",
        "default_locale": "en",
        "currencies": ["USD", "JPY"],
        "country_currencies": {"jp": "jpy"},
    }
    channel = ok_created(client.post("/v1/channels", headers=owner_headers, json=body))
    assert channel["country_currencies"] == {"JP": "JPY"}
    refused = client.post(
        "/v1/channels",
        headers=owner_headers,
        json={**body, "code": "other", "country_currencies": {"DE": "EUR"}},
    )
    assert "country_currencies.DE" in str(assert_problem(refused, 422))
    url = f"/v1/channels/{channel['id']}"
    patched = client.patch(url, headers=owner_headers, json={"country_currencies": {"US": "USD"}})
    assert ok(patched)["country_currencies"] == {"US": "USD"}
    dropped = client.patch(url, headers=owner_headers, json={"currencies": ["JPY"]})
    problem = assert_problem(dropped, 422)
    assert problem["errors"][0]["field"] == "body.country_currencies"
    assert ok(client.get(url, headers=owner_headers))["currencies"] == ["USD", "JPY"]


def ok_created(response: object) -> dict[str, object]:
    return ok(response, 201)


def _product_of(world: DemoWorld, variant_id: int) -> int:
    from mercato.catalog.models import Variant

    with world.database.read() as session:
        found = session.get(Variant, variant_id)
        assert found is not None
        return int(found.product_id)
