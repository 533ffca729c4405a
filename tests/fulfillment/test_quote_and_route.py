"""The shopper is quoted for the route the order will take, told when routing changes it,
and shown the import duty and tax of a cross-border parcel (paid with the order or due on
delivery, as the channel is set up)."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from mercato.marketing.models import Message
from mercato.orders.models import OrderNote
from mercato.payments.models import Payment
from tests.commerce.conftest import DemoWorld
from tests.commerce.helpers import card_token, new_cart, ok
from tests.fulfillment.conftest import NEW_YORK, drain, item, order_of, staff, tasks

# Only the Tokyo warehouse holds it: a parcel from Tokyo to New York. Apparel (HS 61) of
# 900 USD: above the US duty threshold of the demo's customs rules (16 %).
PRICE = {"GLOBAL": {"USD": "900.00"}}


def _cart(
    world: DemoWorld, channel: str, variant: int, shopper: dict[str, str] | None = None
) -> tuple[str, dict[str, Any]]:
    client, key = world.client, {**world.key(channel), **(shopper or {})}
    token = new_cart(client, key, currency="USD")["token"]
    ok(
        client.post(
            f"/v1/store/carts/{token}/lines",
            headers=key,
            json={"variant_id": variant, "quantity": 1},
        )
    )
    patch: dict[str, Any] = {"shipping_address": NEW_YORK}
    if shopper is None:
        patch["email"] = f"q-{uuid.uuid4().hex[:8]}@example.com"
    cart = ok(client.patch(f"/v1/store/carts/{token}", headers=key, json=patch))
    return token, cart


def _checkout(
    world: DemoWorld,
    channel: str,
    token: str,
    option_id: str,
    shopper: dict[str, str] | None = None,
) -> dict[str, Any]:
    client, key = world.client, {**world.key(channel), **(shopper or {})}
    cart = ok(
        client.patch(
            f"/v1/store/carts/{token}", headers=key, json={"shipping_option_id": option_id}
        )
    )
    assert cart["can_checkout"], cart
    tender = {
        "method": "test_gateway",
        "amount": cart["grand_total"]["amount"],
        "token": card_token(client, world.key(channel)),
    }
    order: dict[str, Any] = ok(
        client.post(
            f"/v1/store/carts/{token}/checkout",
            headers={**key, "Idempotency-Key": str(uuid.uuid4())},
            json={"payments": [tender]},
        ),
        201,
    )
    assert Decimal(order["grand_total"]) == Decimal(cart["grand_total"]["amount"])
    drain(world)
    return order


def _ship(world: DemoWorld, order_id: int) -> dict[str, Any]:
    [task] = [t for t in tasks(world, order_id, "ship") if t["status"] == "open"]
    shipped = ok(
        world.client.post(
            f"/v1/fulfillment/orders/{task['id']}/ship", headers=staff(world), json={}
        )
    )
    [shipment] = shipped["shipments"]
    return {**shipment, "location_id": task["location_id"]}


def _lines_total(cart: dict[str, Any]) -> Decimal:
    goods = sum(Decimal(x["total"]["amount"]) for x in cart["lines"])
    return goods + Decimal(cart["shipping_total"]["amount"])


def test_a_tokyo_parcel_to_new_york_is_quoted_from_tokyo_with_duties_paid(
    demo_world: DemoWorld,
) -> None:
    variant = item(demo_world, {"WH-TYO": 3}, PRICE)
    token, cart = _cart(demo_world, "app", variant)
    # The app ships from the US too, but this parcel will leave Tokyo: only international
    # carriers are offered, from Japan, with their international transit times.
    options = cart["shipping_options"]
    assert options and {o["origin_country"] for o in options} == {"JP"}
    assert {o["carrier"] for o in options} <= {"intl-economy", "intl-express"}
    assert all(o["min_days"] >= 2 for o in options)
    # Duties and import taxes are shown, and on the app they are paid with the order.
    charges = cart["import_charges"]
    assert (charges["origin_country"], charges["destination_country"]) == ("JP", "US")
    assert charges["payment"] == "with_order" and charges["estimated"] is True
    assert Decimal(charges["duty"]["amount"]) == Decimal("144.00")  # 16 % of 900
    assert Decimal(charges["total"]["amount"]) == Decimal("144.00")
    chosen = options[0]
    cart = ok(
        demo_world.client.patch(
            f"/v1/store/carts/{token}",
            headers=demo_world.key("app"),
            json={"shipping_option_id": chosen["option_id"]},
        )
    )
    # The grand total charged at checkout includes them.
    assert Decimal(cart["grand_total"]["amount"]) == _lines_total(cart) + Decimal("144.00")
    order = _checkout(demo_world, "app", token, chosen["option_id"])
    assert order["import_charges"]["prepaid"] is True
    assert Decimal(order["import_charges"]["total"]) == Decimal("144.00")
    assert order["shipping_option"]["origin_country"] == "JP"
    # The parcel leaves as quoted: from Tokyo, with the carrier the shopper chose.
    shipment = _ship(demo_world, order["id"])
    assert shipment["location_id"] == demo_world.location_id("WH-TYO")
    assert (shipment["carrier_code"], shipment["service_code"]) == (
        chosen["carrier"],
        chosen["service"],
    )
    assert order_of(demo_world, order["id"])["shipping_changes"] == []
    # Shipped whole: everything paid is captured, the duties with it.
    drain(demo_world)
    with demo_world.database.read() as session:
        captured = session.scalars(
            select(Payment.captured_minor).where(Payment.reference == order["number"])
        ).all()
    assert Decimal(sum(captured)) / 100 == Decimal(order["grand_total"])


def test_duties_due_on_delivery_are_shown_but_not_charged(demo_world: DemoWorld) -> None:
    variant = item(demo_world, {"WH-TYO": 3}, PRICE)
    token, cart = _cart(demo_world, "call-centre", variant)
    charges = cart["import_charges"]
    assert charges["payment"] == "on_delivery"
    assert Decimal(charges["total"]["amount"]) == Decimal("144.00")
    option = cart["shipping_options"][0]
    cart = ok(
        demo_world.client.patch(
            f"/v1/store/carts/{token}",
            headers=demo_world.key("call-centre"),
            json={"shipping_option_id": option["option_id"]},
        )
    )
    assert Decimal(cart["grand_total"]["amount"]) == _lines_total(cart)
    order = _checkout(demo_world, "call-centre", token, option["option_id"])
    assert order["import_charges"]["prepaid"] is False
    # A domestic parcel has none.
    domestic = item(demo_world, {"WH-NJ": 3}, PRICE)
    _, cart = _cart(demo_world, "call-centre", domestic)
    assert cart["import_charges"] is None
    assert {o["origin_country"] for o in cart["shipping_options"]} == {"US"}


@pytest.mark.slow
def test_a_carrier_swap_after_routing_is_shown_to_the_shopper(demo_world: DemoWorld) -> None:
    client = demo_world.client
    variant = item(demo_world, {"WH-NJ": 1, "WH-TYO": 3}, PRICE)
    email = f"swap-{uuid.uuid4().hex[:8]}@example.com"
    registered = ok(
        client.post(
            "/v1/store/customers",
            headers=demo_world.key("app"),
            json={"email": email, "password": "a long enough secret"},
        ),
        201,
    )
    shopper = {"Authorization": f"Bearer {registered['token']}"}
    token, cart = _cart(demo_world, "app", variant, shopper)
    # In stock in New Jersey: quoted domestic, no duties.
    ground = next(o for o in cart["shipping_options"] if o["carrier"] == "us-parcel")
    assert ground["origin_country"] == "US" and cart["import_charges"] is None
    order = _checkout(demo_world, "app", token, ground["option_id"], shopper)
    [task] = tasks(demo_world, order["id"], "ship")
    assert task["location_id"] == demo_world.location_id("WH-NJ")
    # New Jersey cannot send it after all: routing moves it to Tokyo.
    line_id = order_of(demo_world, order["id"])["lines"][0]["id"]
    ok(
        client.post(
            f"/v1/fulfillment/orders/{task['id']}/reject",
            headers=staff(demo_world),
            json={"order_line_ids": [line_id], "reason": "damaged in the warehouse"},
        )
    )
    drain(demo_world)
    # The shopper's order page says how it ships now and what was quoted.
    mine = {**demo_world.key("app"), **shopper}
    page = ok(client.get(f"/v1/store/orders/{order['number']}", headers=mine))
    assert page["shipping_changes"] == order_of(demo_world, order["id"])["shipping_changes"]
    [change] = page["shipping_changes"]
    assert change["origin_country"] == "JP"
    assert change["carrier"] in ("intl-economy", "intl-express")
    assert change["min_days"] is not None and change["max_days"] is not None
    assert change["quoted"]["carrier"] == "us-parcel"
    assert change["quoted"]["origin_country"] == "US"
    # The shopper got a message through the notifier's outbox.
    with demo_world.database.read() as session:
        messages = session.execute(
            select(Message.recipient, Message.subject, Message.body_text).where(
                Message.reference_type == "order",
                Message.reference_id == str(order["id"]),
                Message.template == "shipping_changed",
            )
        ).all()
    [(recipient, subject, body)] = messages
    assert recipient == email
    assert "Japan" in body and order["number"] in subject
    # The parcel leaves with the carrier the shopper was told of, and only once told.
    shipment = _ship(demo_world, order["id"])
    assert shipment["location_id"] == demo_world.location_id("WH-TYO")
    assert shipment["carrier_code"] == change["carrier"]
    assert len(order_of(demo_world, order["id"])["shipping_changes"]) == 1
    # Why another carrier ships it is kept on the order for staff as well.
    with demo_world.database.read() as session:
        notes = session.scalars(
            select(OrderNote.body).where(OrderNote.order_id == order["id"])
        ).all()
    assert any("us-parcel" in n and change["carrier"] in n for n in notes)


def test_the_order_page_is_only_for_its_shopper(demo_world: DemoWorld) -> None:
    client, key = demo_world.client, demo_world.key("app")
    assert client.get("/v1/store/orders/MAAAA-AAAA", headers=key).status_code == 401
    other = ok(
        client.post(
            "/v1/store/customers",
            headers=key,
            json={"email": f"o-{uuid.uuid4().hex[:8]}@example.com", "password": "a long secret!"},
        ),
        201,
    )
    variant = item(demo_world, {"WH-NJ": 1}, PRICE)
    token, cart = _cart(demo_world, "app", variant)
    order = _checkout(demo_world, "app", token, cart["shipping_options"][0]["option_id"])
    # A guest's order, or anyone else's, does not exist for a signed-in shopper.
    signed_in = {**key, "Authorization": f"Bearer {other['token']}"}
    response = client.get(f"/v1/store/orders/{order['number']}", headers=signed_in)
    assert response.status_code == 404
