"""Story 3: a customer who often buys organic coffee beans, online or in a store, receives a
personal discount code for her next purchase. The code works in every channel, once.

Against the demo business: real checkouts on the Japanese web store and at the Shibuya
store's POS, a rule run by staff, the Japanese email in the outbox, the code redeemed in
the app, and refused the second time."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.commerce.conftest import DemoWorld
from tests.commerce.helpers import TOKYO, add, new_cart, ok, pay, ship_to
from tests.conftest import assert_problem

pytestmark = pytest.mark.slow

PASSWORD = "a long password"


def register(client: TestClient, key: dict[str, str], email: str) -> dict[str, str]:
    body = ok(
        client.post(
            "/v1/store/customers",
            headers=key,
            json={"email": email, "password": PASSWORD, "first_name": "Aiko", "locale": "ja-JP"},
        ),
        201,
    )
    return {"Authorization": f"Bearer {body['token']}"}


def login(client: TestClient, key: dict[str, str], email: str) -> dict[str, str]:
    body = ok(
        client.post(
            "/v1/store/customers/login", headers=key, json={"email": email, "password": PASSWORD}
        )
    )
    return {**key, "Authorization": f"Bearer {body['token']}"}


def organic_beans(client: TestClient, key: dict[str, str]) -> list[int]:
    """Variants of the demo category as a shopper finds them on the store."""
    page = ok(client.get("/v1/store/products?category=organic-coffee-beans&limit=5", headers=key))
    found = [v["id"] for p in page["items"] for v in p["variants"]]
    assert len(found) >= 3, page
    return found


def buy_online(client: TestClient, shopper: dict[str, str], email: str, variant: int) -> Any:
    # Carts made with the customer's token are hers from the start.
    token = new_cart(client, shopper)["token"]
    add(client, shopper, token, variant, 1)
    cart = ship_to(client, shopper, token, TOKYO, email)
    order = ok(pay(client, shopper, token, cart["grand_total"]["amount"]), 201)
    assert order["status"] in ("placed", "confirmed"), order
    return order


def buy_in_store(
    world: DemoWorld, shopper: dict[str, str], variant: int, store: int, staff: dict[str, str]
) -> Any:
    client = world.client
    # The store received a few bags (a staff receipt at the store's location).
    ok(
        client.post(
            "/v1/inventory/adjustments",
            headers=staff,
            json={
                "location_id": store,
                "lines": [{"variant_id": variant, "quantity": 3, "reason": "receipt"}],
            },
        ),
        201,
    )
    token = new_cart(client, shopper)["token"]
    add(client, shopper, token, variant, 1, delivery_mode="pickup", pickup_location_id=store)
    cart = ok(client.get(f"/v1/store/carts/{token}", headers=shopper))
    assert cart["can_checkout"], cart
    tender = {"method": "pos_cash", "amount": cart["grand_total"]["amount"], "location_id": store}
    order = ok(
        client.post(
            f"/v1/store/carts/{token}/checkout", headers=shopper, json={"payments": [tender]}
        ),
        201,
    )
    assert order["status"] in ("placed", "confirmed"), order
    return order


def test_story3_personal_offer_from_unified_history(demo_world: DemoWorld) -> None:
    client = demo_world.client
    web, pos, app = demo_world.key("web-jp"), demo_world.key("pos-shibuya"), demo_world.key("app")
    staff = demo_world.staff()
    shibuya = demo_world.location_id("ST-SHIBUYA")
    beans = organic_beans(client, web)
    tag = uuid.uuid4().hex[:6]
    aiko_email, ben_email = f"aiko-{tag}@example.jp", f"ben-{tag}@example.jp"

    # Aiko agrees to offers by email; Ben never does. Both buy organic beans three times:
    # twice on the web store, once in the Shibuya store.
    register(client, web, aiko_email)
    register(client, web, ben_email)
    aiko_web, aiko_pos = login(client, web, aiko_email), login(client, pos, aiko_email)
    ok(
        client.post(
            "/v1/store/consents",
            headers=aiko_web,
            json={
                "changes": [
                    {"purpose": "marketing_email", "granted": True, "wording_version": "2025-06"}
                ]
            },
        )
    )
    aiko = ok(client.get("/v1/store/customers/me", headers=aiko_web))["id"]
    orders = [
        buy_online(client, aiko_web, aiko_email, beans[0]),
        buy_online(client, aiko_web, aiko_email, beans[1]),
        buy_in_store(demo_world, aiko_pos, beans[2], shibuya, staff),
    ]
    assert len({o["channel_id"] for o in orders}) == 2
    ben_web = login(client, web, ben_email)
    ben = ok(client.get("/v1/store/customers/me", headers=ben_web))["id"]
    for variant in beans[:2]:
        buy_online(client, ben_web, ben_email, variant)
    buy_in_store(demo_world, login(client, pos, ben_email), beans[2], shibuya, staff)

    # Marketing: a 10% template promotion and the rule over the demo category.
    template = ok(
        client.post(
            "/v1/promotions",
            headers=staff,
            json={
                "name": f"Coffee lover thank-you {tag}",
                "status": "active",
                "requires_code": True,
                "action": {"type": "percent_off_order", "percent": "10"},
            },
        ),
        201,
    )["id"]
    rule = ok(
        client.post(
            "/v1/marketing/rules",
            headers=staff,
            json={
                "name": f"Organic beans regulars {tag}",
                "category_code": "organic-coffee-beans",
                "min_purchases": 3,
                "window_days": 90,
                "template_promotion_id": template,
                "valid_days": 30,
            },
        ),
        201,
    )

    preview = ok(client.get(f"/v1/marketing/rules/{rule['id']}/dry-run", headers=staff))
    why = {c["customer_id"]: c for c in preview["candidates"] if c["customer_id"] in (aiko, ben)}
    assert (why[aiko]["outcome"], why[aiko]["purchases"]) == ("issue", 3)
    assert (why[ben]["outcome"], why[ben]["reason"]) == ("skipped", "no_consent")
    assert len(why[aiko]["channel_ids"]) == 2

    run_url = f"/v1/marketing/rules/{rule['id']}/run"
    run = ok(client.post(run_url, headers={**staff, "Idempotency-Key": f"story3-{tag}"}), 201)
    results = {r["customer_id"]: r for r in run["results"]}
    assert results[aiko]["outcome"] == "issued"
    assert (results[ben]["outcome"], results[ben]["reason"]) == ("skipped", "no_consent")

    # One code for her, none for him; one email, in Japanese, with her code in it.
    codes_url = f"/v1/promotions/{template}/codes"
    [code] = ok(client.get(f"{codes_url}?customer_id={aiko}", headers=staff))["items"]
    assert ok(client.get(f"{codes_url}?customer_id={ben}", headers=staff))["items"] == []
    assert (code["max_uses"], code["uses"]) == (1, 0)
    [email] = ok(client.get(f"/v1/marketing/messages?customer_id={aiko}", headers=staff))["items"]
    assert ok(client.get(f"/v1/marketing/messages?customer_id={ben}", headers=staff))["items"] == []
    assert (email["locale"], email["status"], email["recipient"]) == ("ja", "queued", aiko_email)
    assert email["subject"] == "お客様だけの特別オファー：10%オフ"  # noqa: RUF001
    assert code["code"] in email["body_text"] and "クーポンコード" in email["body_text"]

    # Running again never gives her a second code.
    again = ok(client.post(run_url, headers=staff), 201)
    assert {r["customer_id"]: r["reason"] for r in again["results"]}[aiko] == "already_offered"
    assert len(ok(client.get(f"{codes_url}?customer_id={aiko}", headers=staff))["items"]) == 1

    # Her next purchase, in the app: the code gives 10% off once.
    aiko_app = login(client, app, aiko_email)
    token = new_cart(client, aiko_app, currency="JPY")["token"]
    add(client, aiko_app, token, beans[0], 2)
    cart = ok(
        client.post(f"/v1/store/carts/{token}/codes", headers=aiko_app, json={"code": code["code"]})
    )
    assert int(cart["discount_total"]["amount"]) > 0
    assert [p["promotion_id"] for p in cart["promotions"]] == [template]
    cart = ship_to(client, aiko_app, token, TOKYO, aiko_email)
    order = ok(pay(client, aiko_app, token, cart["grand_total"]["amount"]), 201)
    assert order["discount_total"] == cart["discount_total"]["amount"] != "0"

    # A second use is refused, in any channel; so is anyone else using her code.
    second = new_cart(client, aiko_web)["token"]
    add(client, aiko_web, second, beans[1], 1)
    refused = assert_problem(
        client.post(
            f"/v1/store/carts/{second}/codes", headers=aiko_web, json={"code": code["code"]}
        ),
        422,
        "code-not-applicable",
    )
    assert refused["errors"][0]["field"] == "body.code"
    used = ok(client.get(f"{codes_url}?customer_id={aiko}", headers=staff))["items"][0]
    assert used["uses"] == 1
