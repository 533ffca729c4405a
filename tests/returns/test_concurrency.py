"""Racing staff: the same return received or refunded at once moves stock and money once."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from mercato.errors import Problem
from mercato.flows import returns as flow
from mercato.inventory.models import StockMovement
from mercato.returns import service
from mercato.returns.models import ReturnSettlement
from mercato.returns.state import Condition
from tests.commerce.conftest import DemoWorld
from tests.commerce.helpers import ok
from tests.returns.conftest import (
    SYSTEM,
    fulfil,
    level,
    line,
    payments_of,
    place,
    product,
    receive,
    staff_login,
    start_return,
)

pytestmark = pytest.mark.slow

RACERS = 6


def _race(work: Any) -> list[Any]:
    start = threading.Barrier(RACERS)

    def run(_: int) -> Any:
        start.wait()
        try:
            return work()
        except Problem as exc:
            return exc.code

    with ThreadPoolExecutor(RACERS) as pool:
        return list(pool.map(run, range(RACERS)))


def _return_movements(world: DemoWorld, number: str) -> int:
    with world.database.read() as session:
        query = (
            select(func.count())
            .select_from(StockMovement)
            .where(StockMovement.reference_id == number, StockMovement.reason == "return")
        )
        return int(session.scalar(query) or 0)


def test_two_receipts_of_one_return_at_once_one_wins(demo_world: DemoWorld) -> None:
    item = product(demo_world, {"ONE": {"JPY": "3100"}}, {"WH-TYO": 6})
    order = place(demo_world, [(item["ONE"], 2)])
    fulfil(demo_world, order)
    ret = start_return(
        demo_world, staff_login(demo_world), order, [line(order, item["ONE"], 2, "changed_mind")]
    )
    store = demo_world.location_id("ST-SHIBUYA")
    before = level(demo_world, item["ONE"], "ST-SHIBUYA").on_hand
    inspections = [service.Inspection(ret["lines"][0]["id"], Condition.RESTOCK)]

    def receive_once() -> str:
        with demo_world.database.transaction() as session:
            flow.receive(session, SYSTEM, ret["id"], store, inspections)
        return "received"

    results = _race(receive_once)
    assert results.count("received") == 1, results
    assert set(results) - {"received"} <= {"already-received", "return-state-changed"}, results
    assert level(demo_world, item["ONE"], "ST-SHIBUYA").on_hand == before + 2
    assert _return_movements(demo_world, ret["number"]) == 1
    staff_view = ok(
        demo_world.client.get(f"/v1/orders/{order.id}", headers=staff_login(demo_world))
    )
    assert staff_view["lines"][0]["returned_quantity"] == 2


def test_two_receipts_through_the_api_at_once(demo_world: DemoWorld) -> None:
    item = product(demo_world, {"ONE": {"JPY": "700"}}, {"WH-TYO": 3})
    order = place(demo_world, [(item["ONE"], 1)])
    fulfil(demo_world, order)
    associate = staff_login(demo_world, "shibuya.associate")
    ret = start_return(demo_world, associate, order, [line(order, item["ONE"], 1, "other")])
    start = threading.Barrier(2)

    def post(_: int) -> int:
        start.wait()
        return int(receive(demo_world, associate, ret, "ST-SHIBUYA").status_code)

    with ThreadPoolExecutor(2) as pool:
        codes = sorted(pool.map(post, range(2)))
    assert codes == [200, 409]
    assert _return_movements(demo_world, ret["number"]) == 1


def test_concurrent_refunds_of_one_return_pay_once(demo_world: DemoWorld) -> None:
    item = product(demo_world, {"ONE": {"JPY": "5500"}}, {"WH-TYO": 3})
    order = place(demo_world, [(item["ONE"], 2)])
    fulfil(demo_world, order)
    staff = staff_login(demo_world)
    ret = start_return(demo_world, staff, order, [line(order, item["ONE"], 1, "changed_mind")])
    ok(receive(demo_world, staff, ret, "WH-TYO"))

    def settle() -> int:
        outcome = flow.settle(demo_world.database, SYSTEM, ret["id"], service.SettleRequest())
        return outcome.status_code

    results = _race(settle)
    assert 200 in results, results
    assert set(results) <= {
        200,
        "idempotency-key-in-use",
        "concurrent-refund",
        "return-state-changed",
        "already-settled",
    }, results
    card = payments_of(demo_world, order.number)[0]
    assert Decimal(card["refunded"]) == Decimal(5500)
    with demo_world.database.read() as session:
        attempts = (
            session.execute(
                select(ReturnSettlement.status).where(ReturnSettlement.return_id == ret["id"])
            )
            .scalars()
            .all()
        )
    assert attempts == ["succeeded"]
    done = ok(demo_world.client.get(f"/v1/returns/{ret['id']}", headers=staff))
    assert (done["status"], done["refunded_total"]) == ("refunded", "5500")
