"""A cart prices before the shopper gives an address, in every jurisdiction.

Where the tax depends on more than the country (a US state), the cart and the product
pages show the tax as pending instead of failing; checkout asks for the missing part.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from mercato.carts import totals
from mercato.pricing.tax import (
    RoundingPolicy,
    TableTaxProvider,
    TaxAddress,
    TaxAddressIncomplete,
    TaxRule,
)
from tests.commerce.conftest import DemoWorld
from tests.commerce.helpers import add, new_cart, ok, pay, ship_to

NEW_YORK = {
    "name": "Sam Rivera",
    "line1": "350 5th Ave",
    "city": "New York",
    "postal_code": "10118",
    "country": "US",
    "latitude": 40.748,
    "longitude": -73.985,
}

# Every demo shopper channel with a price list, and the list's currency.
CHANNEL_PRICES = {
    "web-jp": ("JP", "JPY", "1980"),
    "web-de": ("EU", "EUR", "12.90"),
    "web-sg": ("SG", "SGD", "18.90"),
    "web-vn": ("VN", "VND", "350000"),
    "web-us": ("US", "USD", "14.99"),
    "marketplace-jp": ("JP", "JPY", "1980"),
}


def _line() -> totals.LineAmounts:
    return totals.LineAmounts("1", "standard", Decimal("10.00"), Decimal(0))


def _jurisdictions(provider: TableTaxProvider) -> list[str]:
    return sorted({code.partition("-")[0] for code in provider.rules})


@pytest.mark.parametrize("country", _jurisdictions(TableTaxProvider()))
def test_every_jurisdiction_totals_from_the_country_alone(country: str) -> None:
    provider = TableTaxProvider()
    taxed = totals.assemble(
        "EUR", False, TaxAddress(country), [_line()], Decimal("4.90"), provider
    )
    regional = any(code.startswith(f"{country}-") for code in provider.rules)
    assert (taxed.tax_pending is not None) == regional
    if regional:
        assert "region" in str(taxed.tax_pending)
        assert taxed.tax_total == 0
        assert taxed.grand_total == Decimal("14.90")
        assert taxed.tax_included is False
    assert totals.price_tax(provider, "EUR", True, country).pending == (
        str(taxed.tax_pending) if regional else None
    )


def test_a_country_made_regional_by_configuration_is_pending_too() -> None:
    provider = TableTaxProvider(
        rules=[
            TaxRule(
                "CA-QC",
                "Québec",
                "GST+QST",
                {"standard": Decimal("0.14975")},
                RoundingPolicy("total", "half_up"),
            )
        ]
    )
    taxed = totals.assemble("CAD", False, TaxAddress("CA"), [_line()], Decimal(0), provider)
    assert isinstance(taxed.tax_pending, TaxAddressIncomplete)
    assert taxed.tax_pending.part == "region"
    quebec = totals.assemble("CAD", False, TaxAddress("CA", "QC"), [_line()], Decimal(0), provider)
    assert quebec.tax_pending is None and quebec.tax_total == Decimal("1.50")


@pytest.mark.slow
def test_us_cart_prices_before_the_address_and_checkout_asks_for_the_state(
    demo_world: DemoWorld,
) -> None:
    client, key = demo_world.client, demo_world.key("web-us")
    mug = demo_world.new_product({"WH-NJ": 20}, {"US": {"USD": "15.00"}})
    token = new_cart(client, key)["token"]

    cart = add(client, key, token, mug, 2)
    assert cart["tax_status"] == "pending"
    assert "region" in cart["tax_note"]
    assert cart["tax_total"]["amount"] == "0.00"
    assert cart["tax_included"] is False
    assert cart["grand_total"]["amount"] == "30.00"
    assert "tax-address-incomplete" in cart["issues"]
    assert not cart["can_checkout"]

    # The product page says the same: sales tax comes on top, rate unknown yet.
    page = ok(client.get(f"/v1/store/products/{_product_of(demo_world, mug)}", headers=key))
    price = page["variants"][0]["price"]
    assert (price["amount"], price["tax_inclusive"], price["tax_status"]) == (
        "15.00",
        False,
        "pending",
    )
    assert "region" in price["tax_note"]

    # An address without its state, or with one the US does not have: still pending.
    for region in (None, "ZZ"):
        address = {**NEW_YORK, "region": region}
        shipped = ship_to(client, key, token, address)
        assert shipped["tax_status"] == "pending", shipped
        refused = pay(client, key, token, shipped["grand_total"]["amount"])
        assert refused.status_code == 422, refused.text
        fields = {e["field"]: e["reason"] for e in refused.json()["errors"]}
        assert "shipping_address.region" in fields, fields
        assert ok(client.get(f"/v1/store/carts/{token}", headers=key))["status"] == "open"

    # With the state the tax is known and checkout goes through.
    taxed = ship_to(client, key, token, {**NEW_YORK, "region": "NY"})
    assert taxed["tax_status"] == "calculated" and taxed["tax_note"] is None
    assert Decimal(taxed["tax_total"]["amount"]) > 0
    assert "tax-address-incomplete" not in taxed["issues"]
    ok(pay(client, key, token, taxed["grand_total"]["amount"]), 201)


@pytest.mark.parametrize("channel", sorted(CHANNEL_PRICES))
def test_every_channel_prices_a_cart_without_an_address(
    demo_world: DemoWorld, channel: str
) -> None:
    price_list, currency, amount = CHANNEL_PRICES[channel]
    client, key = demo_world.client, demo_world.key(channel)
    locations = {"web-jp": "WH-TYO", "marketplace-jp": "WH-TYO", "web-de": "WH-FRA"}
    variant = demo_world.new_product(
        {locations.get(channel, "WH-NJ"): 5}, {price_list: {currency: amount}}
    )
    cart = add(client, key, new_cart(client, key)["token"], variant, 1)
    assert cart["lines"][0]["unit_price"]["amount"] == amount
    assert cart["tax_status"] == ("pending" if channel == "web-us" else "calculated")


def _product_of(world: DemoWorld, variant_id: int) -> int:
    from mercato.catalog.models import Variant

    with world.database.read() as session:
        found = session.get(Variant, variant_id)
        assert found is not None
        return int(found.product_id)
