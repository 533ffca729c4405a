"""A small world for promotion tests: two channels, coffee in a category tree, a mug,
three customers; and helpers to define promotions and carts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
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
from mercato.customers.models import Customer
from mercato.db import Database, utcnow
from mercato.promotions import service
from mercato.promotions.engine import CartLine, PromotionResult
from mercato.promotions.models import Redemption
from mercato.promotions.schemas import PromotionIn
from tests.helpers import detach_categories

D = Decimal
ACTOR = Principal.system("tests")


@dataclass
class World:
    channel_id: int
    other_channel_id: int
    drinks: int  # category, parent of coffee
    coffee: int
    beans_product: int
    beans: int  # variant
    beans_large: int  # variant
    mug_product: int
    mug: int  # variant
    customers: list[int]

    def line(self, line_id: str, variant: int, price: str, quantity: int = 1) -> CartLine:
        coffee = variant in (self.beans, self.beans_large)
        return CartLine(
            line_id=line_id,
            variant_id=variant,
            product_id=self.beans_product if coffee else self.mug_product,
            category_ids=frozenset({self.coffee, self.drinks}) if coffee else frozenset(),
            quantity=quantity,
            unit_price=D(price),
        )

    def cart(self) -> list[CartLine]:
        """Two bags of beans at 12.50 and a mug at 20.00: 45.00 EUR."""
        return [self.line("1", self.beans, "12.50", 2), self.line("2", self.mug, "20.00")]

    def context(self, *codes: str, **fields: Any) -> service.CartEvaluationContext:
        fields.setdefault("currency", "EUR")
        fields.setdefault("channel_id", self.channel_id)
        fields.setdefault("now", utcnow())
        return service.CartEvaluationContext(codes=codes, **fields)


@pytest.fixture
def world(db: Database) -> Iterator[World]:
    with db.transaction() as session:
        drinks = catalog.create_category(session, ACTOR, CategoryIn(code="drinks", name="Drinks"))
        coffee = catalog.create_category(
            session, ACTOR, CategoryIn(code="coffee", name="Coffee", parent_id=drinks.id)
        )
        beans = catalog.create_product(
            session,
            ACTOR,
            ProductIn(
                code="BEANS",
                name="Organic beans",
                status=ProductStatus.ACTIVE,
                category_id=coffee.id,
                variants=[VariantIn(sku="BEANS-250"), VariantIn(sku="BEANS-1000")],
            ),
        )
        mug = catalog.create_product(
            session,
            ACTOR,
            ProductIn(
                code="MUG", name="Mug", status=ProductStatus.ACTIVE, variants=[VariantIn(sku="MUG")]
            ),
        )
        web, app = (
            channels.create_channel(
                session,
                ACTOR,
                ChannelIn(
                    code=code,
                    name=code,
                    type=kind,
                    default_locale="de-DE",
                    currencies=["EUR", "JPY"],
                ),
            )
            for code, kind in (("web-de", ChannelType.WEB), ("app-de", ChannelType.APP))
        )
        people = [Customer(email=f"shopper{i}@example.com", created_at=utcnow()) for i in range(3)]
        session.add_all(people)
        session.flush()
        found = World(
            channel_id=web.id,
            other_channel_id=app.id,
            drinks=drinks.id,
            coffee=coffee.id,
            beans_product=beans.id,
            beans=beans.variants[0].id,
            beans_large=beans.variants[1].id,
            mug_product=mug.id,
            mug=mug.variants[0].id,
            customers=[c.id for c in people],
        )
    yield found
    detach_categories(db)


def definition(action: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"name": fields.pop("name", "Promotion"), "status": "active", "action": action, **fields}


@pytest.fixture
def make_promotion(db: Database) -> Callable[..., int]:
    """Create a promotion (active unless told) through the service; returns its id."""

    def make(action: dict[str, Any], *, codes: tuple[str, ...] = (), **fields: Any) -> int:
        with db.transaction() as session:
            promotion = service.create_promotion(
                session, ACTOR, PromotionIn.model_validate(definition(action, **fields))
            )
            for code in codes:
                service.create_code(session, ACTOR, promotion.id, code)
            return promotion.id

    return make


def evaluate(
    db: Database, lines: list[CartLine], context: service.CartEvaluationContext
) -> PromotionResult:
    with db.read() as session:
        return service.evaluate(session, lines=lines, context=context)


def checkout(
    db: Database,
    world: World,
    reference: str,
    *codes: str,
    customer: int | None = None,
    lines: list[CartLine] | None = None,
    now: datetime | None = None,
) -> list[Redemption]:
    """Evaluate and reserve in one transaction, as checkout does."""
    context = world.context(*codes, customer_id=customer, now=now or utcnow())
    with db.transaction() as session:
        result = service.evaluate(session, lines=lines or world.cart(), context=context)
        return service.reserve_redemptions(
            session, result, reference=reference, customer_id=customer, currency="EUR"
        )


def reasons(result: PromotionResult) -> dict[str, str]:
    return {r.code: r.reason.value for r in result.rejected_codes}


def applied(result: PromotionResult) -> dict[int, Decimal]:
    return {a.promotion_id: a.amount for a in result.applied}


def active_redemptions(db: Database, promotion_id: int) -> tuple[int, Decimal]:
    """Count and total of the promotion's reserved and confirmed redemptions."""
    with db.read() as session:
        count, total = session.execute(
            select(func.count(), func.coalesce(func.sum(Redemption.amount_minor), 0)).where(
                Redemption.promotion_id == promotion_id,
                Redemption.status.in_(service.ACTIVE_REDEMPTION),
            )
        ).one()
    return int(count), D(int(total)) / 100


PERCENT_10 = {"type": "percent_off_order", "percent": "10"}
FIVE_OFF = {"type": "amount_off_order", "amounts": {"EUR": "5.00", "JPY": "500"}}
