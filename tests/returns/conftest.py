"""Returns against the demo business: real orders placed through checkout, fulfilled,
captured, then returned through the API."""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import delete, select

from mercato.auth.principal import Principal
from mercato.catalog import service as catalog
from mercato.catalog.schemas import ProductIn, ProductStatus, VariantIn
from mercato.event_types import DomainEvent
from mercato.events import Event, OutboxEvent
from mercato.fulfillment import service as fulfillment
from mercato.inventory import service as inventory
from mercato.orders import service as orders
from mercato.pricing import service as pricing
from mercato.returns import service
from mercato.returns.models import ReturnPolicy
from mercato.shipping import service as shipping
from tests.commerce.conftest import DemoWorld
from tests.commerce.helpers import TOKYO, add, card_token, new_cart, ok, register, ship_to
from tests.demo_world import staff_login as demo_staff_login
from tests.helpers import drain, fast_password_hashing

SYSTEM = Principal.system("tests")
Headers = dict[str, str]


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_password_hashing(monkeypatch)


@pytest.fixture(autouse=True)
def _no_policies_left(request: pytest.FixtureRequest) -> Iterator[None]:
    """Policies belong to one test: the demo database is shared by the whole session."""
    yield
    if "demo_world" in request.fixturenames:
        world: DemoWorld = request.getfixturevalue("demo_world")
        with world.database.transaction() as session:
            session.execute(delete(ReturnPolicy))


@dataclass
class Placed:
    id: int
    number: str
    body: dict[str, Any]
    customer: Headers

    @property
    def lines(self) -> list[dict[str, Any]]:
        lines: list[dict[str, Any]] = self.body["lines"]
        return lines


def staff_login(world: DemoWorld, prefix: str = "owner") -> Headers:
    """A demo staff member, logged in once per database."""
    return demo_staff_login(world, prefix)


def product(
    world: DemoWorld,
    sizes: dict[str, dict[str, str]],
    stock: dict[str, int],
    *,
    price_list: str = "JP",
    category: str | None = None,
) -> dict[str, int]:
    """A product with one variant per size: ``{"M": {"JPY": "4000"}}`` -> ``{"M": id}``."""
    code = f"R-{uuid.uuid4().hex[:8]}"
    with world.database.transaction() as session:
        found = catalog.category_by_code(session, category) if category else None
        made = catalog.create_product(
            session,
            SYSTEM,
            ProductIn(
                code=code,
                name=f"Returnable {code}",
                status=ProductStatus.ACTIVE,
                category_id=found.id if found else None,
                variants=[
                    VariantIn(sku=f"{code}-{size}", options={"size": size}, weight_g=300)
                    for size in sizes
                ],
            ),
        )
        ids = {v.sku.rsplit("-", 1)[1]: v.id for v in made.variants}
        ctx = inventory.Context(SYSTEM, reference_type="test")
        for location, units in stock.items():
            inventory.receive_bulk(
                session, ctx, world.location_id(location), [(i, units) for i in ids.values()]
            )
        pricing.set_prices(
            session,
            SYSTEM,
            price_list,
            [
                pricing.PriceInput(ids[size], currency, Decimal(amount))
                for size, amounts in sizes.items()
                for currency, amount in amounts.items()
            ],
        )
    return ids


def place(
    world: DemoWorld,
    items: list[tuple[int, int]],
    *,
    channel: str = "web-jp",
    address: dict[str, Any] = TOKYO,
    customer: Headers | None = None,
    gift_card: tuple[str, str] | None = None,
) -> Placed:
    """An order through the real checkout, paid by card (and a gift card part if given)."""
    client, key = world.client, world.key(channel)
    if customer is None:
        customer = register(client, key, f"ret-{uuid.uuid4().hex[:8]}@example.com")
    headers = {**key, **customer}
    token = new_cart(client, headers)["token"]
    for variant, quantity in items:
        add(client, headers, token, variant, quantity)
    cart = ship_to(client, headers, token, address)
    total = Decimal(cart["grand_total"]["amount"])
    tenders = []
    if gift_card is not None:
        code, amount = gift_card
        tenders.append({"method": "gift_card", "amount": amount, "gift_card_code": code})
        total -= Decimal(amount)
    tenders.append(
        {"method": "test_gateway", "amount": str(total), "token": card_token(client, key)}
    )
    body = ok(
        client.post(
            f"/v1/store/carts/{token}/checkout",
            headers={**headers, "Idempotency-Key": str(uuid.uuid4())},
            json={"payments": tenders},
        ),
        201,
    )
    return Placed(body["id"], body["number"], body, customer)


