"""Checkouts that never finish: 3-D Secure abandoned, a crash after step 1, and the job that
compensates them once MERCATO_CHECKOUT_TIMEOUT_SECONDS has passed."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from mercato.carts.models import Cart
from mercato.channels.models import Channel
from mercato.cli import app
from mercato.db import utcnow
from mercato.events import OutboxEvent
from mercato.flows import checkout
from mercato.inventory import service as inventory
from mercato.orders import service as orders
from mercato.orders.models import Order, OrderTransition
from mercato.payments.models import GatewayCharge, Payment
from mercato.settings import get_settings
from tests.commerce.conftest import SYSTEM, DemoWorld
from tests.commerce.helpers import TOKYO, add, card_token, new_cart, ok, ship_to
from tests.conftest import assert_problem


def _available(world: DemoWorld, variant_id: int) -> int:
    with world.database.read() as session:
        return inventory.availability(session, [variant_id], [world.location_id("WH-TYO")])[
            variant_id
        ]


def _gift_card(world: DemoWorld, amount: str) -> str:
    card = ok(
        world.client.post(
            "/v1/gift-cards",
            headers={**world.staff(), "Idempotency-Key": str(uuid.uuid4())},
            json={"currency": "JPY", "amount": amount},
        ),
        201,
    )
    return str(card["code"])


def _balance(world: DemoWorld, code: str) -> Decimal:
    body = ok(
        world.client.post(
            "/v1/store/gift-cards/balance", headers=world.key("web-jp"), json={"code": code}
        )
    )
    return Decimal(body["balance"])


def _one_use_code(world: DemoWorld) -> str:
    staff = world.staff()
    promotion = ok(
        world.client.post(
            "/v1/promotions",
            headers=staff,
            json={
                "name": f"Once {uuid.uuid4().hex[:6]}",
                "status": "active",
                "requires_code": True,
                "action": {"type": "percent_off_items", "percent": "10"},
            },
        ),
        201,
    )
    code = f"ONCE{uuid.uuid4().hex[:8].upper()}"
    ok(
        world.client.post(
            f"/v1/promotions/{promotion['id']}/codes",
            headers=staff,
            json={"code": code, "max_uses": 1},
        ),
        201,
    )
    return code


def _cart_with_code(world: DemoWorld, item: int, code: str) -> dict[str, Any]:
    key = world.key("web-jp")
    token = new_cart(world.client, key)["token"]
    add(world.client, key, token, item, 1)
    ship_to(world.client, key, token, TOKYO)
    cart = ok(world.client.post(f"/v1/store/carts/{token}/codes", headers=key, json={"code": code}))
    assert cart["promotions"] and cart["promotions"][0]["code"] == code, cart
    return cart


def _backdate(world: DemoWorld, number: str, minutes: int) -> None:
    with world.database.transaction() as session:
        session.execute(
            update(Order)
            .where(Order.number == number)
            .values(created_at=utcnow() - timedelta(minutes=minutes))
        )


def _status(world: DemoWorld, number: str) -> str:
    with world.database.read() as session:
        return str(session.scalar(select(Order.status).where(Order.number == number)))


def _split_body(world: DemoWorld, cart: dict[str, Any], gift: str, card: str) -> dict[str, Any]:
    total = Decimal(cart["grand_total"]["amount"])
    return {
        "payments": [
            {"method": "gift_card", "amount": "500", "gift_card_code": gift},
            {
                "method": "test_gateway",
                "amount": str(total - 500),
                "token": card_token(world.client, world.key("web-jp"), card),
            },
        ]
    }


def _waiting_for_3ds(world: DemoWorld, item: int) -> tuple[str, dict[str, Any]]:
    """A one-item checkout whose card asks for 3-D Secure: the cart token and the 202."""
    client, key = world.client, world.key("web-jp")
    token = new_cart(client, key)["token"]
    add(client, key, token, item, 1)
    cart = ship_to(client, key, token, TOKYO)
    tender = {
        "method": "test_gateway",
        "amount": cart["grand_total"]["amount"],
        "token": card_token(client, key, "3ds"),
    }
    pending = ok(
        client.post(
            f"/v1/store/carts/{token}/checkout",
            headers={**key, "Idempotency-Key": str(uuid.uuid4())},
            json={"payments": [tender]},
        ),
        202,
    )
    return str(token), pending


def _authenticate(world: DemoWorld, action: dict[str, Any]) -> dict[str, Any]:
    """The shopper passes the bank's 3-D Secure step for this payment."""
    return ok(
        world.client.post(
            f"/v1/store/payments/{action['payment_id']}/complete-action",
            headers=world.key("web-jp"),
            json={"client_secret": action["client_secret"]},
        )
    )


