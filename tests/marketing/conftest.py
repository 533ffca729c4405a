"""A small shop for marketing tests: two channels, a category tree with organic beans under
coffee, customers with and without a locale, a code-only template promotion, and helpers to
place orders straight through the orders service."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mercato.auth.principal import Principal
from mercato.catalog import service as catalog
from mercato.catalog.schemas import CategoryIn, ProductIn, ProductStatus, VariantIn
from mercato.channels import service as channels
from mercato.channels.schemas import ChannelIn, ChannelType
from mercato.customers import service as customers
from mercato.customers.schemas import RegisterIn
from mercato.db import Database
from mercato.orders import service as orders
from mercato.orders.state import OrderStatus
from mercato.promotions import service as promotions
from mercato.promotions.schemas import PromotionIn
from tests.helpers import detach_categories, fast_password_hashing

ACTOR = Principal.system("tests")
UNPAID = OrderStatus.PENDING_PAYMENT
PASSWORD = "a long password"


@dataclass
class Shop:
    web: int  # channel ids
    store: int
    web_key: dict[str, str]
    store_key: dict[str, str]
    coffee: int  # category, parent of organic
    organic: int
    beans: int  # variant in organic
    ground: int  # variant in coffee, not organic
    mug: int  # variant without category
    template: int  # promotion id: 10% off the order, code only
    emails: dict[int, str] = field(default_factory=dict)  # of the customers made below


def _product(session: Any, code: str, category_id: int | None) -> int:
    product = catalog.create_product(
        session,
        ACTOR,
        ProductIn(
            code=code,
            name=code.title(),
            status=ProductStatus.ACTIVE,
            category_id=category_id,
            variants=[VariantIn(sku=f"{code}-1")],
        ),
    )
    return int(product.variants[0].id)


def _channel(session: Any, code: str, kind: ChannelType) -> tuple[int, dict[str, str]]:
    channel = channels.create_channel(
        session,
        ACTOR,
        ChannelIn(code=code, name=code, type=kind, default_locale="ja-JP", currencies=["JPY"]),
    )
    _, secret = channels.issue_key(session, ACTOR, channel.id, "tests")
    return int(channel.id), {"X-Channel-Key": secret}


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    # Staff and customer accounts are made per test; production-cost hashing dominates.
    fast_password_hashing(monkeypatch)


@pytest.fixture
def shop(db: Database) -> Iterator[Shop]:
    with db.transaction() as session:
        coffee = catalog.create_category(session, ACTOR, CategoryIn(code="coffee", name="Coffee"))
        organic = catalog.create_category(
            session, ACTOR, CategoryIn(code="organic", name="Organic", parent_id=coffee.id)
        )
        web, web_key = _channel(session, "web-jp", ChannelType.WEB)
        store, store_key = _channel(session, "pos-tokyo", ChannelType.POS)
        template = promotions.create_promotion(
            session,
            ACTOR,
            PromotionIn.model_validate(
                {
                    "name": "Thank you, coffee lover",
                    "status": "active",
                    "requires_code": True,
                    "action": {"type": "percent_off_order", "percent": "10"},
                }
            ),
        )
        found = Shop(
            web=web,
            store=store,
            web_key=web_key,
            store_key=store_key,
            coffee=coffee.id,
            organic=organic.id,
            beans=_product(session, "beans", organic.id),
            ground=_product(session, "ground", coffee.id),
            mug=_product(session, "mug", None),
            template=template.id,
        )
    yield found
    detach_categories(db)


@pytest.fixture
def new_customer(db: Database, shop: Shop) -> Callable[..., int]:
    def make(locale: str | None = "ja-JP", email: str | None = None) -> int:
        address = email or f"c-{uuid.uuid4().hex[:8]}@example.jp"
        data = RegisterIn(email=address, password=PASSWORD, locale=locale)
        with db.transaction() as session:
            customer_id = int(customers.register(session, shop.web, data).id)
        shop.emails[customer_id] = address
        return customer_id

    return make


def shopper_headers(client: TestClient, key: dict[str, str], email: str) -> dict[str, str]:
    """Log a customer made by ``new_customer`` in through the store API."""
    response = client.post(
        "/v1/store/customers/login", headers=key, json={"email": email, "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    return {**key, "Authorization": f"Bearer {response.json()['token']}"}


def _line(variant_id: int, quantity: int = 1, price: str = "1000") -> orders.LineDraft:
    unit = Decimal(price)
    total = unit * quantity
    return orders.LineDraft(
        variant_id=variant_id,
        sku=f"V{variant_id}",
        name=f"Variant {variant_id}",
        tax_class="standard",
        quantity=quantity,
        unit_price=unit,
        subtotal=total,
        discount=Decimal(0),
        tax=Decimal(0),
        tax_rate=Decimal(0),
        total=total,
    )


@pytest.fixture
def place_order(db: Database) -> Callable[..., int]:
    """An order of the customer's in a channel, in a status (placed by default)."""

    def place(
        customer_id: int | None,
        channel_id: int,
        variant_ids: list[int],
        status: OrderStatus = OrderStatus.PLACED,
        locale: str | None = None,
    ) -> int:
        lines = [_line(v) for v in variant_ids]
        total = sum((x.total for x in lines), Decimal(0))
        draft = orders.OrderDraft(
            channel_id=channel_id,
            currency="JPY",
            source="checkout",
            lines=lines,
            subtotal=total,
            discount_total=Decimal(0),
            shipping_total=Decimal(0),
            tax_total=Decimal(0),
            grand_total=total,
            tax_included=True,
            customer_id=customer_id,
            locale=locale,
            status=UNPAID if status in (UNPAID, OrderStatus.PAYMENT_FAILED) else OrderStatus.PLACED,
        )
        with db.transaction() as session:
            order = orders.create_order(session, ACTOR, draft)
            if order.status != status.value:
                orders.transition(session, ACTOR, order.id, status)
            return int(order.id)

    return place
