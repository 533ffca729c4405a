"""Every way of paying has a schema in the OpenAPI document, and a bad tender is a 422
naming its field that changes nothing."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from mercato.channels import service as channels
from tests.commerce.conftest import DemoWorld
from tests.commerce.helpers import TOKYO, add, card_token, new_cart, ok, ship_to
from tests.conftest import assert_problem
from tests.demo_world import staff_login

TENDERS = {
    "test_gateway": "TestGatewayTender",
    "cash_on_delivery": "CashOnDeliveryTender",
    "pos_cash": "PosCashTender",
    "pos_card": "PosCardTender",
    "gift_card": "GiftCardTender",
    "store_credit": "StoreCreditTender",
    "loyalty_points": "LoyaltyPointsTender",
}


def _tender_refs(schema: dict[str, Any]) -> list[str]:
    return [choice["$ref"].rsplit("/", 1)[1] for choice in schema["items"]["oneOf"]]


@pytest.mark.slow
def test_the_document_describes_every_tender(demo_world: DemoWorld) -> None:
    doc = ok(demo_world.client.get("/openapi.json"))
    schemas = doc["components"]["schemas"]
    for body in ("CheckoutIn", "StaffOrderIn"):
        refs = _tender_refs(schemas[body]["properties"]["payments"])
        assert set(refs) == {*TENDERS.values(), "ExtensionTender"}, body
    for method, name in TENDERS.items():
        tender = schemas[name]
        assert tender["properties"]["method"]["const"] == method
        assert tender["additionalProperties"] is False
    assert "token" in schemas["TestGatewayTender"]["required"]
    assert "gift_card_code" in schemas["GiftCardTender"]["required"]
    assert "approval_code" in schemas["PosCardTender"]["required"]
    points = schemas["LoyaltyPointsTender"]
    assert "point" in points["description"] and points["required"] == ["method", "amount"]
    other = schemas["ExtensionTender"]["properties"]["method"]
    assert set(other["not"]["enum"]) == {*TENDERS, "paid_elsewhere"}
    address = schemas["StaffOrderIn"]["properties"]["shipping_address"]["anyOf"][0]["$ref"]
    assert address.endswith("AddressIn")
    refund = schemas["mercato__returns__schemas__RefundIn"]["properties"]["payments"]
    assert set(_tender_refs(refund)) == {*TENDERS.values(), "ExtensionTender"}


def _ready_cart(world: DemoWorld) -> tuple[str, str]:
    key = world.key("web-jp")
    item = world.new_product({"WH-TYO": 5}, {"JP": {"JPY": "800"}})
    token = new_cart(world.client, key)["token"]
    add(world.client, key, token, item, 1)
    return token, ship_to(world.client, key, token, TOKYO)["grand_total"]["amount"]


def test_bad_tenders_are_refused_naming_the_field(demo_world: DemoWorld) -> None:
    client, key = demo_world.client, demo_world.key("web-jp")
    token, total = _ready_cart(demo_world)
    bad = [
        ({"amount": total}, "body.payments[0].method"),
        ({"method": "test_gateway", "amount": total}, "body.payments[0].token"),
        ({"method": "gift_card", "amount": total}, "body.payments[0].gift_card_code"),
        (
            {"method": "pos_card", "amount": total, "approval_code": "no!"},
            "body.payments[0].approval_code",
        ),
        ({"method": "loyalty_points", "amount": total, "token": "x"}, "body.payments[0].token"),
        ({"method": "loyalty_points", "amount": "0"}, "body.payments[0].amount"),
        ({"method": "store_credit", "amount": total, "colour": "red"}, "body.payments[0].colour"),
        ({"method": "bitcoin", "amount": total}, "body.payments[0].method"),
        ({"method": ["test_gateway"], "amount": total}, "body.payments[0].method"),
        # Money taken outside Mercato is recorded for imported orders, never a way to pay.
        ({"method": "paid_elsewhere", "amount": total}, "body.payments[0].method"),
    ]
    for tender, field in bad:
        problem = assert_problem(
            client.post(
                f"/v1/store/carts/{token}/checkout",
                headers={**key, "Idempotency-Key": str(uuid.uuid4())},
                json={"payments": [tender]},
            ),
            422,
        )
        assert [e["field"] for e in problem["errors"]] == [field], (tender, problem)
    cart = ok(client.get(f"/v1/store/carts/{token}", headers=key))
    assert cart["status"] == "open"


def test_tenders_written_as_before_still_pay(demo_world: DemoWorld) -> None:
    """Every field of every tender, the unused ones null, as clients sent them before."""
    client, key = demo_world.client, demo_world.key("web-jp")
    token, total = _ready_cart(demo_world)
    tender = {
        "method": "test_gateway",
        "amount": total,
        "token": card_token(client, key),
        "gift_card_code": None,
        "approval_code": None,
        "location_id": None,
    }
    paid = client.post(
        f"/v1/store/carts/{token}/checkout",
        headers={**key, "Idempotency-Key": str(uuid.uuid4())},
        json={"payments": [tender]},
    )
    assert paid.status_code == 201, paid.text


def test_a_staff_order_names_the_bad_tender(demo_world: DemoWorld) -> None:
    client, staff = demo_world.client, staff_login(demo_world)
    item = demo_world.new_product({"WH-TYO": 5}, {"JP": {"JPY": "800"}})
    with demo_world.database.read() as session:
        found = channels.channel_by_code(session, "web-jp")
        assert found is not None
        channel = found.id
    order = {
        "channel_id": channel,
        "email": "caller@example.com",
        "lines": [{"variant_id": item, "quantity": 1}],
        "shipping_address": TOKYO,
    }
    cases = [
        ({"method": "gift_card", "amount": "800"}, "body.payments[0].gift_card_code"),
        ({"method": "paid_elsewhere", "amount": "800"}, "body.payments[0].method"),
    ]
    for tender, field in cases:
        problem = assert_problem(
            client.post("/v1/orders", headers=staff, json={**order, "payments": [tender]}), 422
        )
        assert [e["field"] for e in problem["errors"]] == [field], problem
    problem = assert_problem(
        client.post(
            "/v1/orders",
            headers=staff,
            json={
                **order,
                "shipping_address": {"city": "Tokyo"},
                "payments": [{"method": "cash_on_delivery", "amount": "800"}],
            },
        ),
        422,
    )
    assert "body.shipping_address.line1" in [e["field"] for e in problem["errors"]]
