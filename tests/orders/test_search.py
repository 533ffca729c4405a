"""Staff search every channel's orders by customer, channel, status, location (pickup
store or any location routing gave lines to), date range, total range and external id;
the same external id imported twice at once answers one order; holds and notes are on the
order's timeline."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from mercato.auth.principal import Principal
from mercato.catalog import service as catalog
from mercato.channels import service as channels
from mercato.db import utcnow
from mercato.flows import imported_orders
from mercato.orders import service as orders
from tests.commerce.conftest import DemoWorld
from tests.commerce.helpers import TOKYO, add, card_token, new_cart, ok, pay, register, ship_to
from tests.helpers import drain

pytestmark = pytest.mark.slow


def _found(world: DemoWorld, **params: Any) -> set[int]:
    """Every order id the search returns, following the cursor."""
    ids: set[int] = set()
    cursor = None
    while True:
        query = {**params, "limit": 200, **({"cursor": cursor} if cursor else {})}
        page = ok(world.client.get("/v1/orders", headers=world.staff(), params=query))
        ids |= {o["id"] for o in page["items"]}
        cursor = page["next_cursor"]
        if not cursor:
            return ids


def _marketplace(world: DemoWorld, item: int) -> tuple[int, str]:
    with world.database.read() as session:
        sku = catalog.variant_infos(session, [item])[item].sku
        market = channels.channel_by_code(session, "marketplace-jp")
        assert market is not None
        return market.id, sku


def _pickup_order(world: DemoWorld, item: int, store: int) -> dict[str, Any]:
    client, key = world.client, world.key("web-jp")
    token = new_cart(client, key)["token"]
    add(client, key, token, item, 1, delivery_mode="pickup", pickup_location_id=store)
    cart = ok(client.patch(f"/v1/store/carts/{token}", headers=key, json={"email": "p@example.jp"}))
    tender = {
        "method": "test_gateway",
        "amount": cart["grand_total"]["amount"],
        "token": card_token(client, key),
    }
    return ok(
        client.post(
            f"/v1/store/carts/{token}/checkout",
            headers={**key, "Idempotency-Key": str(uuid.uuid4())},
            json={"payments": [tender]},
        ),
        201,
    )


def test_order_search_filters(demo_world: DemoWorld) -> None:
    client, staff = demo_world.client, demo_world.staff()
    web = demo_world.key("web-jp")
    warehouse, shibuya = demo_world.location_id("WH-TYO"), demo_world.location_id("ST-SHIBUYA")
    shipped_item = demo_world.new_product({"WH-TYO": 10}, {"JP": {"JPY": "1000"}})
    store_item = demo_world.new_product({"ST-SHIBUYA": 10}, {"JP": {"JPY": "90000"}})

    # A shopper's order shipped from the warehouse; a pickup at Shibuya; an import.
    shopper = {**web, **register(client, web, f"s-{uuid.uuid4().hex[:8]}@example.jp")}
    customer_id = ok(client.get("/v1/store/customers/me", headers=shopper))["id"]
    token = new_cart(client, shopper)["token"]
    add(client, shopper, token, shipped_item, 1)
    cart = ship_to(client, shopper, token, TOKYO)
    shipped = ok(pay(client, shopper, token, cart["grand_total"]["amount"]), 201)
    pickup = _pickup_order(demo_world, store_item, shibuya)
    market_id, sku = _marketplace(demo_world, shipped_item)
    external = f"MKT-{uuid.uuid4().hex[:8]}"
    imported = ok(
        client.post(
            "/v1/orders/import",
            headers=staff,
            json={
                "channel_id": market_id,
                "external_id": external,
                "currency": "JPY",
                "lines": [{"sku": sku, "quantity": 3, "unit_price": "1000"}],
                "shipping_address": TOKYO,
            },
        ),
        201,
    )
    drain(demo_world)
    mine = {shipped["id"], pickup["id"], imported["id"]}

    assert _found(demo_world, customer_id=customer_id) == {shipped["id"]}
    assert _found(demo_world, external_id=external) == {imported["id"]}
    assert imported["id"] in _found(demo_world, channel_id=market_id)
    assert mine & _found(demo_world, channel_id=market_id) == {imported["id"]}
    # Location: the warehouse fulfils the shipped and the imported order (routing), the
    # store the pickup; neither finds the other's.
    assert mine & _found(demo_world, location_id=warehouse) == {shipped["id"], imported["id"]}
    assert mine & _found(demo_world, location_id=shibuya) == {pickup["id"]}
    statuses = {o: ok(client.get(f"/v1/orders/{o}", headers=staff))["status"] for o in sorted(mine)}
    for order_id, status in statuses.items():
        assert order_id in _found(demo_world, status=status)
    other = next(s for s in ("cancelled", "closed") if s not in statuses.values())
    assert not mine & _found(demo_world, status=other)
    # Totals: only the pickup costs 90,000 or more.
    assert mine & _found(demo_world, min_total="90000") == {pickup["id"]}
    assert pickup["id"] not in _found(demo_world, max_total="89999")
    # Dates: all were placed within the last hour, none before it or after now.
    now = utcnow()
    hour_ago, later = (now - timedelta(hours=1)).isoformat(), (now + timedelta(minutes=1))
    assert mine <= _found(demo_world, placed_from=hour_ago, placed_to=later.isoformat())
    assert not mine & _found(demo_world, placed_to=hour_ago)
    assert not mine & _found(demo_world, placed_from=later.isoformat())


def test_holds_and_notes_are_on_the_timeline(demo_world: DemoWorld) -> None:
    client, staff = demo_world.client, demo_world.staff()
    item = demo_world.new_product({"WH-TYO": 10}, {"JP": {"JPY": "1000"}})
    web = demo_world.key("web-jp")
    token = new_cart(client, web)["token"]
    add(client, web, token, item, 1)
    cart = ship_to(client, web, token, TOKYO)
    order = ok(pay(client, web, token, cart["grand_total"]["amount"]), 201)
    ok(client.post(f"/v1/orders/{order['id']}/hold", headers=staff, json={"reason": "Recheck"}))
    ok(
        client.post(f"/v1/orders/{order['id']}/notes", headers=staff, json={"body": "Called back"}),
        201,
    )
    ok(client.post(f"/v1/orders/{order['id']}/release", headers=staff))
    seen = ok(client.get(f"/v1/orders/{order['id']}", headers=staff))
    entries = [(a["kind"], a["text"]) for a in seen["activity"] if a["kind"] != "status"]
    assert entries == [
        ("hold", "Recheck"),
        ("note", "Called back"),
        ("hold_released", "hold released"),
    ]
    assert seen["activity"][0]["kind"] == "status"
    times = [a["at"] for a in seen["activity"]]
    assert times == sorted(times)
    # The notes list holds the notes only.
    notes = ok(client.get(f"/v1/orders/{order['id']}/notes", headers=staff))["items"]
    assert [n["body"] for n in notes] == ["Called back"]


def test_concurrent_imports_of_one_external_id_make_one_order(
    demo_world: DemoWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    if demo_world.database.dialect != "postgresql":
        pytest.skip("SQLite runs one write transaction at a time: imports cannot race")
    item = demo_world.new_product({"WH-TYO": 10}, {"JP": {"JPY": "1000"}})
    market_id, sku = _marketplace(demo_world, item)
    request = imported_orders.ImportRequest(
        channel_id=market_id,
        external_id=f"MKT-{uuid.uuid4().hex[:8]}",
        currency="JPY",
        lines=[imported_orders.ImportLine(sku, 1, Decimal("1000"))],
        shipping_address=TOKYO,
    )
    # Both imports pass the "already imported?" check before either inserts.
    both_checked = threading.Barrier(2, timeout=30)
    looked_up = orders.by_external_id

    def racing_lookup(session: Any, channel_id: int, external_id: str) -> Any:
        found = looked_up(session, channel_id, external_id)
        if threading.current_thread() is not threading.main_thread() and found is None:
            both_checked.wait()
        return found

    monkeypatch.setattr(orders, "by_external_id", racing_lookup)
    results: list[tuple[int, bool]] = []
    failures: list[BaseException] = []

    def run() -> None:
        try:
            with demo_world.database.transaction() as session:
                system = Principal.system("t")
                order, created = imported_orders.import_order(session, system, request)
                results.append((order.id, created))
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    assert sorted(created for _, created in results) == [False, True]
    assert len({order_id for order_id, _ in results}) == 1
    assert _found(demo_world, external_id=request.external_id) == {results[0][0]}
