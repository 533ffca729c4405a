"""Discount codes (expired, foreign, one-time personal) and split tenders at checkout."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import update

from mercato.db import utcnow
from mercato.promotions.models import PromotionCode
from tests.commerce.conftest import DemoWorld
from tests.commerce.helpers import TOKYO, add, card_token, new_cart, ok, register, ship_to
from tests.conftest import assert_problem


def _promotion(world: DemoWorld, staff: dict[str, str], percent: int = 10) -> int:
    body = {
        "name": f"Test {uuid.uuid4().hex[:6]}",
        "status": "active",
        "requires_code": True,
        "action": {"type": "percent_off_items", "percent": str(percent)},
    }
    return int(ok(world.client.post("/v1/promotions", headers=staff, json=body), 201)["id"])


def _ready(world: DemoWorld, key: dict[str, str], price: str = "3000") -> str:
    item = world.new_product({"WH-TYO": 10}, {"JP": {"JPY": price}})
    token = new_cart(world.client, key)["token"]
    add(world.client, key, token, item, 1)
    ship_to(world.client, key, token, TOKYO)
    return str(token)


@pytest.mark.slow
def test_expired_unknown_and_foreign_codes_are_refused(demo_world: DemoWorld) -> None:
    client, staff = demo_world.client, demo_world.staff()
    key = demo_world.key("web-jp")
    promotion = _promotion(demo_world, staff)
    code = f"OLD{uuid.uuid4().hex[:6].upper()}"
    ok(client.post(f"/v1/promotions/{promotion}/codes", headers=staff, json={"code": code}), 201)
    with demo_world.database.transaction() as session:
        session.execute(
            update(PromotionCode)
            .where(PromotionCode.code == code)
            .values(expires_at=utcnow() - timedelta(days=1))
        )
    token = _ready(demo_world, key)
    expired = assert_problem(
        client.post(f"/v1/store/carts/{token}/codes", headers=key, json={"code": code.lower()}),
        422,
        "code-not-applicable",
    )
    assert expired["errors"] == [{"field": "body.code", "reason": "expired"}]
    assert_problem(
        client.post(f"/v1/store/carts/{token}/codes", headers=key, json={"code": "NO-SUCH-CODE"}),
        422,
        "code-not-applicable",
    )
    # A personal code is for its customer only, in every channel, once.
    owner = register(client, key, f"owner-{uuid.uuid4().hex[:6]}@example.jp")
    other = register(client, key, f"other-{uuid.uuid4().hex[:6]}@example.jp")
    owner_id = ok(client.get("/v1/store/customers/me", headers={**key, **owner}))["id"]
    personal = ok(
        client.post(
            f"/v1/promotions/{promotion}/personal-codes",
            headers=staff,
            json={"customer_id": owner_id, "valid_days": 30},
        ),
        201,
    )["code"]
    theirs = new_cart(client, {**key, **other})["token"]
    item = demo_world.new_product(
        {"WH-TYO": 10}, {"JP": {"JPY": "2000"}, "GLOBAL": {"JPY": "2000"}}
    )
    add(client, {**key, **other}, theirs, item, 1)
    foreign = assert_problem(
        client.post(
            f"/v1/store/carts/{theirs}/codes", headers={**key, **other}, json={"code": personal}
        ),
        422,
    )
    assert foreign["errors"][0]["reason"] == "not-your-code"
    app = demo_world.key("app")
    mine = new_cart(client, {**app, **owner}, currency="JPY")["token"]
    add(client, {**app, **owner}, mine, item, 1)
    ship_to(client, {**app, **owner}, mine, TOKYO)
    applied = ok(
        client.post(
            f"/v1/store/carts/{mine}/codes", headers={**app, **owner}, json={"code": personal}
        )
    )
    assert applied["promotions"][0]["code"] == personal
    assert Decimal(applied["discount_total"]["amount"]) == Decimal(200)
    paid = client.post(
        f"/v1/store/carts/{mine}/checkout",
        headers={**app, **owner, "Idempotency-Key": str(uuid.uuid4())},
        json={
            "payments": [
                {
                    "method": "test_gateway",
                    "amount": applied["grand_total"]["amount"],
                    "token": card_token(client, app),
                }
            ]
        },
    )
    assert paid.status_code == 201, paid.text
    again = new_cart(client, {**key, **owner})["token"]
    add(client, {**key, **owner}, again, item, 1)
    used = assert_problem(
        client.post(
            f"/v1/store/carts/{again}/codes", headers={**key, **owner}, json={"code": personal}
        ),
        422,
    )
    assert used["errors"][0]["reason"] == "usage-limit-reached"


def test_gift_card_and_card_split_tender(demo_world: DemoWorld) -> None:
    client, staff = demo_world.client, demo_world.staff()
    key = demo_world.key("web-jp")
    card = ok(
        client.post(
            "/v1/gift-cards",
            headers={**staff, "Idempotency-Key": str(uuid.uuid4())},
            json={"currency": "JPY", "amount": "1000"},
        ),
        201,
    )
    token = _ready(demo_world, key)
    total = Decimal(
        ok(client.get(f"/v1/store/carts/{token}", headers=key))["grand_total"]["amount"]
    )
    order = ok(
        client.post(
            f"/v1/store/carts/{token}/checkout",
            headers={**key, "Idempotency-Key": str(uuid.uuid4())},
            json={
                "payments": [
                    {"method": "gift_card", "amount": "1000", "gift_card_code": card["code"]},
                    {
                        "method": "test_gateway",
                        "amount": str(total - 1000),
                        "token": card_token(client, key),
                    },
                ]
            },
        ),
        201,
    )
    payments = ok(client.get(f"/v1/payments?reference={order['number']}", headers=staff))["items"]
    assert sorted(p["method"] for p in payments) == ["gift_card", "test_gateway"]
    balance = ok(
        client.post("/v1/store/gift-cards/balance", headers=key, json={"code": card["code"]})
    )
    assert Decimal(balance["balance"]) == 0


def test_a_declined_card_gives_the_gift_card_back(demo_world: DemoWorld) -> None:
    client, staff = demo_world.client, demo_world.staff()
    key = demo_world.key("web-jp")
    card = ok(
        client.post(
            "/v1/gift-cards",
            headers={**staff, "Idempotency-Key": str(uuid.uuid4())},
            json={"currency": "JPY", "amount": "500"},
        ),
        201,
    )
    token = _ready(demo_world, key)
    total = Decimal(
        ok(client.get(f"/v1/store/carts/{token}", headers=key))["grand_total"]["amount"]
    )
    declined = client.post(
        f"/v1/store/carts/{token}/checkout",
        headers={**key, "Idempotency-Key": str(uuid.uuid4())},
        json={
            "payments": [
                {"method": "gift_card", "amount": "500", "gift_card_code": card["code"]},
                {
                    "method": "test_gateway",
                    "amount": str(total - 500),
                    "token": card_token(client, key, "declined"),
                },
            ]
        },
    )
    assert_problem(declined, 402, "payment-declined")
    balance = ok(
        client.post("/v1/store/gift-cards/balance", headers=key, json={"code": card["code"]})
    )
    assert Decimal(balance["balance"]) == 500
