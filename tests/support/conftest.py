"""A small world for support tests: an app channel, shoppers, orders and a movable clock."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from mercato.auth.principal import Principal
from mercato.db import Database
from mercato.events import OutboxEvent
from mercato.orders import service as orders
from mercato.orders.state import OrderStatus
from tests.helpers import channel_key, created, fast_password_hashing, make_channel

Headers = dict[str, str]
START = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)  # a Monday morning


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_password_hashing(monkeypatch)


class Clock:
    """The time the support rules see; tests move it instead of sleeping."""

    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture
def clock(app: Any) -> Clock:
    moving = Clock()
    app.state.support_clock = moving
    return moving


@dataclass
class Shop:
    client: TestClient
    db: Database
    channel_id: int
    store: Headers  # the app channel's key

    def customer(self, name: str = "Aiko") -> tuple[int, Headers]:
        """Register a shopper; her id and the headers of her app requests."""
        email = f"{name.lower()}-{uuid.uuid4().hex[:6]}@example.com"
        body = created(
            self.client.post(
                "/v1/store/customers",
                json={"email": email, "password": "a long password", "first_name": name},
                headers=self.store,
            )
        )
        return body["customer"]["id"], {**self.store, "Authorization": f"Bearer {body['token']}"}

    def order(self, customer_id: int | None, email: str | None = None) -> tuple[int, str]:
        """A placed order (id, number) of the customer, made through the orders service."""
        line = orders.LineDraft(
            variant_id=1,
            sku="BEANS-1",
            name="Organic coffee beans",
            tax_class="food",
            quantity=2,
            unit_price=Decimal("12.50"),
            subtotal=Decimal("25.00"),
            discount=Decimal("0"),
            tax=Decimal("1.85"),
            tax_rate=Decimal("0.08"),
            total=Decimal("25.00"),
        )
        draft = orders.OrderDraft(
            channel_id=self.channel_id,
            currency="EUR",
            source="staff",
            lines=[line],
            subtotal=Decimal("25.00"),
            discount_total=Decimal("0"),
            shipping_total=Decimal("0"),
            tax_total=Decimal("1.85"),
            grand_total=Decimal("25.00"),
            tax_included=True,
            customer_id=customer_id,
            email=email,
            status=OrderStatus.PLACED,
        )
        with self.db.transaction() as session:
            order = orders.create_order(session, Principal.system("tests"), draft)
            return order.id, order.number


@pytest.fixture
def shop(client: TestClient, owner_headers: Headers, db: Database) -> Shop:
    channel = make_channel(client, owner_headers, "app", type="app", currencies=["EUR"])
    key = {"X-Channel-Key": channel_key(client, owner_headers, channel["id"])}
    return Shop(client, db, channel["id"], key)


def support_events(db: Database, type_: str | None = None) -> list[OutboxEvent]:
    with db.read() as session:
        query = select(OutboxEvent).where(OutboxEvent.type.startswith("support."))
        if type_ is not None:
            query = query.where(OutboxEvent.type == type_)
        rows = list(session.scalars(query.order_by(OutboxEvent.id)))
        session.expunge_all()
        return rows


def open_case(shop: Shop, shopper: Headers, **body: Any) -> dict[str, Any]:
    payload = {"subject": "Where is my parcel?", "message": {"body": "It has not arrived."}}
    return created(
        shop.client.post("/v1/store/support/cases", json={**payload, **body}, headers=shopper)
    )


MakeStaff = Callable[..., Headers]
