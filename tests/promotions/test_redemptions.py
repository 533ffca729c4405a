"""Reserve, release and confirm redemptions; limits hold under many concurrent checkouts."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from mercato.db import Database
from mercato.errors import Conflict
from mercato.events import OutboxEvent
from mercato.promotions import service
from mercato.promotions.engine import PromotionResult
from mercato.promotions.models import (
    Promotion,
    PromotionBudget,
    PromotionCode,
    PromotionCustomerUsage,
    Redemption,
)
from mercato.promotions.schemas import PromotionPatch, PromotionStatus
from tests.promotions.conftest import (
    ACTOR,
    FIVE_OFF,
    PERCENT_10,
    D,
    World,
    active_redemptions,
    checkout,
    evaluate,
    reasons,
)

Make = Callable[..., int]
PAUSE = PromotionPatch(status=PromotionStatus.PAUSED)
THREADS = 20


def code_uses(db: Database, code: str) -> int:
    with db.read() as session:
        return int(
            session.scalar(select(PromotionCode.uses).where(PromotionCode.code == code)) or 0
        )


def counters(db: Database, promotion_id: int) -> tuple[int, int | None, dict[int, int]]:
    """The promotion's uses, its EUR budget spent (minor units) and per-customer uses."""
    with db.read() as session:
        uses = session.scalar(select(Promotion.uses).where(Promotion.id == promotion_id))
        spent = session.scalar(
            select(PromotionBudget.spent_minor).where(
                PromotionBudget.promotion_id == promotion_id, PromotionBudget.currency == "EUR"
            )
        )
        per_customer = dict(
            session.execute(
                select(PromotionCustomerUsage.customer_id, PromotionCustomerUsage.uses).where(
                    PromotionCustomerUsage.promotion_id == promotion_id
                )
            ).all()
        )
    return int(uses or 0), spent, per_customer


def statuses(db: Database, reference: str) -> list[str]:
    with db.read() as session:
        return list(
            session.scalars(
                select(Redemption.status)
                .where(Redemption.reference == reference)
                .order_by(Redemption.id)
            )
        )


def test_reserve_records_every_applied_promotion_and_counts_its_limits(
    db: Database, world: World, make_promotion: Make
) -> None:
    customer = world.customers[0]
    auto = make_promotion(PERCENT_10, priority=5, max_uses=10, budget={"EUR": "100.00"})
    coded = make_promotion(FIVE_OFF, requires_code=True, codes=("SPRING",), max_uses_per_customer=2)
    rows = checkout(db, world, "order-1", "spring", customer=customer)
    assert [(r.promotion_id, r.code, r.amount, r.currency, r.status) for r in rows] == [
        (auto, None, D("4.50"), "EUR", "reserved"),
        (coded, "SPRING", D("5.00"), "EUR", "reserved"),
    ]
    assert all(r.reference == "order-1" and r.customer_id == customer for r in rows)
    assert counters(db, auto) == (1, 450, {})
    assert counters(db, coded)[2] == {customer: 1}
    assert code_uses(db, "SPRING") == 1


def test_release_gives_everything_back_exactly_once(
    db: Database, world: World, make_promotion: Make
) -> None:
    customer = world.customers[1]
    promo = make_promotion(
        FIVE_OFF,
        requires_code=True,
        codes=("AGAIN",),
        max_uses=5,
        max_uses_per_customer=1,
        budget={"EUR": "50.00"},
    )
    checkout(db, world, "order-1", "AGAIN", customer=customer)
    checkout(db, world, "order-2", "AGAIN", customer=world.customers[0])
    assert counters(db, promo) == (2, 1000, {customer: 1, world.customers[0]: 1})
    with db.transaction() as session:
        released = service.release_redemptions(session, "order-1")
    assert [r.status for r in released] == ["released"] and released[0].released_at
    with db.transaction() as session:
        assert service.release_redemptions(session, "order-1") == []
    assert counters(db, promo) == (1, 500, {customer: 0, world.customers[0]: 1})
    assert code_uses(db, "AGAIN") == 1
    assert statuses(db, "order-1") == ["released"]
    # The customer may use it again: the released use no longer counts.
    assert checkout(db, world, "order-3", "AGAIN", customer=customer)
    with db.read() as session:
        types = list(session.scalars(select(OutboxEvent.type)))
    assert types.count("promotion.redemptions_released") == 1