def test_the_timeout_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert checkout.checkout_timeout() == timedelta(minutes=30)
    monkeypatch.setenv("MERCATO_CHECKOUT_TIMEOUT_SECONDS", "600")
    get_settings.cache_clear()
    try:
        assert checkout.checkout_timeout() == timedelta(minutes=10)
    finally:
        monkeypatch.delenv("MERCATO_CHECKOUT_TIMEOUT_SECONDS")
        get_settings.cache_clear()


@pytest.mark.slow
def test_an_abandoned_three_d_secure_checkout_gives_everything_back(
    demo_world: DemoWorld,
) -> None:
    client, key = demo_world.client, demo_world.key("web-jp")
    item = demo_world.new_product({"WH-TYO": 2}, {"JP": {"JPY": "3000"}})
    code = _one_use_code(demo_world)
    gift = _gift_card(demo_world, "500")
    cart = _cart_with_code(demo_world, item, code)
    token = cart["token"]
    body = _split_body(demo_world, cart, gift, "3ds")
    headers = {**key, "Idempotency-Key": str(uuid.uuid4())}
    pending = client.post(f"/v1/store/carts/{token}/checkout", headers=headers, json=body)
    assert pending.status_code == 202, pending.text
    number = pending.json()["number"]

    # The shopper walks away: everything stays taken and the cart is locked.
    assert _available(demo_world, item) == 1
    assert _balance(demo_world, gift) == 0
    assert_problem(
        client.post(
            f"/v1/store/carts/{token}/lines", headers=key, json={"variant_id": item, "quantity": 1}
        ),
        409,
        "cart-closed",
    )
    # Younger than the timeout: left alone.
    assert number not in checkout.abandon_stale_checkouts(demo_world.database)
    assert _status(demo_world, number) == "pending_payment"

    _backdate(demo_world, number, 31)
    assert number in checkout.abandon_stale_checkouts(demo_world.database)
    assert number not in checkout.abandon_stale_checkouts(demo_world.database)  # once only

    assert _status(demo_world, number) == "payment_failed"
    assert _available(demo_world, item) == 2
    assert _balance(demo_world, gift) == 500
    with demo_world.database.read() as session:
        order_id = session.scalar(select(Order.id).where(Order.number == number))
        reason = session.scalars(
            select(OrderTransition.reason)
            .where(OrderTransition.order_id == order_id)
            .order_by(OrderTransition.id.desc())
        ).first()
        payments = {
            p.method: p for p in session.scalars(select(Payment).where(Payment.reference == number))
        }
        charge = session.get(GatewayCharge, payments["test_gateway"].provider_reference)
        statuses = {p.status for p in payments.values()}
        charge_status = None if charge is None else charge.status
        events = session.scalars(
            select(OutboxEvent.type).where(
                OutboxEvent.aggregate_type == "order", OutboxEvent.aggregate_id == str(order_id)
            )
        ).all()
    assert reason is not None and reason.startswith("checkout abandoned")
    assert statuses == {"voided"}
    assert charge_status == "voided"
    assert "checkout.abandoned" in events and "order.payment_failed" in events

    # The shopper comes back from the bank afterwards: nothing is placed.
    assert_problem(
        client.post(f"/v1/store/orders/{number}/complete", headers=key), 409, "checkout-abandoned"
    )
    # The cart is open again and the one-use code works again: the same key replays the
    # abandonment, a new key checks out with the code, the gift card and a good card.
    reopened = ok(client.get(f"/v1/store/carts/{token}", headers=key))
    assert reopened["status"] == "open" and reopened["can_checkout"], reopened
    assert reopened["promotions"][0]["code"] == code
    replay = client.post(f"/v1/store/carts/{token}/checkout", headers=headers, json=body)
    assert_problem(replay, 409, "checkout-abandoned")
    assert replay.json()["order_number"] == number
    paid = client.post(
        f"/v1/store/carts/{token}/checkout",
        headers={**key, "Idempotency-Key": str(uuid.uuid4())},
        json=_split_body(demo_world, reopened, gift, "ok"),
    )
    placed = ok(paid, 201)
    assert placed["promotions"][0]["code"] == code
    assert _balance(demo_world, gift) == 0 and _available(demo_world, item) == 1


