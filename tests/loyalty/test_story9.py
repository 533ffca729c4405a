"""Story 9: points earned on any purchase, redeemable in any channel; tiers.

A shopper buys coffee online in Japan; once the warehouse ships the order her points
appear and lift her to silver. In the Shibuya store she pays part of a purchase with
points at the POS and collects it. She returns coffee from the online order and is
refunded: the points it earned are taken back in proportion, and with them her tier.
Everything goes through the API: checkout, fulfilment, the returns desk.
"""

from __future__ import annotations

import uuid
from decimal import ROUND_FLOOR, Decimal
from typing import Any

import pytest
from sqlalchemy import select

from mercato.auth.principal import Principal
from mercato.catalog import service as catalog
from mercato.catalog.schemas import ProductIn, ProductStatus, VariantIn
from mercato.events import OutboxEvent
from mercato.inventory import service as inventory
from mercato.pricing import service as pricing
from tests.commerce.conftest import DemoWorld
from tests.commerce.helpers import TOKYO, add, login, new_cart, ok, pay, register, ship_to
from tests.helpers import all_items, drain

pytestmark = pytest.mark.slow

SYSTEM = Principal.system("tests")


def _coffee(world: DemoWorld, price: str) -> int:
    """Organic coffee beans (the demo's coffee category) in stock online and in Shibuya."""
    code = f"BEANS-{uuid.uuid4().hex[:8]}"
    with world.database.transaction() as session:
        category = catalog.category_by_code(session, "organic-coffee-beans")
        assert category is not None
        product = catalog.create_product(
            session,
            SYSTEM,
            ProductIn(
                code=code,
                name=code,
                status=ProductStatus.ACTIVE,
                category_id=category.id,
                variants=[VariantIn(sku=code, weight_g=250)],
            ),
        )
        variant = product.variants[0].id
        for location in ("WH-TYO", "ST-SHIBUYA"):
            inventory.receive_bulk(
                session,
                inventory.Context(SYSTEM, reference_type="test"),
                world.location_id(location),
                [(variant, 50)],
            )
        pricing.set_prices(
            session, SYSTEM, "JP", [pricing.PriceInput(variant, "JPY", Decimal(price))]
        )
    return int(variant)


def _setup_programme(world: DemoWorld, staff: dict[str, str]) -> None:
    with world.database.read() as session:
        coffee = catalog.category_by_code(session, "coffee")
        assert coffee is not None
        coffee_id = coffee.id
    body = {
        "name": "Mercato Rewards",
        "expiry_months": 24,
        "currencies": [
            {"currency": "JPY", "earn_points": 1, "earn_amount": "100", "point_value": "1"},
            {"currency": "EUR", "earn_points": 1, "earn_amount": "1", "point_value": "0.01"},
        ],
        # Double points on coffee and everything below it (organic beans).
        "category_multipliers": [{"category_id": coffee_id, "multiplier": "2"}],
        "tiers": [
            {"code": "silver", "name": "Silver", "threshold": 200, "customer_group": "silver"}
        ],
    }
    ok(world.client.put("/v1/loyalty/programme", headers=staff, json=body))


def _expected_points(order: dict[str, Any], coffee: int, paid_with_points: str = "0") -> int:
    """The programme's rule, from the order as placed: 1 point per 100 JPY of goods (net of
    discounts, without shipping), double on coffee, none on what points paid, rounded down."""
    share = 1 - Decimal(paid_with_points) / Decimal(order["grand_total"])
    exact = Decimal(0)
    for line in order["lines"]:
        net = Decimal(line["subtotal"]) - Decimal(line["discount"])
        exact += net * share * (2 if line["variant_id"] == coffee else 1) / 100
    return int(exact.to_integral_value(rounding=ROUND_FLOOR))


