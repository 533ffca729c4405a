"""Cart evaluation: automatic promotions, codes, every rejection reason, and a fixed number of
SQL statements however many promotions exist."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, text

from mercato.db import Database, utcnow
from mercato.errors import ValidationProblem
from mercato.promotions import service
from mercato.promotions.schemas import PromotionPatch, PromotionStatus
from tests.promotions.conftest import (
    ACTOR,
    FIVE_OFF,
    PERCENT_10,
    D,
    World,
    applied,
    checkout,
    evaluate,
    reasons,
)

Make = Callable[..., int]
PAUSE = PromotionPatch(status=PromotionStatus.PAUSED)


def test_automatic_promotion_applies_without_a_code(
    db: Database, world: World, make_promotion: Make
) -> None:
    promo = make_promotion(PERCENT_10)
    result = evaluate(db, world.cart(), world.context())
    assert applied(result) == {promo: D("4.50")}
    assert result.total == D("40.50")
    assert result.rejected_codes == ()


def test_code_promotion_applies_only_with_its_code_in_any_case(
    db: Database, world: World, make_promotion: Make
) -> None:
    promo = make_promotion(FIVE_OFF, requires_code=True, codes=("WELCOME5",))
    assert evaluate(db, world.cart(), world.context()).applied == ()
    result = evaluate(db, world.cart(), world.context("  welcome5 "))
    assert applied(result) == {promo: D("5.00")}
    assert result.applied[0].code == "WELCOME5"
    # The same code in JPY takes the JPY amount.
    jpy = [world.line("1", world.mug, "3000")]
    result = evaluate(db, jpy, world.context("WELCOME5", currency="JPY"))
    assert applied(result) == {promo: D("500")}


def test_automatic_and_code_promotions_stack(
    db: Database, world: World, make_promotion: Make
) -> None:
    auto = make_promotion(PERCENT_10, priority=10)
    coded = make_promotion(FIVE_OFF, requires_code=True, codes=("FIVE",))
    coffee = make_promotion(
        {"type": "percent_off_items", "percent": "20", "items": {"category_ids": [world.drinks]}},
        priority=5,
    )
    result = evaluate(db, world.cart(), world.context("FIVE"))
    # 10 % of 45.00, then 20 % of what is left of the beans (22.50), then 5.00 off the order.
    assert applied(result) == {auto: D("4.50"), coffee: D("4.50"), coded: D("5.00")}
    assert result.total == D("31.00")


def test_inactive_and_out_of_schedule_automatic_promotions_do_not_apply(
    db: Database, world: World, make_promotion: Make
) -> None:
    make_promotion(PERCENT_10, status="draft")
    paused = make_promotion(PERCENT_10)
    with db.transaction() as session:
        service.update_promotion(session, ACTOR, paused, PAUSE)
    now = utcnow()
    make_promotion(PERCENT_10, starts_at=(now + timedelta(days=1)).isoformat())
    make_promotion(
        PERCENT_10,
        starts_at=(now - timedelta(days=2)).isoformat(),
        ends_at=(now - timedelta(days=1)).isoformat(),
    )
    running = make_promotion(
        FIVE_OFF,
        starts_at=(now - timedelta(days=1)).isoformat(),
        ends_at=(now + timedelta(days=1)).isoformat(),
    )
    assert applied(evaluate(db, world.cart(), world.context())) == {running: D("5.00")}


def test_every_code_gets_one_reason(db: Database, world: World, make_promotion: Make) -> None:
    now = utcnow()
    a, b, c = world.customers
    make_promotion(FIVE_OFF, requires_code=True, codes=("GOOD",))
    paused = make_promotion(FIVE_OFF, requires_code=True, codes=("PAUSED",))
    later = make_promotion(
        FIVE_OFF,
        requires_code=True,
        codes=("LATER",),
        starts_at=(now + timedelta(days=3)).isoformat(),
    )
    make_promotion({**FIVE_OFF, "amounts": {"JPY": "500"}}, requires_code=True, codes=("YEN",))
    big = make_promotion(
        FIVE_OFF, requires_code=True, codes=("BIG",), conditions={"min_subtotal": {"EUR": "100.00"}}
    )
    personal = make_promotion(PERCENT_10, requires_code=True)
    make_promotion(FIVE_OFF, requires_code=True, codes=("ONCE",), max_uses_per_customer=1)
    with db.transaction() as session:
        service.update_promotion(session, ACTOR, paused, PAUSE)
        mine = service.issue_personal_code(session, ACTOR, personal, a, None)
        service.create_code(session, ACTOR, later, "SOON", expires_at=now + timedelta(days=1))
        disabled = service.create_code(session, ACTOR, big, "OFF")
        service.disable_code(session, ACTOR, big, disabled.id)
    assert checkout(db, world, "first", "ONCE", customer=b)
    result = evaluate(
        db,
        world.cart(),
        world.context(
            "GOOD",
            "good",
            "nope",
            "PAUSED",
            "LATER",
            "YEN",
            "BIG",
            "OFF",
            mine,
            "ONCE",
            customer_id=b,
        ),
    )
    assert reasons(result) == {
        "NOPE": "unknown-code",
        "PAUSED": "inactive",
        "LATER": "not-started",
        "YEN": "currency-not-eligible",
        "BIG": "minimum-not-met",
        "OFF": "inactive",
        mine: "not-your-code",
        "ONCE": "customer-limit-reached",
    }
    assert [x.code for x in result.applied] == ["GOOD"]
    guest = evaluate(db, world.cart(), world.context(mine, "ONCE"))
    assert reasons(guest) == {mine: "sign-in-required", "ONCE": "sign-in-required"}
    assert reasons(evaluate(db, world.cart(), world.context(mine, customer_id=c))) == {
        mine: "not-your-code"
    }
    owner = evaluate(db, world.cart(), world.context(mine, customer_id=a))
    assert applied(owner) == {personal: D("4.50")} and owner.rejected_codes == ()
    # Past its own expiry a code is expired, whatever its promotion's schedule.
    after = evaluate(db, world.cart(), world.context("SOON", now=now + timedelta(days=5)))
    assert reasons(after) == {"SOON": "expired"}


def test_two_codes_of_one_promotion_are_reported_as_duplicate(
    db: Database, world: World, make_promotion: Make
) -> None:
    make_promotion(FIVE_OFF, requires_code=True, codes=("AAA", "BBB"))
    result = evaluate(db, world.cart(), world.context("BBB", "AAA"))
    assert [x.code for x in result.applied] == ["AAA"]
    assert reasons(result) == {"BBB": "duplicate-code"}


def test_used_up_codes_and_promotions_stop_applying(
    db: Database, world: World, make_promotion: Make
) -> None:
    single = make_promotion(FIVE_OFF, requires_code=True)
    make_promotion(PERCENT_10, max_uses=2, requires_code=True, codes=("TWICE",))
    with db.transaction() as session:
        service.create_code(session, ACTOR, single, "SINGLE", max_uses=1)
    assert checkout(db, world, "o1", "SINGLE", "TWICE")
    assert checkout(db, world, "o2", "TWICE")
    result = evaluate(db, world.cart(), world.context("SINGLE", "TWICE"))
    assert reasons(result) == {"SINGLE": "usage-limit-reached", "TWICE": "usage-limit-reached"}
    assert result.applied == ()
    automatic = make_promotion(FIVE_OFF, max_uses=1)
    assert [r.promotion_id for r in checkout(db, world, "o3")] == [automatic]
    assert evaluate(db, world.cart(), world.context()).applied == ()


def test_a_budget_too_small_for_the_discount_drops_only_that_promotion(
    db: Database, world: World, make_promotion: Make
) -> None:
    auto = make_promotion(PERCENT_10, priority=5)
    budgeted = make_promotion(
        FIVE_OFF, requires_code=True, codes=("BUDGET",), budget={"EUR": "8.00"}
    )
    assert checkout(db, world, "o1", "BUDGET")  # 5.00 of 8.00 spent, 3.00 left
    result = evaluate(db, world.cart(), world.context("BUDGET"))
    assert applied(result) == {auto: D("4.50")}
    assert reasons(result) == {"BUDGET": "budget-exhausted"}
    # A smaller cart whose discount fits what is left still gets it.
    small = [world.line("1", world.mug, "2.50")]
    assert applied(evaluate(db, small, world.context("BUDGET"))) == {
        auto: D("0.25"),
        budgeted: D("2.25"),
    }
    # The budget is per currency: JPY has none.
    jpy = [world.line("1", world.mug, "3000")]
    assert budgeted in applied(evaluate(db, jpy, world.context("BUDGET", currency="JPY")))


def test_too_many_codes_is_a_validation_problem(db: Database, world: World) -> None:
    with pytest.raises(ValidationProblem) as problem:
        evaluate(db, world.cart(), world.context(*[f"CODE{i}" for i in range(21)]))
    assert problem.value.errors[0]["field"] == "body.codes"


@contextmanager
def counted(db: Database) -> Iterator[list[str]]:
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(db.engine, "before_cursor_execute", count)


def _evaluation_statements(db: Database, world: World, codes: list[str], customer: int) -> int:
    with db.read() as session:
        session.execute(text("SELECT 1"))  # the transaction has begun: BEGIN is not counted
        with counted(db) as statements:
            result = service.evaluate(
                session, lines=world.cart(), context=world.context(*codes, customer_id=customer)
            )
    assert result.applied
    return len(statements)


def test_evaluation_runs_a_fixed_number_of_statements(
    db: Database, world: World, make_promotion: Make
) -> None:
    customer = world.customers[0]
    codes = ["CODE0"]
    make_promotion(
        FIVE_OFF,
        requires_code=True,
        codes=("CODE0",),
        budget={"EUR": "100.00"},
        max_uses_per_customer=3,
    )
    with_one = _evaluation_statements(db, world, codes, customer)
    for i in range(1, 50):
        if i % 2:
            make_promotion(
                PERCENT_10,
                budget={"EUR": "1000.00"},
                max_uses=100,
                conditions={"channel_ids": [world.channel_id]},
            )
        else:
            make_promotion(
                FIVE_OFF, requires_code=True, codes=(f"CODE{i}",), max_uses_per_customer=2
            )
            codes.append(f"CODE{i}")
    with_fifty = _evaluation_statements(db, world, codes[:20], customer)
    assert with_one == with_fifty <= 3
