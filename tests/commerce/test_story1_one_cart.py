"""Story 1: a cart filled on the Japanese web store in JPY is finished in the English app
in Singapore with the same lines, prices, currency and totals."""

from __future__ import annotations

import uuid

import pytest

from tests.commerce.conftest import DemoWorld
from tests.commerce.helpers import TOKYO, add, login, new_cart, ok, pay, register, ship_to

pytestmark = pytest.mark.slow

AMOUNTS = ("subtotal", "discount_total", "shipping_total", "tax_total", "grand_total")


def test_one_cart_across_channels_and_countries(demo_world: DemoWorld) -> None:
    client = demo_world.client
    web, app = demo_world.key("web-jp"), demo_world.key("app")
    coffee = demo_world.new_product({"WH-TYO": 50}, {"JP": {"JPY": "2380"}}, tax_class="food")
    mug = demo_world.new_product({"WH-TYO": 50}, {"JP": {"JPY": "3980"}})
    email = f"aiko-{uuid.uuid4().hex[:6]}@example.jp"

    # In Tokyo, on the Japanese web store.
    customer_web = register(client, web, email)
    cart = new_cart(client, web)
    token = cart["token"]
    assert (cart["currency"], cart["locale"]) == ("JPY", "ja-JP")
    add(client, {**web, **customer_web}, token, coffee, 2)
    add(client, {**web, **customer_web}, token, mug, 1)
    ok(client.post(f"/v1/store/carts/{token}/customer", headers={**web, **customer_web}))
    in_japan = ship_to(client, {**web, **customer_web}, token, TOKYO, email)
    assert in_japan["can_checkout"], in_japan
    assert in_japan["grand_total"]["formatted"].startswith("￥")
    # 8% on coffee (food), 10% on the mug and shipping, rounded down per rate.
    assert {t["rate"] for t in in_japan["taxes"]} == {"0.08", "0.10"}

    # Days later in Singapore: the English app, same customer, same cart.
    customer_app = login(client, app, email)
    mine = ok(client.get("/v1/store/carts/mine", headers={**app, **customer_app}))
    assert mine["token"] == token
    assert (mine["currency"], mine["locale"], mine["channel"]) == ("JPY", "en", "app")
    for name in AMOUNTS:
        assert mine[name]["amount"] == in_japan[name]["amount"], name
    assert [
        (x["sku"], x["quantity"], x["unit_price"]["amount"], x["total"]["amount"])
        for x in mine["lines"]
    ] == [
        (x["sku"], x["quantity"], x["unit_price"]["amount"], x["total"]["amount"])
        for x in in_japan["lines"]
    ]
    # Names and formatting follow the channel's language, not the amounts.
    assert all(x["name"].isascii() for x in mine["lines"])
    assert not any(x["name"].isascii() for x in in_japan["lines"])
    assert mine["grand_total"]["formatted"].startswith("¥")

    order = ok(
        pay(
            client,
            {**app, **customer_app},
            token,
            mine["grand_total"]["amount"],
            idempotency_key=f"story1-{token}",
        ),
        201,
    )
    assert order["status"] == "confirmed" and order["currency"] == "JPY"
    assert order["grand_total"] == in_japan["grand_total"]["amount"]
    assert order["channel_id"] != cart.get("channel_id")
    staff = demo_world.staff()
    placed = ok(client.get(f"/v1/orders/{order['id']}", headers=staff))
    assert [(t["from_status"], t["to_status"]) for t in placed["timeline"]] == [
        ("pending_payment", "placed"),
        ("placed", "confirmed"),
    ]


def test_a_channel_that_cannot_sell_a_line_says_why(demo_world: DemoWorld) -> None:
    client = demo_world.client
    web_jp, web_de = demo_world.key("web-jp"), demo_world.key("web-de")
    item = demo_world.new_product({"WH-TYO": 5}, {"JP": {"JPY": "1500"}})
    token = new_cart(client, web_jp)["token"]
    add(client, web_jp, token, item, 1)
    # The German web store sells in EUR only and does not stock Tokyo's warehouse.
    seen = ok(client.get(f"/v1/store/carts/{token}", headers=web_de))
    assert len(seen["lines"]) == 1  # never silently dropped
    issues = seen["lines"][0]["issues"]
    assert "currency-not-sold" in issues and "insufficient-stock" in issues
    assert seen["can_checkout"] is False
    assert seen["lines"][0]["unit_price"]["amount"] == "1500"  # the cart's prices stay