def test_confirm_then_cancel_before_fulfilment_gives_back_once(
    db: Database, world: World, make_promotion: Make
) -> None:
    promo = make_promotion(FIVE_OFF, max_uses=3, budget={"EUR": "100.00"})
    checkout(db, world, "order-1")
    with db.transaction() as session:
        confirmed = service.confirm_redemptions(session, "order-1")
        assert [r.status for r in confirmed] == ["confirmed"] and confirmed[0].confirmed_at
        assert service.confirm_redemptions(session, "order-1") == []
    assert statuses(db, "order-1") == ["confirmed"]
    assert counters(db, promo)[:2] == (1, 500)
    with db.read() as session:
        event = session.scalar(select(OutboxEvent).where(OutboxEvent.type == "promotion.redeemed"))
        assert event is not None
        assert event.data["redemptions"][0]["amount"] == "5.00"
    with db.transaction() as session:
        assert [r.status for r in service.release_redemptions(session, "order-1")] == ["released"]
        assert service.release_redemptions(session, "order-1") == []
        assert service.confirm_redemptions(session, "order-1") == []
    assert statuses(db, "order-1") == ["released"]
    assert counters(db, promo)[:2] == (0, 0)


def test_a_limit_hit_in_reserve_is_a_409_and_leaves_nothing(
    db: Database, world: World, make_promotion: Make
) -> None:
    first = make_promotion(PERCENT_10, priority=5, max_uses=10, budget={"EUR": "100.00"})
    second = make_promotion(FIVE_OFF, requires_code=True, codes=("LASTONE",), max_uses=1)
    context = world.context("LASTONE")
    stale = evaluate(db, world.cart(), context)
    assert checkout(db, world, "winner", "LASTONE")
    with db.transaction() as session:
        with pytest.raises(service.PromotionUnavailable) as refused:
            service.reserve_redemptions(
                session, stale, reference="loser", customer_id=None, currency="EUR"
            )
        # The caller's transaction is still usable and holds nothing of the failed call.
        assert (
            session.scalars(select(Redemption).where(Redemption.reference == "loser")).all() == []
        )
    problem = refused.value
    assert problem.status == 409 and problem.code == "promotion-unavailable"
    assert problem.extra == {
        "promotion_id": second,
        "code": "LASTONE",
        "reason": "usage-limit-reached",
    }
    assert "LASTONE" in problem.detail
    assert counters(db, first)[:2] == (1, 450)
    assert counters(db, second)[0] == 1


def test_reserve_refuses_a_paused_promotion_and_a_second_reservation(
    db: Database, world: World, make_promotion: Make
) -> None:
    promo = make_promotion(FIVE_OFF)
    result = evaluate(db, world.cart(), world.context())
    with db.transaction() as session:
        service.reserve_redemptions(
            session, result, reference="o1", customer_id=None, currency="EUR"
        )
        with pytest.raises(Conflict) as again:
            service.reserve_redemptions(
                session, result, reference="o1", customer_id=None, currency="EUR"
            )
        assert again.value.code == "redemptions-exist"
        service.update_promotion(session, ACTOR, promo, PAUSE)
        with pytest.raises(service.PromotionUnavailable) as paused:
            service.reserve_redemptions(
                session, result, reference="o2", customer_id=None, currency="EUR"
            )
        assert paused.value.extra["reason"] == "inactive"
        with pytest.raises(ValueError):
            service.reserve_redemptions(
                session, result, reference="o3", customer_id=None, currency="JPY"
            )
    with db.transaction() as session:
        empty = evaluate(db, world.cart(), world.context())
        assert (
            service.reserve_redemptions(
                session, empty, reference="o4", customer_id=None, currency="EUR"
            )
            == []
        )


