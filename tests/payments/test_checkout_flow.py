"""The checkout's payment steps: record tenders, authorise with no transaction open, record
the answers, compensate. Every built-in provider's happy and failure paths."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest

from mercato.db import Database
from mercato.errors import Problem, ValidationProblem
from mercato.payments import service as payments
from mercato.payments.models import Payment
from mercato.payments.service import TenderRequest
from tests.helpers import outbox
from tests.payments.conftest import (
    DECLINED,
    INSUFFICIENT,
    THREE_DS,
    World,
    assert_balances_match_ledgers,
    card,
    card_tender,
    charge,
    count_rows,
    create,
    gateway,
    gift_balance,
    issue_card,
    ledger,
    pay,
    payment,
)


def test_card_is_authorised_and_recorded(db: Database, world: World) -> None:
    [p] = pay(db, world, [card_tender(db, "49.90")])
    assert p.status == "authorized" and p.authorized == Decimal("49.90")
    assert p.captured == 0 and p.card_brand == "visa" and p.card_last4 == "4242"
    assert p.provider_reference and p.provider_reference.startswith("ch_")
    assert charge(db, p.provider_reference)["authorized"] == Decimal("49.90")
    assert ledger(db, p.id) == [("authorize", "succeeded", Decimal("49.90"))]
    assert [e.data["payment_id"] for e in outbox(db, "payment.authorized")] == [p.id]


def test_declined_cards_and_bad_tokens(db: Database, world: World) -> None:
    token = card(db)
    tenders = [
        card_tender(db, "10.00", DECLINED),
        card_tender(db, "10.00", INSUFFICIENT),
        TenderRequest("test_gateway", Decimal(5), token=token),
        TenderRequest("test_gateway", Decimal(5), token=token),
        TenderRequest("test_gateway", Decimal(5), token="tok_nope"),
    ]
    made = pay(db, world, tenders)
    assert [(p.status, p.failure_code) for p in made] == [
        ("declined", "card_declined"),
        ("declined", "insufficient_funds"),
        ("authorized", None),
        ("declined", "token_already_used"),
        ("declined", "invalid_token"),
    ]
    assert made[0].authorized == 0 and made[0].card_last4 == "0002"
    assert ledger(db, made[0].id) == [("authorize", "failed", Decimal("10.00"))]
    declined = [e.data["failure_code"] for e in outbox(db, "payment.declined")]
    assert declined == [
        "card_declined",
        "insufficient_funds",
        "token_already_used",
        "invalid_token",
    ]


def test_retried_authorise_never_charges_twice(db: Database, world: World) -> None:
    ids = create(db, world, [card_tender(db, "30.00")])
    first = payments.authorize_pending(db, ids)
    # The checkout crashed before recording, and retries: same key, same charge.
    second = payments.authorize_pending(db, ids)
    assert first == second and first[0].status == "authorized"
    assert gateway(db).count_charges() == 1
    with db.transaction() as session:
        payments.record_outcomes(session, first)
    with db.transaction() as session:
        payments.record_outcomes(session, second)  # recording twice changes nothing
    assert payment(db, ids[0]).status == "authorized"
    assert [k for k, _, _ in ledger(db, ids[0])] == ["authorize"]
    assert payments.authorize_pending(db, ids) == []  # no longer pending: no provider call


def test_concurrent_retries_of_one_authorisation_make_one_charge(
    db: Database, world: World
) -> None:
    ids = create(db, world, [card_tender(db, "30.00")])
    start = threading.Barrier(8)

    def authorise(_: int) -> list[payments.ProviderOutcome]:
        start.wait()
        return payments.authorize_pending(db, ids)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(authorise, range(8)))
    assert all(a == answers[0] for a in answers) and answers[0][0].status == "authorized"
    assert gateway(db).count_charges() == 1


def test_three_d_secure_completed_by_the_shopper(db: Database, world: World) -> None:
    [p] = pay(db, world, [card_tender(db, "80.00", THREE_DS)])
    assert p.status == "requires_action"
    assert p.action_url and p.provider_reference and p.provider_reference in p.action_url
    with pytest.raises(Problem) as wrong:
        payments.complete_action(db, p.id, channel_id=world.web, client_secret="pcs_guess")
    assert wrong.value.status == 404
    done = payments.complete_action(db, p.id, channel_id=world.web, client_secret=p.client_secret)
    assert done.status == "authorized" and done.authorized == Decimal("80.00")
    assert [s for _, s, _ in ledger(db, p.id)] == ["requires_action", "succeeded"]
    again = payments.complete_action(db, p.id, channel_id=world.web, client_secret=p.client_secret)
    assert again.status == "authorized" and len(ledger(db, p.id)) == 2

    [failing] = pay(db, world, [card_tender(db, "80.00", THREE_DS)], reference="CO-2")
    done = payments.complete_action(
        db,
        failing.id,
        channel_id=world.web,
        client_secret=failing.client_secret,
        data={"outcome": "failed"},
    )
    assert done.status == "declined" and done.failure_code == "authentication_failed"
    assert charge(db, failing.provider_reference)["status"] == "declined"


def test_cash_on_delivery_and_store_terminal(db: Database, world: World) -> None:
    [cod] = pay(db, world, [TenderRequest("cash_on_delivery", Decimal("25.00"))])
    assert cod.status == "authorized" and cod.captured == 0
    collected = payments.capture(db, cod.id)  # the courier brought the cash back
    assert collected.status == "captured" and collected.captured == Decimal("25.00")
    tenders = [
        TenderRequest("pos_cash", Decimal("5.00"), location_id=7),
        TenderRequest("pos_card", Decimal("15.00"), approval_code="a1b2c3", location_id=7),
    ]
    cash, terminal = pay(db, world, tenders, channel=world.pos, reference="POS-1")
    assert (cash.status, cash.captured) == ("captured", Decimal("5.00"))
    assert (terminal.status, terminal.approval_code) == ("captured", "A1B2C3")
    assert [k for k, _, _ in ledger(db, terminal.id)] == ["authorize", "capture"]


def test_tender_validation_names_the_field_and_writes_nothing(db: Database, world: World) -> None:
    pos = world.pos
    cases = [
        ([TenderRequest("bitcoin", Decimal(1))], "body.payments[0].method", None),
        (
            [TenderRequest("test_gateway", Decimal("1.005"), token="t")],
            "body.payments[0].amount",
            None,
        ),
        ([TenderRequest("test_gateway", Decimal(0), token="t")], "body.payments[0].amount", None),
        ([TenderRequest("test_gateway", Decimal(-3), token="t")], "body.payments[0].amount", None),
        ([TenderRequest("test_gateway", Decimal(1))], "body.payments[0].token", None),
        ([TenderRequest("pos_card", Decimal(1))], "body.payments[0].approval_code", pos),
        (
            [TenderRequest("pos_card", Decimal(1), approval_code="1")],
            "body.payments[0].approval_code",
            pos,
        ),
        ([TenderRequest("pos_cash", Decimal(1))], "body.payments[0].method", None),  # web channel
        ([TenderRequest("cash_on_delivery", Decimal(1))], "body.payments[0].method", pos),
        ([TenderRequest("store_credit", Decimal(1))], "body.payments[0].method", None),
        (
            [TenderRequest("gift_card", Decimal(1), token="t")],
            "body.payments[0].gift_card_code",
            None,
        ),
        (
            [TenderRequest("pos_cash", Decimal(1), approval_code="123456")],
            "body.payments[0].approval_code",
            pos,
        ),
    ]
    for tenders, field, channel in cases:
        with pytest.raises(ValidationProblem) as problem:
            create(db, world, tenders, total="1", channel=channel)
        assert problem.value.errors[0]["field"] == field, (tenders, problem.value.errors)
    with pytest.raises(ValidationProblem) as problem:
        create(db, world, [card_tender(db, "100.5")], currency="JPY")
    assert problem.value.errors[0]["field"] == "body.payments[0].amount"
    assert count_rows(db, Payment) == 0
    [p] = pay(db, world, [card_tender(db, "1500")], currency="JPY")
    assert p.amount == Decimal(1500) and p.status == "authorized"


def test_tenders_must_add_up_to_the_total(db: Database, world: World) -> None:
    code = issue_card(db, "50.00")
    tenders = [
        TenderRequest("gift_card", Decimal("20.00"), gift_card_code=code),
        card_tender(db, "30.00"),
    ]
    with pytest.raises(ValidationProblem) as problem:
        create(db, world, tenders, total="50.01")
    assert problem.value.errors == [
        {"field": "body.payments", "reason": "payment amount does not match the total"}
    ]
    assert gift_balance(db, code) == Decimal("50.00")  # the redemption never happened
    assert count_rows(db, Payment) == 0


def test_split_tender_redeems_the_gift_card_at_once(db: Database, world: World) -> None:
    code = issue_card(db, "50.00")
    gift, card_payment = pay(
        db,
        world,
        [
            TenderRequest("gift_card", Decimal("20.00"), gift_card_code=code.lower()),
            card_tender(db, "30.00"),
        ],
    )
    assert (gift.status, gift.captured) == ("captured", Decimal("20.00"))
    assert card_payment.status == "authorized"
    assert gift_balance(db, code) == Decimal("30.00")
    assert_balances_match_ledgers(db)


def test_compensation_releases_everything(db: Database, world: World) -> None:
    """Checkout failed after paying: card authorisation voided, gift card refilled."""
    code = issue_card(db, "50.00")
    made = pay(
        db,
        world,
        [
            TenderRequest("gift_card", Decimal("20.00"), gift_card_code=code),
            card_tender(db, "30.00"),
            card_tender(db, "5.00", THREE_DS),
            card_tender(db, "1.00", DECLINED),
        ],
    )
    ids = [p.id for p in made]
    voided = payments.void_payments(db, ids)
    assert [p.status for p in voided] == ["voided", "voided", "voided", "declined"]
    assert gift_balance(db, code) == Decimal("50.00")
    assert charge(db, made[1].provider_reference)["status"] == "voided"
    assert [e.data["payment_id"] for e in outbox(db, "payment.voided")] == ids[:3]
    again = payments.void_payments(db, ids)  # compensating twice is harmless
    assert [p.status for p in again] == [p.status for p in voided]
    assert gift_balance(db, code) == Decimal("50.00")
    assert_balances_match_ledgers(db)


def test_compensation_before_the_answer_was_recorded(db: Database, world: World) -> None:
    """Authorised at the gateway, crash before record_outcomes: the void still finds it."""
    ids = create(db, world, [card_tender(db, "12.00")])
    [outcome] = payments.authorize_pending(db, ids)
    [p] = payments.void_payments(db, ids)
    assert p.status == "voided"
    assert charge(db, outcome.result.provider_reference)["status"] == "voided"


def test_compensation_refunds_a_captured_card_and_reverses_pos(db: Database, world: World) -> None:
    [web] = pay(db, world, [card_tender(db, "40.00")])
    payments.capture(db, web.id)
    [store] = pay(
        db, world, [TenderRequest("pos_cash", Decimal("9.00"))], channel=world.pos, reference="P"
    )
    web_after, store_after = payments.void_payments(db, [web.id, store.id])
    assert (web_after.status, web_after.refunded) == ("refunded", Decimal("40.00"))
    assert (store_after.status, store_after.captured) == ("voided", Decimal(0))


def test_store_credit_as_tender(db: Database, world: World) -> None:
    with db.transaction() as session:
        payments.credit_store(session, world.customer, "EUR", Decimal("15.00"), "return", "R-1")
    tenders = [TenderRequest("store_credit", Decimal("10.00")), card_tender(db, "5.00")]
    credit, _ = pay(db, world, tenders, customer=world.customer)
    assert credit.status == "captured"
    with db.read() as session:
        assert payments.store_credit_balance(session, world.customer, "EUR") == Decimal("5.00")
    with pytest.raises(Problem) as short:
        create(
            db,
            world,
            [TenderRequest("store_credit", Decimal("6.00"))],
            customer=world.customer,
            reference="CO-2",
        )
    assert (short.value.status, short.value.code) == (409, "insufficient-store-credit")
    [voided] = payments.void_payments(db, [credit.id])
    assert voided.status == "voided"
    with db.read() as session:
        assert payments.store_credit_balance(session, world.customer, "EUR") == Decimal("15.00")
    assert_balances_match_ledgers(db)


def test_provider_unavailable_is_a_failed_outcome(
    db: Database, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mercato.payments.providers import ProviderUnavailable, SimulatedGateway

    def down(self: SimulatedGateway, request: object) -> None:
        raise ProviderUnavailable("connection timed out")

    ids = create(db, world, [card_tender(db, "8.00")])
    monkeypatch.setattr(SimulatedGateway, "authorize", down)
    [outcome] = payments.authorize_pending(db, ids)
    assert outcome.status == "failed" and outcome.result.code == "provider_unavailable"
    with db.transaction() as session:
        [p] = payments.record_outcomes(session, [outcome])
    assert p.status == "failed"
    monkeypatch.undo()
    # The gateway may have authorised before the timeout: compensation voids by the key.
    [voided] = payments.void_payments(db, ids)
    assert voided.status == "voided"