def test_a_completed_checkout_is_not_abandoned(demo_world: DemoWorld) -> None:
    client, key = demo_world.client, demo_world.key("web-jp")
    item = demo_world.new_product({"WH-TYO": 3}, {"JP": {"JPY": "2000"}})
    _, pending = _waiting_for_3ds(demo_world, item)
    action = pending["payments"][0]
    _authenticate(demo_world, action)
    ok(client.post(f"/v1/store/orders/{pending['number']}/complete", headers=key), 201)
    _backdate(demo_world, pending["number"], 120)
    assert pending["number"] not in checkout.abandon_stale_checkouts(demo_world.database)
    assert _status(demo_world, pending["number"]) == "confirmed"
    assert _available(demo_world, item) == 2


def test_authenticated_but_never_completed_is_voided(demo_world: DemoWorld) -> None:
    """The bank said yes but the shopper never came back to /complete: the job wins, the
    authorisation is released, and a late /complete places nothing."""
    client, key = demo_world.client, demo_world.key("web-jp")
    item = demo_world.new_product({"WH-TYO": 1}, {"JP": {"JPY": "2500"}})
    _, pending = _waiting_for_3ds(demo_world, item)
    action = pending["payments"][0]
    authorised = _authenticate(demo_world, action)
    assert authorised["status"] == "authorized"
    _backdate(demo_world, pending["number"], 45)
    assert pending["number"] in checkout.abandon_stale_checkouts(demo_world.database)
    with demo_world.database.read() as session:
        payment = session.get(Payment, action["payment_id"])
        assert payment is not None and payment.status == "voided"
        charge = session.get(GatewayCharge, payment.provider_reference)
        assert charge is not None and charge.status == "voided"
    assert_problem(
        client.post(f"/v1/store/orders/{pending['number']}/complete", headers=key),
        409,
        "checkout-abandoned",
    )
    assert _available(demo_world, item) == 1


def _cut_off_after_step_one(
    world: DemoWorld, monkeypatch: pytest.MonkeyPatch, item: int, quantity: int
) -> tuple[str, dict[str, Any], dict[str, str]]:
    """A checkout whose process dies after step 1 committed (order, holds, payments), before
    the provider is asked; returns the cart token, the body and the headers it was sent with."""
    client, key = world.client, world.key("web-jp")
    token = new_cart(client, key)["token"]
    add(client, key, token, item, quantity)
    cart = ship_to(client, key, token, TOKYO)
    body: dict[str, Any] = {
        "payments": [
            {
                "method": "test_gateway",
                "amount": cart["grand_total"]["amount"],
                "token": card_token(client, key),
            }
        ]
    }
    headers = {**key, "Idempotency-Key": str(uuid.uuid4())}

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the process died before asking the provider")

    with monkeypatch.context() as patch:
        patch.setattr(checkout.payments, "authorize_pending", crash)
        with pytest.raises(RuntimeError):
            client.post(f"/v1/store/carts/{token}/checkout", headers=headers, json=body)
    return str(token), body, headers


