"""A small world for loyalty tests: a web and a POS channel, customers, a coffee category
with a coffee and a mug, and a programme (1 point per EUR, 1 per 100 JPY, double on coffee;
a point is worth 0.01 EUR or 1 JPY; points expire after 12 months; silver at 1000 points,
gold at 5000 with 1.5x earning)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from mercato.auth.principal import Principal
from mercato.catalog import service as catalog
from mercato.catalog.schemas import CategoryIn, ProductIn, ProductStatus, VariantIn
from mercato.channels import service as channels
from mercato.channels.schemas import ChannelIn, ChannelType
from mercato.customers import service as customers
from mercato.customers.schemas import RegisterIn
from mercato.db import Database
from mercato.events import OutboxEvent
from mercato.loyalty import service as loyalty
from mercato.loyalty.models import Entry
from mercato.loyalty.schemas import ProgrammeIn
from mercato.orders import service as orders
from mercato.orders.state import OrderStatus
from tests.helpers import fast_password_hashing

SYSTEM = Principal.system("tests")

PROGRAMME: dict[str, Any] = {
    "name": "Mercato Rewards",
    "expiry_months": 12,
    "currencies": [
        {"currency": "EUR", "earn_points": 1, "earn_amount": "1", "point_value": "0.01"},
        {"currency": "JPY", "earn_points": 1, "earn_amount": "100", "point_value": "1"},
    ],
    "tiers": [
        {"code": "silver", "name": "Silver", "threshold": 1000, "customer_group": "silver"},
        {
            "code": "gold",
            "name": "Gold",
            "threshold": 5000,
            "earn_multiplier": "1.5",
            "customer_group": "gold",
        },
    ],
}


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_password_hashing(monkeypatch)


@dataclass
class Loyal:
    web: int
    web_key: str
    pos: int
    pos_key: str
    customers: list[int]
    coffee_category: int
    coffee: int  # a variant in the coffee category
    mug: int  # a variant with no category

    @property
    def hana(self) -> int:
        return self.customers[0]


def _product(session: Any, code: str, category_id: int | None) -> int:
    product = catalog.create_product(
        session,
        SYSTEM,
        ProductIn(
            code=code,
            name=code,
            status=ProductStatus.ACTIVE,
            category_id=category_id,
            variants=[VariantIn(sku=code)],
        ),
    )
    return int(product.variants[0].id)


def _channel(session: Any, code: str, kind: ChannelType) -> tuple[int, str]:
    channel = channels.create_channel(
        session,
        SYSTEM,
        ChannelIn(
            code=code,
            name=code,
            type=kind,
            default_locale="de-DE",
            currencies=["EUR", "JPY"],
            country="DE",
        ),
    )
    _, key = channels.issue_key(session, SYSTEM, channel.id, code)
    return channel.id, key


@pytest.fixture
def loyal(db: Database) -> Loyal:
    with db.transaction() as session:
        web, web_key = _channel(session, "web-de", ChannelType.WEB)
        pos, pos_key = _channel(session, "pos-berlin", ChannelType.POS)
        people = [
            customers.register(
                session, web, RegisterIn(email=f"{name}@example.com", password="long enough pw")
            ).id
            for name in ("hana", "jonas", "mai")
        ]
        coffee = catalog.create_category(session, SYSTEM, CategoryIn(code="coffee", name="Coffee"))
        loyalty.configure(session, SYSTEM, ProgrammeIn.model_validate(programme(coffee.id)))
        return Loyal(
            web,
            web_key,
            pos,
            pos_key,
            people,
            coffee.id,
            _product(session, "BEANS-1", coffee.id),
            _product(session, "MUG-1", None),
        )


def programme(coffee_category: int, **changes: Any) -> dict[str, Any]:
    multipliers = [{"category_id": coffee_category, "multiplier": "2"}]
    return {**PROGRAMME, "category_multipliers": multipliers, **changes}


def configure(db: Database, world: Loyal, **changes: Any) -> None:
    body = ProgrammeIn.model_validate(programme(world.coffee_category, **changes))
    with db.transaction() as session:
        loyalty.configure(session, SYSTEM, body)


def place_order(
    db: Database,
    world: Loyal,
    customer: int | None,
    lines: Sequence[tuple[int, int, str]],
    *,
    currency: str = "EUR",
    shipping: str = "0",
) -> int:
    """A placed order of (variant, quantity, unit price) lines, prices including tax."""
    drafts = []
    for variant, quantity, price in lines:
        subtotal = Decimal(price) * quantity
        drafts.append(
            orders.LineDraft(
                variant_id=variant,
                sku=f"SKU-{variant}",
                name="item",
                tax_class="standard",
                quantity=quantity,
                unit_price=Decimal(price),
                subtotal=subtotal,
                discount=Decimal(0),
                tax=Decimal(0),
                tax_rate=Decimal(0),
                total=subtotal,
            )
        )
    goods = sum((x.total for x in drafts), Decimal(0))
    with db.transaction() as session:
        order = orders.create_order(
            session,
            SYSTEM,
            orders.OrderDraft(
                channel_id=world.web,
                currency=currency,
                source="staff",
                lines=drafts,
                subtotal=goods,
                discount_total=Decimal(0),
                shipping_total=Decimal(shipping),
                tax_total=Decimal(0),
                grand_total=goods + Decimal(shipping),
                tax_included=True,
                customer_id=customer,
                status=OrderStatus.PLACED,
            ),
        )
        return int(order.id)


def fulfil(db: Database, order_id: int) -> None:
    with db.transaction() as session:
        for target in (OrderStatus.CONFIRMED, OrderStatus.ALLOCATED, OrderStatus.FULFILLED):
            orders.transition(session, SYSTEM, order_id, target)


def balance(db: Database, customer_id: int) -> int:
    with db.read() as session:
        return loyalty.balance_of(session, customer_id)


def view(db: Database, customer_id: int, now: datetime | None = None) -> loyalty.AccountView:
    with db.read() as session:
        return loyalty.account_view(session, customer_id, now=now)


def kinds(db: Database, customer_id: int) -> list[tuple[str, int]]:
    """The customer's ledger, oldest first: (kind, points)."""
    with db.read() as session:
        rows = session.execute(
            select(Entry.kind, Entry.points)
            .where(Entry.customer_id == customer_id)
            .order_by(Entry.id)
        ).all()
    return [(k, p) for k, p in rows]


def events(db: Database, type_: str) -> list[dict[str, Any]]:
    with db.read() as session:
        return [
            e.data
            for e in session.scalars(
                select(OutboxEvent).where(OutboxEvent.type == type_).order_by(OutboxEvent.id)
            )
        ]


def entry_count(db: Database) -> int:
    with db.read() as session:
        return int(session.scalar(select(func.count()).select_from(Entry)) or 0)


def assert_ledger_consistent(db: Database) -> None:
    with db.read() as session:
        assert loyalty.verify(session) == []