def test_a_personal_code_reserved_for_another_customer_is_refused(
    db: Database, world: World, make_promotion: Make
) -> None:
    owner, thief = world.customers[:2]
    promo = make_promotion(PERCENT_10, requires_code=True)
    with db.transaction() as session:
        code = service.issue_personal_code(session, ACTOR, promo, owner, None)
    result = evaluate(db, world.cart(), world.context(code, customer_id=owner))
    with db.transaction() as session, pytest.raises(service.PromotionUnavailable) as refused:
        service.reserve_redemptions(
            session, result, reference="stolen", customer_id=thief, currency="EUR"
        )
    assert refused.value.extra["reason"] == "not-your-code"
    assert code_uses(db, code) == 0
    assert checkout(db, world, "mine", code, customer=owner)
    assert reasons(evaluate(db, world.cart(), world.context(code, customer_id=owner))) == {
        code: "usage-limit-reached"
    }


def test_setting_a_limit_later_counts_the_redemptions_already_made(
    db: Database, world: World, make_promotion: Make
) -> None:
    customer = world.customers[0]
    promo = make_promotion(FIVE_OFF)
    for i in range(3):
        assert checkout(db, world, f"o{i}", customer=customer)
    with db.transaction() as session:
        service.release_redemptions(session, "o0")
    # No limit so far: nothing was counted on the promotion row.
    assert counters(db, promo) == (0, None, {})
    with db.transaction() as session:
        service.update_promotion(
            session,
            ACTOR,
            promo,
            PromotionPatch(max_uses=3, max_uses_per_customer=2, budget={"EUR": D("12.00")}),
        )
    assert counters(db, promo) == (2, 1000, {customer: 2})
    other = world.customers[1]
    assert evaluate(db, world.cart(), world.context(customer_id=customer)).applied == ()
    assert evaluate(db, world.cart(), world.context()).applied == ()  # a guest has no count
    assert evaluate(db, world.cart(), world.context(customer_id=other)).applied == ()  # budget
    with db.transaction() as session:
        service.update_promotion(session, ACTOR, promo, PromotionPatch(budget={"EUR": D("20.00")}))
    assert checkout(db, world, "o3", customer=other)
    assert counters(db, promo) == (3, 1500, {customer: 2, other: 1})
    assert evaluate(db, world.cart(), world.context(customer_id=world.customers[2])).applied == ()


# --- concurrency -----------------------------------------------------------------------------


def _race(db: Database, reserve: Callable[[int], list[Redemption]]) -> int:
    """THREADS checkouts reserving at the same moment; how many got a redemption."""
    start = threading.Barrier(THREADS)

    def attempt(i: int) -> bool:
        start.wait()
        try:
            return bool(reserve(i))
        except service.PromotionUnavailable:
            return False

    with ThreadPoolExecutor(THREADS) as pool:
        return sum(pool.map(attempt, range(THREADS)))


def _reserver(
    db: Database, result: PromotionResult, customer: Callable[[int], int | None]
) -> Callable[[int], list[Redemption]]:
    def reserve(i: int) -> list[Redemption]:
        with db.transaction() as session:
            return service.reserve_redemptions(
                session, result, reference=f"order-{i}", customer_id=customer(i), currency="EUR"
            )

    return reserve


@pytest.mark.slow
def test_a_one_use_code_is_reserved_exactly_once(
    db: Database, world: World, make_promotion: Make
) -> None:
    promo = make_promotion(FIVE_OFF, requires_code=True)
    with db.transaction() as session:
        service.create_code(session, ACTOR, promo, "ONLYONCE", max_uses=1)
    # Every buyer saw the code as usable before any of them checked out.
    result = evaluate(db, world.cart(), world.context("ONLYONCE"))
    assert [a.code for a in result.applied] == ["ONLYONCE"]
    assert _race(db, _reserver(db, result, lambda i: None)) == 1
    assert code_uses(db, "ONLYONCE") == 1
    assert active_redemptions(db, promo) == (1, D("5.00"))


def test_a_budget_is_never_exceeded_under_concurrent_checkouts(
    db: Database, world: World, make_promotion: Make
) -> None:
    promo = make_promotion(FIVE_OFF, budget={"EUR": "27.00"})
    result = evaluate(db, world.cart(), world.context())
    assert _race(db, _reserver(db, result, lambda i: None)) == 5
    count, total = active_redemptions(db, promo)
    assert (count, total) == (5, D("25.00"))
    assert counters(db, promo)[1] == 2500


