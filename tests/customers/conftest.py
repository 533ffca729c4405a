"""Fixtures for the customer profile tests: channels, orders placed through the orders
service (so the real ``order.*`` events reach the profile), staff with and without
``customers:pii``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mercato.auth.principal import Principal
from mercato.channels import service as channels
from mercato.db import Database
from mercato.orders import service as orders
from mercato.orders.models import Order
from mercato.orders.state import OrderStatus
from tests.helpers import channel_key, drain, fast_password_hashing, make_channel

SYSTEM = Principal.system("tests")
Headers = dict[str, str]


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_password_hashing(monkeypatch)


@dataclass
class Shop:
    client: TestClient
    db: Database
    app: Any
    staff: Headers
    web: dict[str, Any]
    marketplace: dict[str, Any]

    def store(self, token: str | None = None) -> Headers:
        headers = dict(self.web["headers"])
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def drain(self) -> int:
        return drain(self.app)


@pytest.fixture
def shop(client: TestClient, db: Database, app: Any, owner_headers: Headers) -> Shop:
    web = make_channel(
        client,
        owner_headers,
        "web-de",
        default_locale="de-DE",
        currencies=["EUR", "JPY"],
        price_list="EU",
    )
    web["headers"] = {"X-Channel-Key": channel_key(client, owner_headers, web["id"])}
    marketplace = make_channel(
        client, owner_headers, "market", type="marketplace", currencies=["GBP", "EUR"]
    )
    return Shop(client, db, app, owner_headers, web, marketplace)


def register(shop: Shop, email: str, **fields: Any) -> dict[str, Any]:
    response = shop.client.post(
        "/v1/store/customers",
        json={"email": email, "password": "a long enough secret", **fields},
        headers=shop.store(),
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def place_order(
    db: Database,
    *,
    channel_id: int,
    customer_id: int | None,
    currency: str,
    amounts: Sequence[Decimal | str],
    external_id: str | None = None,
    cancel: bool = False,
) -> Order:
    """An order created and placed through the orders service (publishes order.placed),
    attributed to the channel's store as the flows that take orders do."""
    totals = [Decimal(a) for a in amounts]
    lines = [
        orders.LineDraft(
            variant_id=n,
            sku=f"SKU-{n}",
            name=f"Item {n}",
            tax_class="standard",
            quantity=1,
            unit_price=amount,
            subtotal=amount,
            discount=Decimal(0),
            tax=Decimal(0),
            tax_rate=Decimal(0),
            total=amount,
        )
        for n, amount in enumerate(totals, start=1)
    ]
    grand = sum(totals, Decimal(0))
    draft = orders.OrderDraft(
        channel_id=channel_id,
        currency=currency,
        source="import",
        lines=lines,
        subtotal=grand,
        discount_total=Decimal(0),
        shipping_total=Decimal(0),
        tax_total=Decimal(0),
        grand_total=grand,
        tax_included=True,
        customer_id=customer_id,
        external_id=external_id,
    )
    with db.transaction() as session:
        store = channels.context_for_channel(session, channel_id).store_location_id
        order = orders.create_order(session, SYSTEM, replace(draft, store_location_id=store))
        orders.transition(session, SYSTEM, order.id, OrderStatus.PLACED)
        if cancel:
            orders.transition(session, SYSTEM, order.id, OrderStatus.CANCELLED)
        session.expunge(order)
    return order


def cancel_order(db: Database, order_id: int) -> None:
    with db.transaction() as session:
        orders.transition(session, SYSTEM, order_id, OrderStatus.CANCELLED)


@pytest.fixture
def analyst(make_staff: Callable[..., Headers]) -> Headers:
    from mercato.auth.permissions import Role

    return make_staff(Role.ANALYST)
