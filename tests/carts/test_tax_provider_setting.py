"""MERCATO_TAX_PROVIDER replaces the built-in tax tables when the application starts."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from mercato.app import create_app
from mercato.carts import service as carts
from mercato.pricing.tax import TableTaxProvider
from mercato.settings import Settings, get_settings
from tests.commerce.helpers import TOKYO, add, new_cart, ship_to
from tests.demo_world import DemoWorld


@pytest.fixture
def restore() -> Iterator[None]:
    before = carts.tax_provider()
    try:
        yield
    finally:
        carts.set_tax_provider(before)
        get_settings.cache_clear()


def _cart_taxes(client: TestClient, world: DemoWorld, item: int) -> dict[str, object]:
    key = world.key("web-jp")
    token = new_cart(client, key)["token"]
    add(client, key, token, item, 1)
    cart = ship_to(client, key, token, TOKYO)
    return {
        "line_tax": Decimal(cart["lines"][0]["tax"]["amount"]),
        "names": sorted({t["name"] for t in cart["taxes"]}),
    }


def test_a_configured_tax_provider_taxes_the_cart(
    demo_world: DemoWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restore: None
) -> None:
    item = demo_world.new_product({"WH-TYO": 2}, {"JP": {"JPY": "5000"}})
    assert isinstance(carts.tax_provider(), TableTaxProvider)
    before = _cart_taxes(demo_world.client, demo_world, item)
    assert before["line_tax"] == Decimal("454")  # JCT: 10% inside 5000, rounded down

    monkeypatch.setenv("MERCATO_TAX_PROVIDER", "tests.carts.custom_tax:provider")
    get_settings.cache_clear()
    app = create_app(
        Settings(data_dir=tmp_path, dispatcher_enabled=False), database=demo_world.database
    )
    with TestClient(app) as client:
        after = _cart_taxes(client, demo_world, item)
    assert after == {"line_tax": Decimal("1000"), "names": ["Custom consumption tax"]}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("tests.carts.custom_tax", "expected 'package.module:factory'"),
        ("tests.carts.no_such_module:provider", "No module named"),
        ("tests.carts.custom_tax:missing", "has no attribute"),
        ("tests.carts.custom_tax:not_a_provider", "has no calculate()"),
    ],
)
def test_a_bad_tax_provider_setting_stops_the_start(
    spec: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restore: None
) -> None:
    monkeypatch.setenv("MERCATO_TAX_PROVIDER", spec)
    get_settings.cache_clear()
    with pytest.raises(ValueError, match=message):
        create_app(Settings(data_dir=tmp_path, dispatcher_enabled=False))