def _mine(world: DemoWorld, headers: dict[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = ok(world.client.get("/v1/store/loyalty", headers=headers))
    return body


def _task(world: DemoWorld, order: dict[str, Any], kind: str) -> dict[str, Any]:
    tasks = all_items(world.client, f"/v1/fulfillment/orders?kind={kind}", world.staff())
    found: dict[str, Any] = next(t for t in tasks if t["order_id"] == order["id"])
    return found


def _ship(world: DemoWorld, order: dict[str, Any]) -> None:
    """The location routing chose packs and ships the order."""
    client, staff = world.client, world.staff()
    task = _task(world, order, "ship")
    url = f"/v1/fulfillment/orders/{task['id']}"
    ok(client.post(f"{url}/pack", headers=staff, json={"packages": [{"weight_g": 1500}]}))
    ok(client.post(f"{url}/ship", headers=staff, json={}))


def _hand_over(world: DemoWorld, order: dict[str, Any]) -> None:
    """The store gets the pickup ready and hands it over against the customer's code."""
    client, staff = world.client, world.staff()
    url = f"/v1/fulfillment/orders/{_task(world, order, 'pickup')['id']}"
    code = ok(client.post(f"{url}/ready", headers=staff))["pickup_code"]
    ok(client.post(f"{url}/handover", headers=staff, json={"code": code}))


def _status(world: DemoWorld, order: dict[str, Any]) -> str:
    found = ok(world.client.get(f"/v1/orders/{order['id']}", headers=world.staff()))
    return str(found["status"])


def _return(world: DemoWorld, order: dict[str, Any], variant: int, quantity: int) -> None:
    """She brings bags back (damaged: no fee); they are received and refunded to her card."""
    client, staff = world.client, world.staff()
    line = next(x for x in order["lines"] if x["variant_id"] == variant)
    ret = ok(
        client.post(
            "/v1/returns",
            headers=staff,
            json={
                "order_number": order["number"],
                "lines": [{"order_line_id": line["id"], "quantity": quantity, "reason": "damaged"}],
            },
        ),
        201,
    )
    ok(
        client.post(
            f"/v1/returns/{ret['id']}/receive",
            headers=staff,
            json={
                "location_id": world.location_id("WH-TYO"),
                "lines": [
                    {"return_line_id": x["id"], "condition": "restock"} for x in ret["lines"]
                ],
            },
        )
    )
    done = ok(client.post(f"/v1/returns/{ret['id']}/refund", headers=staff, json={}))
    assert done["status"] == "refunded"
    assert Decimal(done["refunded_total"]) == Decimal(line["unit_price"]) * quantity


def _tier_changes(world: DemoWorld, customer_id: int) -> list[tuple[str | None, str | None]]:
    with world.database.read() as session:
        rows = session.scalars(
            select(OutboxEvent.data)
            .where(OutboxEvent.type == "loyalty.tier_changed")
            .order_by(OutboxEvent.id)
        ).all()
    return [(d["from"], d["to"]) for d in rows if d["customer_id"] == customer_id]


def test_story9_points_across_channels(demo_world: DemoWorld) -> None:
    client = demo_world.client
    staff = demo_world.staff()
    _setup_programme(demo_world, staff)
    coffee = _coffee(demo_world, "2200")
    mug = demo_world.new_product({"WH-TYO": 50, "ST-SHIBUYA": 50}, {"JP": {"JPY": "1650"}})
    drain(demo_world)

    # Online in Japan: five bags of coffee and a mug.
    web = demo_world.key("web-jp")
    email = f"aiko-{uuid.uuid4().hex[:6]}@example.jp"
    me = {**web, **register(client, web, email)}
    token = new_cart(client, web)["token"]
    add(client, me, token, coffee, 5)
    add(client, me, token, mug, 1)
    ok(client.post(f"/v1/store/carts/{token}/customer", headers=me))
    cart = ship_to(client, me, token, TOKYO, email)
    online = ok(pay(client, me, token, cart["grand_total"]["amount"], idempotency_key=token), 201)
    drain(demo_world)
    earned = _expected_points(online, coffee)
    assert earned == 236  # 5 x 2200 x 2 / 100 + 1650 / 100 = 236.5, rounded down
    seen = _mine(demo_world, me)
    assert (seen["balance"], seen["pending"], seen["tier"]) == (0, earned, None)

    # The warehouse ships it: the points are granted, and they make her silver.
    _ship(demo_world, online)
    drain(demo_world)
    assert _status(demo_world, online) == "fulfilled"
    seen = _mine(demo_world, me)
    assert (seen["balance"], seen["pending"]) == (earned, 0)
    assert seen["tier"]["code"] == "silver" and seen["tier"]["customer_group"] == "silver"
    assert [(h["kind"], h["points"], h["reference_id"]) for h in seen["history"]] == [
        ("earn", earned, online["number"])
    ]
    # Delivery (confirmed by hand, no tracking) grants nothing more.
    ok(
        client.post(
            f"/v1/orders/{online['id']}/transitions", headers=staff, json={"to": "delivered"}
        )
    )
    drain(demo_world)
    assert _mine(demo_world, me)["balance"] == earned

    # In the Shibuya store: a mug for pickup now, 100 points and the rest in cash.
    pos = demo_world.key("pos-shibuya")
    shibuya = demo_world.location_id("ST-SHIBUYA")
    at_till = {**pos, **login(client, pos, email)}
    assert _mine(demo_world, at_till)["balance"] == earned  # the same points in any channel
    till = new_cart(client, pos)["token"]
    add(client, at_till, till, mug, 1, delivery_mode="pickup", pickup_location_id=shibuya)
    ok(client.post(f"/v1/store/carts/{till}/customer", headers=at_till))
    total = Decimal(
        ok(client.get(f"/v1/store/carts/{till}", headers=at_till))["grand_total"]["amount"]
    )
    tenders = [
        {"method": "loyalty_points", "amount": "100"},
        {"method": "pos_cash", "amount": str(total - 100), "location_id": shibuya},
    ]
    sale = client.post(
        f"/v1/store/carts/{till}/checkout",
        headers={**at_till, "Idempotency-Key": till},
        json={"payments": tenders},
    )
    in_store = ok(sale, 201)
    drain(demo_world)
    seen = _mine(demo_world, at_till)
    assert seen["balance"] == earned - 100
    spent = seen["history"][0]
    assert (spent["kind"], spent["points"], spent["reference_id"]) == (
        "redeem",
        -100,
        in_store["number"],
    )
    assert spent["channel_id"] == in_store["channel_id"]
    store_points = _expected_points(in_store, coffee, paid_with_points="100")
    assert seen["pending"] == store_points == 15  # (1650 - 100) / 100, none on the points
    drain(demo_world)
    _hand_over(demo_world, in_store)
    drain(demo_world)
    assert _status(demo_world, in_store) == "picked_up"
    balance = earned - 100 + store_points
    assert _mine(demo_world, at_till)["balance"] == balance

    # She returns one bag of the online coffee: its share of the online points goes back.
    _return(demo_world, online, coffee, 1)
    drain(demo_world)
    first_return = 43  # 236 x (220 x 1/5) / 236.5, rounded down
    seen = _mine(demo_world, me)
    assert seen["balance"] == balance - first_return
    assert seen["tier"]["code"] == "silver"  # 236 + 15 - 43 = 208 qualifying points
    # Two more bags: 131 of the 236 points are back in all, and silver is lost.
    _return(demo_world, online, coffee, 2)
    drain(demo_world)
    seen = _mine(demo_world, me)
    assert seen["balance"] == balance - 131
    assert seen["qualifying_points"] == earned + store_points - 131
    assert seen["tier"] is None
    assert [(h["kind"], h["points"]) for h in seen["history"][:2]] == [
        ("reverse", -(131 - first_return)),
        ("reverse", -first_return),
    ]
    assert _tier_changes(demo_world, seen["customer_id"]) == [(None, "silver"), ("silver", None)]

    # Staff see the same account; the ledger equals every balance.
    account = ok(client.get(f"/v1/loyalty/accounts/{seen['customer_id']}", headers=staff))
    assert account["balance"] == seen["balance"]
    assert ok(client.get("/v1/loyalty/verify", headers=staff)) == {"ok": True, "mismatches": []}