def fulfil(world: DemoWorld, order: Placed, *, capture: bool = True) -> None:
    """Every unit shipped (and, as when goods leave, the card captured)."""
    with world.database.transaction() as session:
        orders.record_fulfilled(
            session, SYSTEM, order.id, {x["id"]: x["quantity"] for x in order.lines}
        )
    if capture:
        for payment in payments_of(world, order.number):
            if payment["status"] == "authorized":
                ok(
                    world.client.post(
                        f"/v1/payments/{payment['id']}/capture",
                        headers=staff_login(world),
                        json={},
                    )
                )


def ship_and_deliver(world: DemoWorld, order: Placed) -> list[dict[str, Any]]:
    """The real fulfilment flow through the API: the order is routed (its confirmation
    event), each location picks, packs and ships its part (the units leave that location's
    stock and the card is captured), then the carrier reports every parcel delivered."""
    client, owner = world.client, staff_login(world)
    drain(world)
    with world.database.read() as session:
        task_ids = [t.id for t in fulfillment.tasks_for_order(session, order.id)]
    assert task_ids, "the order was not routed"
    shipped: list[dict[str, Any]] = []
    for task_id in task_ids:
        ok(client.post(f"/v1/fulfillment/orders/{task_id}/pick", headers=owner))
        ok(
            client.post(
                f"/v1/fulfillment/orders/{task_id}/pack",
                headers=owner,
                json={"packages": [{"weight_g": 1200}]},
            )
        )
        shipped.append(
            ok(client.post(f"/v1/fulfillment/orders/{task_id}/ship", headers=owner, json={}))
        )
    with world.database.transaction() as session:
        for task in shipped:
            for shipment in task["shipments"]:
                for parcel in shipment["packages"]:
                    shipping.record_tracking_event(
                        session, parcel["tracking_number"], "delivered", datetime.now(UTC)
                    )
    drain(world)
    return shipped


def payments_of(world: DemoWorld, number: str) -> list[dict[str, Any]]:
    page = ok(world.client.get(f"/v1/payments?reference={number}", headers=staff_login(world)))
    found: list[dict[str, Any]] = page["items"]
    return sorted(found, key=lambda p: p["position"])


def deliver(world: DemoWorld, order_id: int, types: tuple[type[DomainEvent], ...]) -> int:
    """Hand an order's committed events of ``types`` to the returns domain's subscriber,
    checking that the application registered it for them (without draining the demo's
    whole outbox through every domain's subscribers)."""
    dispatcher = world.client.app.state.dispatcher  # type: ignore[attr-defined]
    names = [t.TYPE for t in types]
    for event_type in names:
        # Typed subscribers are registered wrapped (the wrapper parses the payload).
        registered = [inspect.unwrap(h) for h in dispatcher.handlers_for(event_type)]
        assert service.record_fulfilment in registered, event_type
    with world.database.transaction() as session:
        rows = session.scalars(
            select(OutboxEvent)
            .where(OutboxEvent.aggregate_id == str(order_id), OutboxEvent.type.in_(names))
            .order_by(OutboxEvent.id)
        ).all()
        for row in rows:
            service.record_fulfilment(session, Event.from_row(row).typed())
        return len(rows)


def events(world: DemoWorld, type_: str, return_id: int) -> list[dict[str, Any]]:
    with world.database.read() as session:
        rows = session.scalars(
            select(OutboxEvent)
            .where(
                OutboxEvent.type == type_,
                OutboxEvent.aggregate_type == "return",
                OutboxEvent.aggregate_id == str(return_id),
            )
            .order_by(OutboxEvent.id)
        ).all()
        # Other tests sharing the demo business publish events of their own.
        return [dict(r.data) for r in rows if r.data.get("return_id") == return_id]


def level(world: DemoWorld, variant_id: int, location: str) -> inventory.LevelSnapshot:
    with world.database.read() as session:
        return inventory.get_level(session, variant_id, world.location_id(location))


def start_return(
    world: DemoWorld,
    headers: Headers,
    order: Placed,
    lines: list[dict[str, Any]],
    **extra: Any,
) -> dict[str, Any]:
    body = {"order_number": order.number, "lines": lines, **extra}
    return ok(world.client.post("/v1/returns", headers=headers, json=body), 201)


def receive(
    world: DemoWorld,
    headers: Headers,
    ret: dict[str, Any],
    location: str,
    condition: str = "restock",
) -> Any:
    return world.client.post(
        f"/v1/returns/{ret['id']}/receive",
        headers=headers,
        json={
            "location_id": world.location_id(location),
            "lines": [{"return_line_id": x["id"], "condition": condition} for x in ret["lines"]],
        },
    )


def refund(world: DemoWorld, headers: Headers, ret: dict[str, Any], **body: Any) -> Any:
    return world.client.post(f"/v1/returns/{ret['id']}/refund", headers=headers, json=body)


def line(
    order: Placed, variant_id: int, quantity: int, reason: str, **extra: Any
) -> dict[str, Any]:
    order_line = next(x for x in order.lines if x["variant_id"] == variant_id)
    return {"order_line_id": order_line["id"], "quantity": quantity, "reason": reason, **extra}
