"""A cart prices each line at the best price among all of its customer's groups."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from mercato.auth.principal import Principal
from mercato.loyalty import service as loyalty
from tests.commerce.helpers import TOKYO, add, new_cart, ok, register, ship_to
from tests.demo_world import DemoWorld

pytestmark = pytest.mark.slow


def test_a_customer_in_two_groups_gets_the_better_group_price(demo_world: DemoWorld) -> None:
    client, key, staff = demo_world.client, demo_world.key("web-jp"), demo_world.staff()
    # "aaa-" sorts before "zzz-": the better price is deliberately in the group sorting last.
    first, last = f"aaa-{uuid.uuid4().hex[:6]}", f"zzz-{uuid.uuid4().hex[:6]}"
    item = demo_world.new_product({"WH-TYO": 5}, {"JP": {"JPY": "5000"}})
    ok(
        client.put(
            "/v1/price-lists/JP/prices",
            headers=staff,
            json={
                "prices": [
                    {"variant_id": item, "currency": "JPY", "amount": "5000"},
                    {
                        "variant_id": item,
                        "currency": "JPY",
                        "amount": "4500",
                        "customer_group": first,
                    },
                    {
                        "variant_id": item,
                        "currency": "JPY",
                        "amount": "4000",
                        "customer_group": last,
                    },
                ]
            },
        )
    )
    shopper = register(client, key, f"groups-{uuid.uuid4().hex[:6]}@example.jp")
    me = ok(client.get("/v1/store/customers/me", headers={**key, **shopper}))["id"]

    def cart_price() -> Decimal:
        token = new_cart(client, {**key, **shopper})["token"]
        add(client, {**key, **shopper}, token, item, 2)
        cart = ship_to(client, {**key, **shopper}, token, TOKYO)
        line = cart["lines"][0]
        return Decimal(line["unit_price"]["amount"])

    ok(client.patch(f"/v1/customers/{me}", headers=staff, json={"groups": [first]}))
    assert cart_price() == 4500
    ok(client.patch(f"/v1/customers/{me}", headers=staff, json={"groups": [first, last]}))
    assert cart_price() == 4000
    guest = new_cart(client, key)["token"]
    add(client, key, guest, item, 1)
    assert (
        Decimal(
            ok(client.get(f"/v1/store/carts/{guest}", headers=key))["lines"][0]["unit_price"][
                "amount"
            ]
        )
        == 5000
    )


def test_a_loyalty_tier_brings_its_group_price(demo_world: DemoWorld) -> None:
    """The demo's gold tier stands for the customer group "gold": reaching it is enough."""
    client, key, staff = demo_world.client, demo_world.key("web-jp"), demo_world.staff()
    item = demo_world.new_product({"WH-TYO": 5}, {"JP": {"JPY": "5000"}})
    ok(
        client.put(
            "/v1/price-lists/JP/prices",
            headers=staff,
            json={
                "prices": [
                    {
                        "variant_id": item,
                        "currency": "JPY",
                        "amount": "4200",
                        "customer_group": "gold",
                    }
                ]
            },
        )
    )
    shopper = register(client, key, f"tier-{uuid.uuid4().hex[:6]}@example.jp")
    me = ok(client.get("/v1/store/customers/me", headers={**key, **shopper}))["id"]

    def cart_price() -> Decimal:
        token = new_cart(client, {**key, **shopper})["token"]
        add(client, {**key, **shopper}, token, item, 1)
        line = ship_to(client, {**key, **shopper}, token, TOKYO)["lines"][0]
        return Decimal(line["unit_price"]["amount"])

    assert cart_price() == 5000
    with demo_world.database.transaction() as session:
        loyalty.earn(
            session, Principal.system("tests"), me, 2500, reference_type="test", reference_id=None
        )
    assert ok(client.get(f"/v1/loyalty/accounts/{me}", headers=staff))["tier"]["code"] == "gold"
    assert cart_price() == 4200
