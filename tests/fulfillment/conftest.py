"""Fulfilment against the demo business: orders placed through the real checkout, routed
by the ``order.confirmed`` subscriber, then picked, packed, shipped or collected through
the API."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest

from mercato.auth.principal import Principal
from mercato.catalog import service as catalog
from mercato.catalog.schemas import ProductIn, ProductStatus, VariantIn
from mercato.fulfillment import service as fulfillment
from mercato.inventory import service as inventory
from mercato.pricing import service as pricing
from tests.commerce.conftest import DemoWorld
from tests.commerce.helpers import card_token, new_cart, ok
from tests.demo_world import staff_login
from tests.helpers import drain, fast_password_hashing

SYSTEM = Principal.system("tests")
Headers = dict[str, str]

NEW_YORK = {
    "name": "Sam Rivera",
    "line1": "350 5th Ave",
    "city": "New York",
    "region": "NY",
    "postal_code": "10118",
    "country": "US",
    "phone": "+1 212 555 0100",
    "latitude": 40.748,
    "longitude": -73.986,
}


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_password_hashing(monkeypatch)


def staff(world: DemoWorld, prefix: str = "owner") -> Headers:
    """A demo staff member, logged in once per database."""
    return staff_login(world, prefix)


def item(
    world: DemoWorld,
    stock: dict[str, int],
    prices: dict[str, dict[str, str]],
    *,
    hs_code: str | None = "610910",
    origin: str | None = "PT",
    weight_g: int = 300,
) -> int:
    """A fresh variant with its customs data (or without, when given None)."""
    code = f"F-{uuid.uuid4().hex[:8]}"
    with world.database.transaction() as session:
        product = catalog.create_product(
            session,
            SYSTEM,
            ProductIn(
                code=code,
                name=f"Shirt {code}",
                status=ProductStatus.ACTIVE,
                variants=[
                    VariantIn(
                        sku=code, weight_g=weight_g, hs_code=hs_code, country_of_origin=origin
                    )
                ],
            ),
        )
        variant_id = product.variants[0].id
        ctx = inventory.Context(SYSTEM, reference_type="test")
        for location, units in stock.items():
            inventory.receive_bulk(session, ctx, world.location_id(location), [(variant_id, units)])
        for price_list, amounts in prices.items():
            pricing.set_prices(
                session,
                SYSTEM,
                price_list,
                [pricing.PriceInput(variant_id, c, Decimal(a)) for c, a in amounts.items()],
            )
    return int(variant_id)


def place(
    world: DemoWorld,
    channel: str,
    lines: list[dict[str, Any]],
    *,
    address: dict[str, Any] | None = None,
    email: str | None = None,
    customer: Headers | None = None,
    currency: str | None = None,
    dispatch: bool = True,
) -> dict[str, Any]:
    """An order through the real checkout (paid by card), routed by the subscriber (unless
    ``dispatch`` is False: its events then wait in the outbox)."""
    client = world.client
    headers = {**world.key(channel), **(customer or {})}
    token = new_cart(client, headers, **({"currency": currency} if currency else {}))["token"]
    for line in lines:
        ok(client.post(f"/v1/store/carts/{token}/lines", headers=headers, json=line))
    patch: dict[str, Any] = {"email": email or f"f-{uuid.uuid4().hex[:8]}@example.com"}
    if address is not None:
        patch["shipping_address"] = address
    cart = ok(client.patch(f"/v1/store/carts/{token}", headers=headers, json=patch))
    if address is not None:
        assert cart["shipping_options"], cart
        option = cart["shipping_options"][0]["option_id"]
        cart = ok(
            client.patch(
                f"/v1/store/carts/{token}", headers=headers, json={"shipping_option_id": option}
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
            headers={**headers, "Idempotency-Key": str(uuid.uuid4())},
            json={"payments": [tender]},
        ),
        201,
    )
    if dispatch:
        drain(world)
    return order


def tasks(world: DemoWorld, order_id: int, kind: str | None = None) -> list[dict[str, Any]]:
    """The order's fulfilment orders as the owner sees them."""
    with world.database.read() as session:
        ids = [
            t.id
            for t in fulfillment.tasks_for_order(session, order_id)
            if kind is None or t.kind == kind
        ]
    return [ok(world.client.get(f"/v1/fulfillment/orders/{i}", headers=staff(world))) for i in ids]


def level(world: DemoWorld, variant_id: int, location: str) -> inventory.LevelSnapshot:
    with world.database.read() as session:
        return inventory.get_level(session, variant_id, world.location_id(location))


def order_of(world: DemoWorld, order_id: int) -> dict[str, Any]:
    body: dict[str, Any] = ok(world.client.get(f"/v1/orders/{order_id}", headers=staff(world)))
    return body


def track(world: DemoWorld, tracking_number: str, status: str) -> None:
    """A carrier's scan, recorded as the carrier webhook would, then delivered to
    fulfilment."""
    from datetime import UTC, datetime

    from mercato.shipping import service as shipping

    with world.database.transaction() as session:
        shipping.record_tracking_event(session, tracking_number, status, datetime.now(UTC))
    drain(world)