def test_a_checkout_cut_off_after_step_one_resumes_with_its_key(
    demo_world: DemoWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process dies after the order, holds and payments were committed: a retry with the
    same Idempotency-Key and body finishes that checkout instead of starting another."""
    client, key = demo_world.client, demo_world.key("web-jp")
    item = demo_world.new_product({"WH-TYO": 4}, {"JP": {"JPY": "1800"}})
    token, body, headers = _cut_off_after_step_one(demo_world, monkeypatch, item, 2)
    assert _available(demo_world, item) == 2  # step 1 committed: held
    assert_problem(
        client.post(
            f"/v1/store/carts/{token}/checkout",
            headers={**key, "Idempotency-Key": str(uuid.uuid4())},
            json=body,
        ),
        409,
        "cart-checkout-in-progress",
    )
    resumed = ok(client.post(f"/v1/store/carts/{token}/checkout", headers=headers, json=body), 201)
    assert resumed["status"] == "confirmed"
    replayed = ok(client.post(f"/v1/store/carts/{token}/checkout", headers=headers, json=body), 201)
    assert replayed == resumed
    with demo_world.database.read() as session:
        numbers = session.scalars(
            select(Order.number).where(
                Order.cart_id == select(Cart.id).where(Cart.token == token).scalar_subquery()
            )
        ).all()
        taken = session.scalars(
            select(Payment.status).where(Payment.reference == resumed["number"])
        ).all()
    assert numbers == [resumed["number"]]
    assert list(taken) == ["authorized"]
    assert _available(demo_world, item) == 2
    assert ok(client.get(f"/v1/store/carts/{token}", headers=key))["status"] == "completed"


def test_a_checkout_cut_off_and_never_retried_is_abandoned(
    demo_world: DemoWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, key = demo_world.client, demo_world.key("web-jp")
    item = demo_world.new_product({"WH-TYO": 1}, {"JP": {"JPY": "1500"}})
    token, body, headers = _cut_off_after_step_one(demo_world, monkeypatch, item, 1)
    with demo_world.database.read() as session:
        order = session.scalar(
            select(Order).where(
                Order.cart_id == select(Cart.id).where(Cart.token == token).scalar_subquery()
            )
        )
        assert order is not None
        number = order.number
    _backdate(demo_world, number, 60)
    # The application's periodic job does it (the dispatcher runs it every minute).
    demo_world.client.app.state.dispatcher.run_periodic(force=True)  # type: ignore[attr-defined]
    assert _status(demo_world, number) == "payment_failed"
    with demo_world.database.read() as session:
        statuses = session.scalars(select(Payment.status).where(Payment.reference == number)).all()
    assert list(statuses) == ["voided"]  # never authorised: nothing left at the gateway
    assert _available(demo_world, item) == 1
    # The cut-off attempt's key now answers with the abandonment, not "in progress".
    assert_problem(
        client.post(f"/v1/store/carts/{token}/checkout", headers=headers, json=body),
        409,
        "checkout-abandoned",
    )
    again = {
        "payments": [{**body["payments"][0], "token": card_token(client, key)}],
    }
    placed = client.post(
        f"/v1/store/carts/{token}/checkout",
        headers={**key, "Idempotency-Key": str(uuid.uuid4())},
        json=again,
    )
    assert ok(placed, 201)["status"] == "confirmed"
    assert _available(demo_world, item) == 0


def test_orders_waiting_for_payment_outside_checkout_are_left_alone(
    demo_world: DemoWorld,
) -> None:
    """A return's replacement order also waits in pending_payment, without a cart: the
    returns process owns it, not the abandoned-checkout job."""
    item = demo_world.new_product({"WH-TYO": 1}, {"JP": {"JPY": "1000"}})
    amount = Decimal(1000)
    line = orders.LineDraft(
        item,
        "X",
        "Exchange item",
        "standard",
        1,
        amount,
        amount,
        Decimal(0),
        Decimal(91),
        Decimal("0.10"),
        amount,
    )
    with demo_world.database.transaction() as session:
        channel_id = session.scalar(select(Channel.id).where(Channel.code == "web-jp"))
        assert channel_id is not None
        order = orders.create_order(
            session,
            SYSTEM,
            orders.OrderDraft(
                channel_id=channel_id,
                currency="JPY",
                source="exchange",
                lines=[line],
                subtotal=amount,
                discount_total=Decimal(0),
                shipping_total=Decimal(0),
                tax_total=Decimal(91),
                grand_total=amount,
                tax_included=True,
            ),
        )
        number = order.number
    _backdate(demo_world, number, 600)
    assert number not in checkout.abandon_stale_checkouts(demo_world.database)
    assert _status(demo_world, number) == "pending_payment"


def test_the_command_abandons_stale_checkouts(demo_world: DemoWorld) -> None:
    client, key = demo_world.client, demo_world.key("web-jp")
    item = demo_world.new_product({"WH-TYO": 1}, {"JP": {"JPY": "1200"}})
    token, pending = _waiting_for_3ds(demo_world, item)
    _backdate(demo_world, pending["number"], 20)
    url = demo_world.database.engine.url.render_as_string(hide_password=False)
    result = CliRunner().invoke(
        app, ["checkout", "abandon-stale", "--database-url", url, "--older-than", "900"]
    )
    assert result.exit_code == 0, result.output
    assert pending["number"] in json.loads(result.output)["orders"]
    assert _status(demo_world, pending["number"]) == "payment_failed"
    assert ok(client.get(f"/v1/store/carts/{token}", headers=key))["status"] == "open"
