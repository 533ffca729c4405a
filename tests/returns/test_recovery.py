"""Refunds that go wrong half-way: a crash, a refusal, an unreachable provider, a retry."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest

from mercato.payments import service as payments
from mercato.payments.providers import (
    Outcome,
    ProviderResult,
    ProviderUnavailable,
    SimulatedGateway,
)
from tests.commerce.conftest import DemoWorld
from tests.commerce.helpers import ok
from tests.conftest import assert_problem
from tests.returns.conftest import (
    fulfil,
    line,
    payments_of,
    place,
    product,
    receive,
    refund,
    staff_login,
    start_return,
)


def _inspected(world: DemoWorld, price: str = "3600") -> tuple[Any, dict[str, Any]]:
    item = product(world, {"ONE": {"JPY": price}}, {"WH-TYO": 3})
    order = place(world, [(item["ONE"], 1)])
    fulfil(world, order)
    staff = staff_login(world)
    ret = start_return(world, staff, order, [line(order, item["ONE"], 1, "changed_mind")])
    return order, ok(receive(world, staff, ret, "WH-TYO"))


def _get(world: DemoWorld, ret: dict[str, Any]) -> dict[str, Any]:
    return ok(world.client.get(f"/v1/returns/{ret['id']}", headers=staff_login(world)))


@pytest.mark.slow
def test_a_crash_before_the_refund_is_resumed_once(
    demo_world: DemoWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    order, ret = _inspected(demo_world)

    def crash(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the process died")

    monkeypatch.setattr(payments, "refund_reference", crash)
    with pytest.raises(RuntimeError):
        refund(demo_world, staff_login(demo_world), ret)
    stuck = _get(demo_world, ret)
    assert (stuck["status"], stuck["settlement"]) == ("inspected", "pending")
    assert [s["status"] for s in stuck["settlements"]] == ["pending"]
    monkeypatch.undo()
    done = ok(refund(demo_world, staff_login(demo_world), ret))
    assert done["status"] == "refunded" and len(done["settlements"]) == 1
    assert payments_of(demo_world, order.number)[0]["refunded"] == "3600"


def test_a_refused_refund_can_be_tried_again(
    demo_world: DemoWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    order, ret = _inspected(demo_world)
    monkeypatch.setattr(
        SimulatedGateway,
        "refund",
        lambda self, request: ProviderResult(Outcome.FAILED, code="processor_error"),
    )
    assert_problem(refund(demo_world, staff_login(demo_world), ret), 402, "payment-declined")
    after = _get(demo_world, ret)
    assert (after["status"], after["settlement"], after["refunded_total"]) == (
        "inspected",
        "failed",
        "0",
    )
    assert after["settlements"][0]["failure_code"] == "refund-declined"
    assert payments_of(demo_world, order.number)[0]["refunded"] == "0"
    monkeypatch.undo()
    done = ok(refund(demo_world, staff_login(demo_world), ret))
    assert [s["status"] for s in done["settlements"]] == ["failed", "succeeded"]
    assert payments_of(demo_world, order.number)[0]["refunded"] == "3600"


def test_an_unreachable_provider_leaves_the_refund_pending_until_retried(
    demo_world: DemoWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    order, ret = _inspected(demo_world)

    def unreachable(self: Any, request: Any) -> ProviderResult:
        raise ProviderUnavailable("timeout")

    monkeypatch.setattr(SimulatedGateway, "refund", unreachable)
    pending = refund(demo_world, staff_login(demo_world), ret)
    assert pending.status_code == 202, pending.text
    assert pending.json()["settlement"] == "pending"
    monkeypatch.undo()
    done = ok(refund(demo_world, staff_login(demo_world), ret))
    assert done["status"] == "refunded"
    card = payments_of(demo_world, order.number)[0]
    assert (card["refunded"], len(done["settlements"])) == ("3600", 1)


def test_retries_with_the_same_idempotency_key_get_the_first_answer(
    demo_world: DemoWorld,
) -> None:
    client, staff = demo_world.client, staff_login(demo_world)
    item = product(demo_world, {"ONE": {"JPY": "1100"}}, {"WH-TYO": 3})
    order = place(demo_world, [(item["ONE"], 1)])
    fulfil(demo_world, order)
    headers = {**staff, "Idempotency-Key": str(uuid.uuid4())}
    body = {"order_number": order.number, "lines": [line(order, item["ONE"], 1, "other")]}
    first = ok(client.post("/v1/returns", headers=headers, json=body), 201)
    second = client.post("/v1/returns", headers=headers, json=body)
    assert second.status_code == 201 and second.json()["id"] == first["id"]
    assert second.headers.get("Idempotent-Replayed") == "true"
    ok(receive(demo_world, staff, first, "WH-TYO"))
    key = {**staff, "Idempotency-Key": str(uuid.uuid4())}
    paid = client.post(f"/v1/returns/{first['id']}/refund", headers=key, json={})
    again = client.post(f"/v1/returns/{first['id']}/refund", headers=key, json={})
    assert paid.status_code == again.status_code == 200
    assert paid.json() == again.json()
    other_body = client.post(
        f"/v1/returns/{first['id']}/refund", headers=key, json={"method": "store_credit"}
    )
    assert_problem(other_body, 422, "idempotency-key-reused")
    assert Decimal(payments_of(demo_world, order.number)[0]["refunded"]) == Decimal(1100)


def test_a_refusal_by_payments_after_the_checks_is_surfaced(
    demo_world: DemoWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    order, ret = _inspected(demo_world, "2000")
    real = payments.refund_reference
    # Another refund of the order (shipping and one yen more) lands between the return's
    # checks and its refund.
    goodwill = Decimal(payments_of(demo_world, order.number)[0]["captured"]) - 2000 + 1

    def goodwill_refund_first(database: Any, reference: str, amount: Decimal, **kw: Any) -> Any:
        real(database, reference, goodwill, reason="goodwill")
        return real(database, reference, amount, **kw)

    monkeypatch.setattr(payments, "refund_reference", goodwill_refund_first)
    problem = assert_problem(
        refund(demo_world, staff_login(demo_world), ret), 422, "refund-exceeds-captured"
    )
    assert "exceeds" in problem["detail"]
    after = _get(demo_world, ret)
    assert (after["status"], after["settlement"], after["refunded_total"]) == (
        "inspected",
        "failed",
        "0",
    )
    assert Decimal(payments_of(demo_world, order.number)[0]["refunded"]) == goodwill
