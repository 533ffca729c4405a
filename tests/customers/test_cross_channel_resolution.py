"""One person, three channels, one profile: a web order with her email, a marketplace order
with her buyer id (and the email and phone the marketplace verified), a POS sale with only
her phone, and a later marketplace order with only the buyer id all land on the profile she
registered on the web store, through the real order APIs of the demo business."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest

from mercato.catalog import service as catalog
from mercato.channels import service as channels
from tests.commerce.helpers import TOKYO, add, new_cart, ok, pay, register, ship_to
from tests.demo_world import DemoWorld
from tests.helpers import drain

pytestmark = pytest.mark.slow


def _channel_id(world: DemoWorld, code: str) -> int:
    with world.database.read() as session:
        channel = channels.channel_by_code(session, code)
        assert channel is not None
        return channel.id


def test_a_person_buying_on_the_web_a_marketplace_and_in_store_is_one_profile(
    demo_world: DemoWorld,
) -> None:
    client, staff = demo_world.client, demo_world.staff()
    web = demo_world.key("web-jp")
    tag = uuid.uuid4().hex[:8]
    email, phone = f"sora.{tag}@example.jp", f"+8180{int(tag, 16) % 90000000 + 10000000}"
    buyer = f"MKT-BUYER-{tag}"
    item = demo_world.new_product({"WH-TYO": 20, "ST-SHIBUYA": 5}, {"JP": {"JPY": "1800"}})
    with demo_world.database.read() as session:
        sku = catalog.variant_infos(session, [item])[item].sku
    market, pos = _channel_id(demo_world, "marketplace-jp"), _channel_id(demo_world, "pos-shibuya")
    shibuya = demo_world.location_id("ST-SHIBUYA")

    # The web store: she registers, confirms her email, and buys.
    shopper = {**web, **register(client, web, email)}
    me = ok(client.get("/v1/store/customers/me", headers=shopper))["id"]
    ok(
        client.post(
            f"/v1/customers/{me}/identities",
            headers=staff,
            json={"type": "email", "value": email, "verified": True},
        ),
        201,
    )
    token = new_cart(client, shopper)["token"]
    add(client, shopper, token, item, 1)
    cart = ship_to(client, shopper, token, TOKYO, email=email)
    web_order = ok(pay(client, shopper, token, cart["grand_total"]["amount"]), 201)
    assert web_order["customer_id"] == me

    def imported(identities: list[dict[str, Any]]) -> dict[str, Any]:
        body = {
            "channel_id": market,
            "external_id": f"MKT-{uuid.uuid4().hex[:10]}",
            "currency": "JPY",
            "identities": identities,
            "customer_name": "Sora Ito",
            "shipping_address": TOKYO,
            "lines": [{"sku": sku, "quantity": 1, "unit_price": "1700"}],
        }
        return ok(client.post("/v1/orders/import", headers=staff, json=body), 201)

    # The marketplace knows her by its buyer id and passes on the contacts it verified.
    first_market = imported(
        [
            {"type": "marketplace_buyer", "value": buyer, "verified": True},
            {"type": "email", "value": email.upper(), "verified": True},
            {"type": "phone", "value": phone, "verified": True},
        ]
    )
    assert first_market["customer_id"] == me

    # In the Shibuya store the cashier takes only her phone number.
    quote = new_cart(client, demo_world.key("pos-shibuya"))["token"]
    priced = add(
        client,
        demo_world.key("pos-shibuya"),
        quote,
        item,
        1,
        delivery_mode="pickup",
        pickup_location_id=shibuya,
    )
    total = Decimal(priced["grand_total"]["amount"])
    sale = client.post(
        "/v1/orders",
        headers={**staff, "Idempotency-Key": str(uuid.uuid4())},
        json={
            "channel_id": pos,
            "identities": [{"type": "phone", "value": phone, "verified": True}],
            "customer_name": "Sora Ito",
            "currency": "JPY",
            "lines": [
                {
                    "variant_id": item,
                    "quantity": 1,
                    "delivery_mode": "pickup",
                    "pickup_location_id": shibuya,
                }
            ],
            "payments": [{"method": "pos_cash", "amount": str(total), "location_id": shibuya}],
        },
    )
    in_store = ok(sale, 201)
    assert in_store["customer_id"] == me

    # Later the marketplace sends only its buyer id.
    second_market = imported([{"type": "marketplace_buyer", "value": buyer, "verified": True}])
    assert second_market["customer_id"] == me
    drain(demo_world)

    profile = ok(client.get(f"/v1/customers/{me}/profile", headers=staff))
    identities = {(i["type"], i["value"], i["verified"]) for i in profile["identities"]}
    assert {
        ("email", email, True),
        ("phone", phone, True),
        ("marketplace_buyer", buyer, True),
    } <= identities
    assert profile["figures"]["order_count"] == 4
    # No second profile was made for any of her identifiers.
    for lookup in ({"phone": phone}, {"email": email}):
        found = ok(client.get("/v1/customers", headers=staff, params=lookup))["items"]
        assert [c["id"] for c in found] == [me], lookup
    timeline = ok(client.get(f"/v1/customers/{me}/timeline", headers=staff))["items"]
    purchases = [(e["kind"], e["channel_id"]) for e in timeline if e["source"] == "orders"]
    assert sorted(purchases) == sorted(
        [
            ("order", web_order["channel_id"]),
            ("order", market),
            ("order", market),
            ("store_visit", pos),
        ]
    )
