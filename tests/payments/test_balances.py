"""Gift cards and store credit: issue, balance, redemption under concurrency, the ledger."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select, update

from mercato.auth.principal import Principal
from mercato.db import Database, utcnow
from mercato.errors import Problem
from mercato.payments import balances
from mercato.payments import service as payments
from mercato.payments.models import GiftCard, GiftCardTransaction
from mercato.payments.service import TenderRequest
from tests.helpers import audit_entries, outbox
from tests.payments.conftest import (
    World,
    assert_balances_match_ledgers,
    create,
    gift_balance,
    issue_card,
)


def test_issued_code_is_never_stored(db: Database) -> None:
    with db.transaction() as session:
        issued = balances.issue_gift_card(
            session, Principal.system("tests"), currency="eur", amount=Decimal("25")
        )
    code = issued.code
    assert len(code) == 19 and code.count("-") == 3
    with db.read() as session:
        card = session.scalars(select(GiftCard)).one()
        stored = [str(v) for v in vars(card).values()]
        assert not any(code.replace("-", "") in v.replace("-", "") for v in stored)
        assert card.last4 == code[-4:] and card.currency == "EUR"
        assert card.balance == Decimal("25.00")
    event = outbox(db, "gift_card.issued")[0]
    assert code not in str(event.data) and code.replace("-", "") not in str(event.data)


def test_unknown_disabled_and_expired_codes_look_the_same(db: Database) -> None:
    good = issue_card(db, "10.00")
    disabled = issue_card(db, "10.00")
    expired = issue_card(db, "10.00", expires_at=utcnow() + timedelta(seconds=30))
    with db.transaction() as session:
        card = balances.find_usable_gift_card(session, disabled)
        balances.set_gift_card_status(session, Principal.system("tests"), card.id, "disabled")
        session.execute(
            update(GiftCard)
            .where(GiftCard.last4 == expired[-4:])
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    answers = []
    for code in ("AAAA-BBBB-CCCC-DDDD", disabled, expired):
        with db.read() as session, pytest.raises(Problem) as refused:
            balances.find_usable_gift_card(session, code)
        answers.append(refused.value.body())
    assert answers[0] == answers[1] == answers[2]
    assert answers[0]["code"] == "gift-card-not-usable"
    assert gift_balance(db, good.replace("-", " ").lower()) == Decimal("10.00")


def test_partial_redemptions_and_the_refusals(db: Database, world: World) -> None:
    code = issue_card(db, "30.00")
    create(db, world, [TenderRequest("gift_card", Decimal("12.50"), gift_card_code=code)])
    assert gift_balance(db, code) == Decimal("17.50")
    with pytest.raises(Problem) as short:
        create(
            db,
            world,
            [TenderRequest("gift_card", Decimal("17.51"), gift_card_code=code)],
            reference="CO-2",
        )
    assert (short.value.status, short.value.code) == (409, "insufficient-gift-card-balance")
    assert short.value.extra["available"] == "17.50"
    with pytest.raises(Problem) as currency:
        create(
            db,
            world,
            [TenderRequest("gift_card", Decimal(100), gift_card_code=code)],
            reference="CO-3",
            currency="JPY",
        )
    assert currency.value.errors[0]["field"] == "body.payments[0].gift_card_code"
    with pytest.raises(Problem) as unknown:
        create(
            db,
            world,
            [TenderRequest("gift_card", Decimal(1), gift_card_code="NOPE-NOPE")],
            reference="CO-4",
        )
    assert unknown.value.code == "gift-card-not-usable"
    assert gift_balance(db, code) == Decimal("17.50")
    assert_balances_match_ledgers(db)


@pytest.mark.slow
def test_many_threads_spending_one_gift_card(db: Database, world: World) -> None:
    """16 checkouts race for one card worth 10 x 7.00: exactly 10 win, never below zero."""
    code = issue_card(db, "70.00")
    start = threading.Barrier(16)

    def checkout(n: int) -> bool:
        start.wait()
        try:
            create(
                db,
                world,
                [TenderRequest("gift_card", Decimal("7.00"), gift_card_code=code)],
                reference=f"RACE-{n}",
            )
            return True
        except Problem as refused:
            assert refused.code == "insufficient-gift-card-balance"
            return False

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(checkout, range(16)))
    assert sum(results) == 10
    assert gift_balance(db, code) == 0
    with db.read() as session:
        entries = session.scalars(select(GiftCardTransaction.amount_minor)).all()
    assert sorted(entries) == [-700] * 10 + [7000]
    assert_balances_match_ledgers(db)


@pytest.mark.slow
def test_concurrent_redemptions_and_voids_keep_the_ledger(db: Database, world: World) -> None:
    code = issue_card(db, "20.00")

    def spend_and_maybe_undo(n: int) -> None:
        try:
            ids = create(
                db,
                world,
                [TenderRequest("gift_card", Decimal("3.00"), gift_card_code=code)],
                reference=f"MIX-{n}",
            )
        except Problem:
            return
        if n % 2:
            payments.void_payments(db, ids)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(spend_and_maybe_undo, range(24)))
    assert gift_balance(db, code) >= 0
    assert_balances_match_ledgers(db)


def test_store_credit_credit_spend_adjust(db: Database, world: World) -> None:
    owner = Principal.system("support")
    with db.transaction() as session:
        payments.credit_store(
            session, world.customer, "EUR", Decimal("12.00"), "return to store credit", "RMA-1"
        )
        balances.adjust_store_credit(session, owner, world.customer, "EUR", Decimal("-2.00"), "fix")
    with db.transaction() as session, pytest.raises(Problem) as below_zero:
        balances.adjust_store_credit(session, owner, world.customer, "EUR", Decimal("-10.01"), "x")
    assert below_zero.value.code == "insufficient-store-credit"
    with db.read() as session:
        [account] = payments.store_credit_accounts(session, world.customer)
        assert (account.currency, account.balance) == ("EUR", Decimal("10.00"))
    assert [e.action for e in audit_entries(db, "store_credit.adjusted")] == [
        "store_credit.adjusted"
    ]
    with db.transaction() as session, pytest.raises(Problem) as precision:
        payments.credit_store(session, world.customer, "JPY", Decimal("1.5"), None, None)
    assert precision.value.errors[0]["field"] == "body.amount"
    assert_balances_match_ledgers(db)


def test_many_threads_spending_store_credit(db: Database, world: World) -> None:
    with db.transaction() as session:
        payments.credit_store(session, world.customer, "EUR", Decimal("10.00"), "gift", None)
    start = threading.Barrier(8)

    def spend(n: int) -> bool:
        start.wait()
        try:
            create(
                db,
                world,
                [TenderRequest("store_credit", Decimal("3.00"))],
                customer=world.customer,
                reference=f"SC-{n}",
            )
            return True
        except Problem:
            return False

    with ThreadPoolExecutor(8) as pool:
        assert sum(pool.map(spend, range(8))) == 3
    with db.read() as session:
        assert payments.store_credit_balance(session, world.customer, "EUR") == Decimal("1.00")
    assert_balances_match_ledgers(db)
