"""A merge moves what every domain holds for the merged profile (orders, carts, payments
and store credit, support cases, points, consents) and undo moves exactly that back:
nothing is lost or counted twice."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from mercato.carts.models import Cart
from mercato.loyalty import service as loyalty
from mercato.marketing import service as marketing
from mercato.orders.models import Order
from mercato.payments.models import Payment
from mercato.support.models import SupportCase
from tests.commerce.conftest import DemoWorld
from tests.commerce.helpers import TOKYO, add, new_cart, ok, pay, register, ship_to


def _drain(world: DemoWorld) -> None:
    world.client.app.state.dispatcher.drain()  # type: ignore[attr-defined]


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
    _drain(demo_world)
    before_a, before_b = _holdings(demo_world, a), _holdings(demo_world, b)
    assert before_a["emails_ok"] and not before_b["emails_ok"]

    merge = ok(client.post(f"/v1/customers/{a}/merge", headers=staff, json={"from": b}), 201)
    _drain(demo_world)
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

    ok(client.post(f"/v1/customers/merges/{merge['merge_id']}/undo", headers=staff))
    _drain(demo_world)
    assert _holdings(demo_world, a) == before_a
    assert _holdings(demo_world, b) == before_b
    with demo_world.database.read() as session:
        assert loyalty.verify(session) == []
