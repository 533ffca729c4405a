"""A merge moves what every domain holds for the merged profile (orders, carts, payments
and store credit, support cases, points, consents, personal codes, promotion redemptions,
offer claims) and undo moves exactly that back: nothing is lost or counted twice."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from mercato.carts.models import Cart
from mercato.db import utcnow
from mercato.loyalty import service as loyalty
from mercato.marketing import service as marketing
from mercato.marketing.models import OfferClaim, OfferRule
from mercato.orders.models import Order
from mercato.payments.models import Payment
from mercato.promotions.models import PromotionCustomerUsage
from mercato.support.models import SupportCase
from tests.commerce.conftest import DemoWorld
from tests.commerce.helpers import TOKYO, add, new_cart, ok, pay, register, ship_to
from tests.helpers import drain

pytestmark = pytest.mark.slow


def _shopper(world: DemoWorld, channel: str) -> tuple[int, dict[str, str], str]:
    key = world.key(channel)
    email = f"merge-{uuid.uuid4().hex[:8]}@example.jp"
    headers = {**key, **register(world.client, key, email)}
    me = ok(world.client.get("/v1/store/customers/me", headers=headers))
    return int(me["id"]), headers, email


def _buy(world: DemoWorld, headers: dict[str, str], email: str, item: int) -> dict[str, Any]:
    client = world.client
    key = {"X-Channel-Key": headers["X-Channel-Key"]}
    token = new_cart(client, key)["token"]
    add(client, headers, token, item, 1)
    ok(client.post(f"/v1/store/carts/{token}/customer", headers=headers))
    cart = ship_to(client, headers, token, TOKYO, email)
    return dict(
        ok(
            pay(
                client,
                headers,
                token,
                cart["grand_total"]["amount"],
                idempotency_key=f"merge-{token}",
            ),
            201,
        )
    )


def _consent(world: DemoWorld, headers: dict[str, str], granted: bool) -> None:
    ok(
        world.client.post(
            "/v1/store/consents",
            headers=headers,
            json={
                "changes": [
                    {"purpose": "marketing_email", "granted": granted, "wording_version": "v1"}
                ]
            },
        )
    )


def _promotion(world: DemoWorld, item: int, **fields: Any) -> int:
    """A 10% promotion on ``item`` only (so no other test's cart ever gets it)."""
    body = {
        "name": f"merge {uuid.uuid4().hex[:8]}",
        "status": "active",
        "conditions": {"required_items": {"variant_ids": [item]}},
        "action": {"type": "percent_off_items", "percent": "10", "items": {"variant_ids": [item]}},
        **fields,
    }
    return int(ok(world.client.post("/v1/promotions", headers=world.staff(), json=body), 201)["id"])


def _applied(
    world: DemoWorld, channel_id: int, customer_id: int, item: int, code: str | None = None
) -> set[int]:
    """The promotions a cart of ``item`` for this customer would get (with ``code``)."""
    body = {
        "currency": "JPY",
        "channel_id": channel_id,
        "customer_id": customer_id,
        "codes": [] if code is None else [code],
        "lines": [{"line_id": "1", "variant_id": item, "quantity": 1, "unit_price": "1000"}],
    }
    found = ok(world.client.post("/v1/promotions/evaluate", headers=world.staff(), json=body))
    return {int(p["promotion_id"]) for p in found["applied"]}


def _offer_rule(world: DemoWorld, template: int) -> int:
    with world.database.transaction() as session:
        rule = OfferRule(
            name=f"merge {uuid.uuid4().hex[:8]}",
            active=False,
            category_id=0,
            min_purchases=99,
            window_days=1,
            template_promotion_id=template,
            valid_days=1,
        )
        session.add(rule)
        session.flush()
        return int(rule.id)


def _claims(world: DemoWorld, rule: int) -> dict[int, Any]:
    with world.database.read() as session:
        rows = session.scalars(select(OfferClaim).where(OfferClaim.rule_id == rule)).all()
        return {c.customer_id: (c.issued_at, c.run_id) for c in rows}


def _holdings(world: DemoWorld, customer_id: int) -> dict[str, Any]:
    staff = world.staff()
    credit = ok(world.client.get(f"/v1/store-credit/{customer_id}", headers=staff))
    with world.database.read() as session:
        return {
            "orders": sorted(
                session.scalars(select(Order.id).where(Order.customer_id == customer_id))
            ),
            "carts": sorted(
                session.scalars(select(Cart.id).where(Cart.customer_id == customer_id))
            ),
            "payments": sorted(
                session.scalars(select(Payment.id).where(Payment.customer_id == customer_id))
            ),
            "cases": sorted(
                session.scalars(
                    select(SupportCase.id).where(SupportCase.customer_id == customer_id)
                )
            ),
            "points": loyalty.balance_of(session, customer_id),
            "credit": {a["currency"]: a["balance"] for a in credit["accounts"]},
            "emails_ok": marketing.has_consent(session, customer_id, "marketing_email"),
        }


def test_merge_moves_every_domain_and_undo_moves_it_back(demo_world: DemoWorld) -> None:
    client, staff = demo_world.client, demo_world.staff()
    item = demo_world.new_product({"WH-TYO": 10}, {"JP": {"JPY": "1500"}})

    a, a_headers, a_email = _shopper(demo_world, "web-jp")
    _consent(demo_world, a_headers, True)
    _buy(demo_world, a_headers, a_email, item)
    b, b_app, b_email = _shopper(demo_world, "app")
    b_headers = {**b_app, "X-Channel-Key": demo_world.key("web-jp")["X-Channel-Key"]}
    _buy(demo_world, b_headers, b_email, item)
    # B used a once-per-customer promotion (before her open cart, which a later checkout
    # of hers would absorb).
    once_item = demo_world.new_product({"WH-TYO": 10}, {"JP": {"JPY": "1000"}})
    once = _promotion(demo_world, once_item, max_uses_per_customer=1)
    web = _buy(demo_world, b_headers, b_email, once_item)["channel_id"]
    # B also has an open cart, a support case, store credit, points and, later than A's
    # grant, a withdrawal of marketing email.
    open_cart = new_cart(client, demo_world.key("web-jp"))["token"]
    add(client, b_headers, open_cart, item, 2)
    ok(client.post(f"/v1/store/carts/{open_cart}/customer", headers=b_headers))
    ok(
        client.post(
            "/v1/store/support/cases",
            headers=b_app,
            json={"subject": "Gift wrapping", "message": {"body": "Can you wrap it?"}},
        ),
        201,
    )
    for customer, points in ((a, 100), (b, 40)):
        ok(
            client.post(
                f"/v1/loyalty/accounts/{customer}/adjustments",
                headers={**staff, "Idempotency-Key": f"merge-points-{customer}"},
                json={"points": points, "reason": "welcome"},
            ),
            201,
        )
    for customer, amount in ((a, "500"), (b, "1200")):
        ok(
            client.post(
                f"/v1/store-credit/{customer}/adjustments",
                headers=staff,
                json={"currency": "JPY", "amount": amount, "reason": "goodwill"},
            ),
            201,
        )
    _consent(demo_world, b_headers, False)
    # B holds a personal code; a rule gave A an offer, and B one later.
    code_item = demo_world.new_product({"WH-TYO": 10}, {"JP": {"JPY": "1000"}})
    template = _promotion(demo_world, code_item, requires_code=True)
    code = ok(
        client.post(
            f"/v1/promotions/{template}/personal-codes",
            headers=staff,
            json={"customer_id": b},
        ),
        201,
    )["code"]
    rule = _offer_rule(demo_world, template)
    with demo_world.database.transaction() as session:
        now = utcnow()
        session.add(
            OfferClaim(rule_id=rule, customer_id=a, issued_at=now - timedelta(days=3), run_id=1)
        )
        session.add(OfferClaim(rule_id=rule, customer_id=b, issued_at=now, run_id=2))
    drain(demo_world)
    before_a, before_b = _holdings(demo_world, a), _holdings(demo_world, b)
    assert before_a["emails_ok"] and not before_b["emails_ok"]
    assert once in _applied(demo_world, web, a, once_item)
    assert once not in _applied(demo_world, web, b, once_item)
    assert template not in _applied(demo_world, web, a, code_item, code)
    assert template in _applied(demo_world, web, b, code_item, code)
    claims = _claims(demo_world, rule)

    merge = ok(client.post(f"/v1/customers/{a}/merge", headers=staff, json={"from": b}), 201)
    drain(demo_world)
    merged_a, merged_b = _holdings(demo_world, a), _holdings(demo_world, b)
    for name in ("orders", "carts", "payments", "cases"):
        assert merged_a[name] == sorted(before_a[name] + before_b[name]), name
        assert merged_b[name] == [], name
    assert (merged_a["points"], merged_b["points"]) == (140, 0)
    assert Decimal(merged_a["credit"]["JPY"]) == Decimal("1700")
    assert Decimal(merged_b["credit"]["JPY"]) == Decimal("0")
    # One person, one history: her latest decision (the withdrawal, made on B) counts.
    assert merged_a["emails_ok"] is False
    with demo_world.database.read() as session:
        assert loyalty.verify(session) == []
    # B's personal code is now A's; the promotion B used once counts as used by A.
    assert template in _applied(demo_world, web, a, code_item, code)
    assert once not in _applied(demo_world, web, a, once_item)
    assert _usage(demo_world, once) == {a: 1}
    # One offer claim per rule for the person: B's, the later one.
    assert _claims(demo_world, rule) == {a: claims[b]}

    ok(client.post(f"/v1/customers/merges/{merge['merge_id']}/undo", headers=staff))
    drain(demo_world)
    assert _holdings(demo_world, a) == before_a
    assert _holdings(demo_world, b) == before_b
    with demo_world.database.read() as session:
        assert loyalty.verify(session) == []
    assert once in _applied(demo_world, web, a, once_item)
    assert once not in _applied(demo_world, web, b, once_item)
    assert template not in _applied(demo_world, web, a, code_item, code)
    assert template in _applied(demo_world, web, b, code_item, code)
    assert _usage(demo_world, once) == {b: 1}
    assert _claims(demo_world, rule) == claims


def _usage(world: DemoWorld, promotion_id: int) -> dict[int, int]:
    with world.database.read() as session:
        rows = session.scalars(
            select(PromotionCustomerUsage).where(
                PromotionCustomerUsage.promotion_id == promotion_id,
                PromotionCustomerUsage.uses > 0,
            )
        )
        return {int(r.customer_id): r.uses for r in rows}
