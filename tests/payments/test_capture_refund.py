"""Captures, voids and refunds: limits enforced by Mercato and by the gateway, the split
of a refund over tenders, and what a crash or an unreachable provider leaves behind."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal

import pytest

from mercato.db import Database
from mercato.errors import Problem, UnprocessableState, ValidationProblem
from mercato.payments import service as payments
from mercato.payments.models import Refund
from mercato.payments.providers import (
    ChargeRequest,
    Outcome,
    ProviderResult,
    ProviderUnavailable,
    SimulatedGateway,
)
from mercato.payments.service import TenderRequest
from tests.helpers import outbox
from tests.payments.conftest import (
    World,
    assert_balances_match_ledgers,
    card_tender,
    charge,
    count_rows,
    gateway,
    gift_balance,
    issue_card,
    ledger,
    pay,
    payment,
    pending_rows,
)


def _authorised(db: Database, world: World, amount: str = "100.00") -> int:
    [p] = pay(db, world, [card_tender(db, amount)])
    assert p.status == "authorized"
    return p.id


def _state(db: Database, payment_id: int) -> tuple[str, Decimal, Decimal, Decimal]:
    p = payment(db, payment_id)
    return p.status, p.authorized, p.captured, p.refunded


def test_partial_captures_up_to_the_authorised_amount(db: Database, world: World) -> None:
    pid = _authorised(db, world)
    first = payments.capture(db, pid, Decimal("60.00"))
    assert (first.status, first.captured, first.capturable) == (
        "partially_captured",
        Decimal("60.00"),
        Decimal("40.00"),
    )
    rest = payments.capture(db, pid)
    assert (rest.status, rest.captured) == ("captured", Decimal("100.00"))
    assert charge(db, rest.provider_reference)["captured"] == Decimal("100.00")
    assert [k for k, s, _ in ledger(db, pid) if s == "succeeded"] == [
        "authorize",
        "capture",
        "capture",
    ]
    assert [e.data["captured"] for e in outbox(db, "payment.captured")] == ["60.00", "40.00"]


def test_capture_more_than_authorised_changes_nothing(db: Database, world: World) -> None:
    pid = _authorised(db, world)
    payments.capture(db, pid, Decimal("70.00"))
    before = (
        _state(db, pid),
        ledger(db, pid),
        charge(db, payment(db, pid).provider_reference),
    )
    for amount in ("30.01", "1000", "0", "-5", "1.001"):
        with pytest.raises(ValidationProblem) as problem:
            payments.capture(db, pid, Decimal(amount))
        assert problem.value.errors[0]["field"] == "body.amount", amount
    after = (
        _state(db, pid),
        ledger(db, pid),
        charge(db, payment(db, pid).provider_reference),
    )
    assert after == before


def test_refund_more_than_captured_changes_nothing(db: Database, world: World) -> None:
    pid = _authorised(db, world)
    payments.capture(db, pid, Decimal("50.00"))
    payments.refund(db, pid, Decimal("20.00"))
    before = (_state(db, pid), ledger(db, pid), count_rows(db, Refund))
    with pytest.raises(ValidationProblem) as problem:
        payments.refund(db, pid, Decimal("30.01"))
    assert problem.value.errors[0]["field"] == "body.amount"
    assert "30.00" in problem.value.errors[0]["reason"]
    with pytest.raises(ValidationProblem):
        payments.refund_reference(db, "CO-1", Decimal("30.01"))
    assert (_state(db, pid), ledger(db, pid), count_rows(db, Refund)) == before
    done = payments.refund(db, pid, Decimal("30.00"))
    assert done.status == "succeeded"
    assert _state(db, pid) == ("refunded", Decimal("100.00"), Decimal("50.00"), Decimal("50.00"))


def test_the_gateway_enforces_its_own_limits(db: Database, world: World) -> None:
    """Even if Mercato asked for too much, the gateway refuses (it is a separate service)."""
    pid = _authorised(db, world, "10.00")
    charge_id = payment(db, pid).provider_reference

    def request(amount: str, key: str) -> ChargeRequest:
        return ChargeRequest(pid, Decimal(amount), "EUR", key, charge_id, "unused")

    gw = gateway(db)
    assert gw.capture(request("10.01", "k1")).code == "amount_exceeds_authorized"
    assert gw.capture(request("10.00", "k2")).outcome is Outcome.SUCCEEDED
    assert gw.capture(request("10.00", "k2")).outcome is Outcome.SUCCEEDED  # same key: replay
    assert charge(db, charge_id)["captured"] == Decimal("10.00")
    assert gw.refund(request("10.01", "k3")).code == "amount_exceeds_captured"
    assert gw.void(request("10.00", "k4")).code == "charge_captured"


def test_capture_refused_by_the_provider_is_recorded_and_released(
    db: Database, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid = _authorised(db, world)

    def refuse(self: SimulatedGateway, request: ChargeRequest) -> ProviderResult:
        return ProviderResult(Outcome.FAILED, code="processing_error", message="try later")

    monkeypatch.setattr(SimulatedGateway, "capture", refuse)
    with pytest.raises(Problem) as declined:
        payments.capture(db, pid, Decimal("40.00"))
    assert (declined.value.status, declined.value.code) == (402, "payment-declined")
    p = payment(db, pid)
    assert (p.status, p.captured, p.capture_pending_minor) == ("authorized", Decimal(0), 0)
    assert ledger(db, pid)[-1] == ("capture", "failed", Decimal("40.00"))
    assert [e.type for e in outbox(db, "payment.capture_failed")] == ["payment.capture_failed"]


def test_void_of_an_authorisation_and_of_a_captured_card(db: Database, world: World) -> None:
    pid = _authorised(db, world)
    voided = payments.void(db, pid)
    assert voided.status == "voided"
    assert payments.void(db, pid).status == "voided"  # idempotent
    with pytest.raises(UnprocessableState):
        payments.capture(db, pid)
    other = pay(db, world, [card_tender(db, "5.00")], reference="CO-2")[0].id
    payments.capture(db, other)
    with pytest.raises(UnprocessableState) as refused:
        payments.void(db, other)
    assert "refund it instead" in refused.value.detail


def test_refund_split_over_gift_card_and_card(db: Database, world: World) -> None:
    """Money tenders are refunded before the gift card; no tender gets more than it paid."""
    code = issue_card(db, "30.00")
    gift, card_payment = pay(
        db,
        world,
        [
            TenderRequest("gift_card", Decimal("20.00"), gift_card_code=code),
            card_tender(db, "50.00"),
        ],
    )
    payments.capture(db, card_payment.id)
    assert gift_balance(db, code) == Decimal("10.00")

    with db.read() as session:
        totals = payments.totals_for_reference(session, "CO-1")
    assert totals is not None
    assert (totals.amount, totals.captured, totals.refundable) == (
        Decimal("70.00"),
        Decimal("70.00"),
        Decimal("70.00"),
    )
    first = payments.refund_reference(db, "CO-1", Decimal("30.00"), reason="one item back")
    assert [(r.payment_id, r.amount, r.status) for r in first] == [
        (card_payment.id, Decimal("30.00"), "succeeded")
    ]
    second = payments.refund_reference(db, "CO-1", Decimal("35.00"))
    assert [(r.payment_id, r.amount) for r in second] == [
        (card_payment.id, Decimal("20.00")),
        (gift.id, Decimal("15.00")),
    ]
    assert all(r.status == "succeeded" for r in second)
    assert gift_balance(db, code) == Decimal("25.00")
    assert charge(db, card_payment.provider_reference)["refunded"] == Decimal("50.00")
    with pytest.raises(ValidationProblem):
        payments.refund_reference(db, "CO-1", Decimal("5.01"))
    last = payments.refund_reference(db, "CO-1", Decimal("5.00"))
    assert [(r.payment_id, r.amount) for r in last] == [(gift.id, Decimal("5.00"))]
    assert payment(db, gift.id).status == "refunded"
    assert payment(db, card_payment.id).status == "refunded"
    assert gift_balance(db, code) == Decimal("30.00")
    assert_balances_match_ledgers(db)


def test_refund_goes_to_the_most_recently_charged_money_tender(db: Database, world: World) -> None:
    first, second = pay(db, world, [card_tender(db, "10.00"), card_tender(db, "10.00")])
    payments.capture(db, second.id)
    payments.capture(db, first.id)  # charged last
    [part] = payments.refund_reference(db, "CO-1", Decimal("4.00"))
    assert part.payment_id == first.id


def test_idempotent_capture_and_refund(db: Database, world: World) -> None:
    pid = _authorised(db, world)
    one = payments.capture(db, pid, Decimal("30.00"), request_key="cap-1")
    two = payments.capture(db, pid, Decimal("30.00"), request_key="cap-1")
    assert one.captured == two.captured == Decimal("30.00")
    with pytest.raises(ValidationProblem) as reused:
        payments.capture(db, pid, Decimal("31.00"), request_key="cap-1")
    assert reused.value.code == "idempotency-key-reused"
    r1 = payments.refund_reference(db, "CO-1", Decimal("10.00"), request_key="ref-1")
    r2 = payments.refund_reference(db, "CO-1", Decimal("10.00"), request_key="ref-1")
    assert [r.id for r in r1] == [r.id for r in r2]
    assert payment(db, pid).refunded == Decimal("10.00")


def test_many_threads_capturing_then_refunding(db: Database, world: World) -> None:
    """8 concurrent captures of 30 on 100 authorised, then 8 refunds of 20: the limits hold
    in Mercato and at the gateway."""
    pid = _authorised(db, world)
    start = threading.Barrier(8)

    def attempt(operation: Callable[[], object]) -> bool:
        start.wait()
        try:
            operation()
            return True
        except ValidationProblem:
            return False

    with ThreadPoolExecutor(8) as pool:
        captures = list(
            pool.map(lambda _: attempt(lambda: payments.capture(db, pid, Decimal(30))), range(8))
        )
        refunds = list(
            pool.map(lambda _: attempt(lambda: payments.refund(db, pid, Decimal(20))), range(8))
        )
    assert (sum(captures), sum(refunds)) == (3, 4)
    p = payment(db, pid)
    assert (p.captured, p.refunded, p.capture_pending_minor, p.refund_pending_minor) == (
        Decimal("90.00"),
        Decimal("80.00"),
        0,
        0,
    )
    state = charge(db, p.provider_reference)
    assert (state["captured"], state["refunded"]) == (Decimal("90.00"), Decimal("80.00"))
    assert count_rows(db, Refund) == 4 and pending_rows(db) == 0


def test_crash_between_a_and_b_is_visible_and_reconciled(
    db: Database, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid = _authorised(db, world)
    calls: list[str] = []
    real_capture = SimulatedGateway.capture

    def unreachable(self: SimulatedGateway, request: ChargeRequest) -> object:
        calls.append(request.idempotency_key)
        real_capture(self, request)  # the gateway did it, but the answer was lost
        raise ProviderUnavailable("read timed out")

    monkeypatch.setattr(SimulatedGateway, "capture", unreachable)
    with pytest.raises(Problem) as unavailable:
        payments.capture(db, pid, Decimal("25.00"))
    assert (unavailable.value.status, unavailable.value.code) == (503, "provider-unavailable")
    p = payment(db, pid)
    # The amount stays reserved while the outcome is unknown: nothing can over-capture.
    assert (p.captured, p.capture_pending_minor, p.capturable) == (Decimal(0), 2500, Decimal(75))
    assert pending_rows(db) == 1
    with pytest.raises(ValidationProblem):
        payments.capture(db, pid, Decimal("75.01"))
    monkeypatch.setattr(SimulatedGateway, "capture", real_capture)
    assert payments.reconcile(db, older_than=timedelta(hours=1)) == 0  # not old enough yet
    assert payments.reconcile(db, older_than=timedelta(0)) == 1
    p = payment(db, pid)
    assert (p.status, p.captured, p.capture_pending_minor) == (
        "partially_captured",
        Decimal("25.00"),
        0,
    )
    assert charge(db, p.provider_reference)["captured"] == Decimal("25.00")  # captured once
    assert pending_rows(db) == 0
    assert payments.reconcile(db, older_than=timedelta(0)) == 0


def test_refund_left_pending_then_retried_with_the_same_key(
    db: Database, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid = _authorised(db, world)
    payments.capture(db, pid)

    def down(self: SimulatedGateway, request: ChargeRequest) -> object:
        raise ProviderUnavailable("connection refused")

    monkeypatch.setattr(SimulatedGateway, "refund", down)
    [pending] = payments.refund_reference(db, "CO-1", Decimal("15.00"), request_key="r-9")
    assert pending.status == "pending" and payment(db, pid).refundable == Decimal("85.00")
    monkeypatch.undo()
    [done] = payments.refund_reference(db, "CO-1", Decimal("15.00"), request_key="r-9")
    assert (done.id, done.status) == (pending.id, "succeeded")
    assert payment(db, pid).refunded == Decimal("15.00")
