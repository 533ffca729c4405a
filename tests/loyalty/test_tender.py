"""Points as a payment tender (``loyalty_points``), through the payments steps checkout runs:
record the tenders, authorise with no transaction open, record the answers."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import pytest

from mercato.auth.principal import Principal
from mercato.db import Database
from mercato.errors import ValidationProblem
from mercato.loyalty import service as loyalty
from mercato.loyalty.provider import LoyaltyPointsProvider
from mercato.payments import service as payments
from mercato.payments.models import Payment
from mercato.payments.providers import (
    AuthorizeRequest,
    ChargeRequest,
    Outcome,
    SimulatedGateway,
)
from mercato.payments.service import TenderRequest
from tests.loyalty.conftest import (
    Loyal,
    assert_ledger_consistent,
    balance,
    configure,
    entry_count,
    kinds,
)

STAFF = Principal.system("tests")


@pytest.fixture(autouse=True)
def _provider_registered(app: Any) -> None:
    """Creating the application registers ``loyalty_points`` with payments."""


def give(db: Database, customer: int, points: int) -> None:
    with db.transaction() as session:
        loyalty.earn(session, STAFF, customer, points, reference_type="test", reference_id="G")


def pay(
    db: Database,
    channel: int,
    customer: int | None,
    tenders: Sequence[TenderRequest],
    *,
    reference: str = "CO-1",
    currency: str = "EUR",
) -> list[Payment]:
    with db.transaction() as session:
        made = payments.create_payments(
            session,
            reference=reference,
            customer_id=customer,
            channel_id=channel,
            currency=currency,
            total=sum((t.amount for t in tenders), Decimal(0)),
            tenders=tenders,
        )
        ids = [p.id for p in made]
    outcomes = payments.authorize_pending(db, ids)
    with db.transaction() as session:
        payments.record_outcomes(session, outcomes)
        return payments.get_payments(session, ids)


def points(amount: str) -> TenderRequest:
    return TenderRequest("loyalty_points", Decimal(amount))


def cash(amount: str) -> TenderRequest:
    return TenderRequest("pos_cash", Decimal(amount), location_id=1)


def test_points_pay_part_of_a_store_sale(app: Any, db: Database, loyal: Loyal) -> None:
    give(db, loyal.hana, 1000)  # worth 10.00 EUR
    paid = pay(db, loyal.pos, loyal.hana, [points("4.00"), cash("6.00")])
    assert [(p.method, p.status) for p in paid] == [
        ("loyalty_points", "captured"),
        ("pos_cash", "captured"),
    ]
    assert balance(db, loyal.hana) == 600
    with db.read() as session:
        spent = loyalty.entries(session, loyal.hana, kind="redeem").items[0]
        assert (spent.points, spent.channel_id, spent.reference_id) == (-400, loyal.pos, "CO-1")
    # The provider answers a repeated authorisation with its first answer, spending nothing.
    again = LoyaltyPointsProvider(db).authorize(
        AuthorizeRequest(
            payment_id=paid[0].id,
            reference="CO-1",
            amount=Decimal("4.00"),
            currency="EUR",
            idempotency_key=payments.authorization_key(paid[0].id),
            customer_id=loyal.hana,
        )
    )
    assert again.outcome is Outcome.CAPTURED
    assert balance(db, loyal.hana) == 600
    assert_ledger_consistent(db)


def test_refunds_give_the_points_back_never_more(app: Any, db: Database, loyal: Loyal) -> None:
    give(db, loyal.hana, 1000)
    tender = pay(db, loyal.web, loyal.hana, [points("4.00")])[0]
    payments.refund(db, tender.id, Decimal("1.00"))
    assert balance(db, loyal.hana) == 700
    payments.refund(db, tender.id, Decimal("3.00"))
    assert balance(db, loyal.hana) == 1000
    with pytest.raises(ValidationProblem):
        payments.refund(db, tender.id, Decimal("0.01"))
    # The provider itself refuses more than was spent, whoever asks.
    refused = LoyaltyPointsProvider(db).refund(
        ChargeRequest(
            payment_id=tender.id,
            amount=Decimal("0.01"),
            currency="EUR",
            idempotency_key="extra-refund",
            provider_reference=tender.provider_reference,
            authorization_key=payments.authorization_key(tender.id),
        )
    )
    assert (refused.outcome, refused.code) == (Outcome.FAILED, "amount_exceeds_redeemed")
    assert kinds(db, loyal.hana)[1:] == [("redeem", -400), ("refund", 100), ("refund", 300)]
    assert balance(db, loyal.hana) == 1000
    assert_ledger_consistent(db)


def test_a_failed_checkout_gives_the_points_back(app: Any, db: Database, loyal: Loyal) -> None:
    give(db, loyal.hana, 1000)
    declined = SimulatedGateway(db).tokenize("4000000000000002", 12, 2099, "123").token
    card = TenderRequest("test_gateway", Decimal("5.00"), token=declined)
    paid = pay(db, loyal.web, loyal.hana, [points("3.00"), card])
    assert [p.status for p in paid] == ["captured", "declined"]
    assert balance(db, loyal.hana) == 700
    payments.void_payments(db, [paid[0].id])  # what checkout does after a decline
    assert balance(db, loyal.hana) == 1000
    assert_ledger_consistent(db)


def test_declines_spend_nothing(app: Any, db: Database, loyal: Loyal) -> None:
    give(db, loyal.hana, 100)
    before = entry_count(db)
    cases = [
        (None, "1.00", "EUR", "customer_required"),  # a guest has no points
        (loyal.hana, "1.01", "EUR", "insufficient_points"),
        (loyal.hana, "100", "JPY", "not_redeemable"),
    ]
    configure(
        db,
        loyal,
        currencies=[
            {"currency": "EUR", "earn_points": 1, "earn_amount": "1", "point_value": "0.01"},
            {"currency": "JPY", "earn_points": 1, "earn_amount": "100"},
        ],
    )
    for n, (customer, amount, currency, code) in enumerate(cases):
        tender = pay(
            db, loyal.web, customer, [points(amount)], reference=f"D-{n}", currency=currency
        )[0]
        assert (tender.status, tender.failure_code) == ("declined", code)
    configure(
        db,
        loyal,
        currencies=[
            {"currency": "EUR", "earn_points": 1, "earn_amount": "1", "point_value": "0.05"}
        ],
    )
    odd = pay(db, loyal.web, loyal.hana, [points("0.12")], reference="D-odd")[0]
    assert (odd.status, odd.failure_code) == ("declined", "not_whole_points")
    assert entry_count(db) == before
    assert balance(db, loyal.hana) == 100


def test_a_void_before_authorisation_stops_a_late_one(app: Any, db: Database, loyal: Loyal) -> None:
    give(db, loyal.hana, 1000)
    provider = LoyaltyPointsProvider(db)
    key = payments.authorization_key(424242)
    voided = provider.void(
        ChargeRequest(
            payment_id=424242,
            amount=Decimal("2.00"),
            currency="EUR",
            idempotency_key="void-1",
            provider_reference=None,
            authorization_key=key,
        )
    )
    assert voided.outcome is Outcome.SUCCEEDED
    late = provider.authorize(
        AuthorizeRequest(
            payment_id=424242,
            reference="LATE",
            amount=Decimal("2.00"),
            currency="EUR",
            idempotency_key=key,
            customer_id=loyal.hana,
        )
    )
    assert (late.outcome, late.code) == (Outcome.FAILED, "voided")
    assert balance(db, loyal.hana) == 1000