def test_a_per_customer_limit_holds_under_concurrent_checkouts(
    db: Database, world: World, make_promotion: Make
) -> None:
    a, b = world.customers[:2]
    promo = make_promotion(PERCENT_10, max_uses_per_customer=2)
    result = evaluate(db, world.cart(), world.context(customer_id=a))
    assert _race(db, _reserver(db, result, lambda i: a if i % 2 else b)) == 4
    assert counters(db, promo)[2] == {a: 2, b: 2}


@pytest.mark.slow
def test_a_personal_code_raced_by_its_owner_and_others_is_used_once_by_its_owner(
    db: Database, world: World, make_promotion: Make
) -> None:
    owner = world.customers[0]
    promo = make_promotion(PERCENT_10, requires_code=True)
    with db.transaction() as session:
        code = service.issue_personal_code(session, ACTOR, promo, owner, None)
    result = evaluate(db, world.cart(), world.context(code, customer_id=owner))
    won = _race(db, _reserver(db, result, lambda i: owner if i % 2 else world.customers[1]))
    assert won == 1
    with db.read() as session:
        rows = session.execute(
            select(Redemption.customer_id, Redemption.code).where(Redemption.promotion_id == promo)
        ).all()
    assert [tuple(r) for r in rows] == [(owner, code)]


@pytest.mark.slow
def test_releases_racing_reservations_keep_the_budget_exact(
    db: Database, world: World, make_promotion: Make
) -> None:
    promo = make_promotion(FIVE_OFF, budget={"EUR": "20.00"}, max_uses=1000)
    result = evaluate(db, world.cart(), world.context())
    for i in range(4):
        assert checkout(db, world, f"old-{i}")

    def work(i: int) -> list[Redemption]:
        with db.transaction() as session:
            if i % 2 and i < 8:
                service.release_redemptions(session, f"old-{i // 2}")
                return []
            return service.reserve_redemptions(
                session, result, reference=f"new-{i}", customer_id=None, currency="EUR"
            )

    assert _race(db, work) <= 4  # at most what the four releases gave back
    count, total = active_redemptions(db, promo)
    uses, spent, _ = counters(db, promo)
    assert total <= D("20.00")
    assert (uses, spent) == (count, int(total * 100))


@pytest.mark.slow
def test_a_limit_set_while_checkouts_run_counts_every_one_of_them(
    db: Database, world: World, make_promotion: Make
) -> None:
    customer = world.customers[0]
    promo = make_promotion(FIVE_OFF)
    result = evaluate(db, world.cart(), world.context(customer_id=customer))

    def work(i: int) -> list[Redemption]:
        with db.transaction() as session:
            if i == THREADS // 2:
                limits = PromotionPatch(
                    max_uses=500, max_uses_per_customer=500, budget={"EUR": D("1000.00")}
                )
                service.update_promotion(session, ACTOR, promo, limits)
                return []
            return service.reserve_redemptions(
                session, result, reference=f"o-{i}", customer_id=customer, currency="EUR"
            )

    assert _race(db, work) == THREADS - 1
    count, total = active_redemptions(db, promo)
    assert counters(db, promo) == (count, int(total * 100), {customer: count})


# --- money properties --------------------------------------------------------------------------


@pytest.mark.slow
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    budget=st.integers(min_value=1, max_value=5000),
    steps=st.lists(
        st.tuples(st.booleans(), st.integers(min_value=1, max_value=2000)),
        min_size=1,
        max_size=8,
    ),
)
def test_budget_spent_always_equals_the_active_redemptions_and_stays_within_the_budget(
    db: Database, world: World, make_promotion: Make, budget: int, steps: list[tuple[bool, int]]
) -> None:
    """Any sequence of checkouts (of any price) and releases, in cents."""
    limit = Decimal(budget) / 100
    promo = make_promotion(
        {"type": "amount_off_order", "amounts": {"EUR": "10.00"}}, budget={"EUR": str(limit)}
    )
    reserved: list[str] = []
    for n, (release, cents) in enumerate(steps):
        if release and reserved:
            with db.transaction() as session:
                service.release_redemptions(session, reserved.pop(0))
            continue
        price = str(Decimal(cents) / 100)
        lines = [world.line("1", world.mug, price)]
        reference = f"p{promo}-{n}"
        if checkout(db, world, reference, lines=lines):
            reserved.append(reference)
        _, total = active_redemptions(db, promo)
        assert counters(db, promo)[1] == int(total * 100) <= budget
