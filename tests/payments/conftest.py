"""A small world for payment tests: a web channel, a store POS channel, a customer, and
helpers that run a checkout's payment steps the way checkout does."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from mercato.auth.principal import Principal
from mercato.channels import service as channels
from mercato.channels.schemas import ChannelIn, ChannelType
from mercato.customers import service as customers
from mercato.customers.schemas import RegisterIn
from mercato.db import Database
from mercato.payments import balances
from mercato.payments import service as payments
from mercato.payments.models import Payment, PaymentTransaction
from mercato.payments.providers import SimulatedGateway
from tests.helpers import fast_password_hashing

SUCCESS = "4242424242424242"
DECLINED = "4000000000000002"
INSUFFICIENT = "4000000000009995"
THREE_DS = "4000000000003220"


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_password_hashing(monkeypatch)


@dataclass
class World:
    web: int
    web_key: str
    pos: int
    pos_key: str
    customer: int


@pytest.fixture
def world(db: Database) -> World:
    actor = Principal.system("tests")
    with db.transaction() as session:
        web = channels.create_channel(
            session,
            actor,
            ChannelIn(
                code="web-de",
                name="Web DE",
                type=ChannelType.WEB,
                default_locale="de-DE",
                currencies=["EUR", "JPY"],
                country="DE",
            ),
        )
        pos = channels.create_channel(
            session,
            actor,
            ChannelIn(
                code="pos-berlin",
                name="Store Berlin",
                type=ChannelType.POS,
                default_locale="de-DE",
                currencies=["EUR"],
                country="DE",
            ),
        )
        _, web_key = channels.issue_key(session, actor, web.id, "web")
        _, pos_key = channels.issue_key(session, actor, pos.id, "pos")
        customer = customers.register(
            session, web.id, RegisterIn(email="hana@example.com", password="long enough pw")
        )
    return World(web.id, web_key, pos.id, pos_key, customer.id)


def gateway(db: Database) -> SimulatedGateway:
    return SimulatedGateway(db)


def charge(db: Database, reference: str | None) -> dict[str, Any]:
    """The gateway's own record of a charge."""
    state = gateway(db).charge_state(reference or "")
    assert state is not None, reference
    return state


def card(db: Database, number: str = SUCCESS) -> str:
    return gateway(db).tokenize(number, 12, 2099, "123").token


def card_tender(db: Database, amount: str, number: str = SUCCESS) -> payments.TenderRequest:
    return payments.TenderRequest("test_gateway", Decimal(amount), token=card(db, number))


def issue_card(db: Database, amount: str, currency: str = "EUR", **fields: Any) -> str:
    with db.transaction() as session:
        issued = balances.issue_gift_card(
            session,
            Principal.system("tests"),
            currency=currency,
            amount=Decimal(amount),
            **fields,
        )
    return issued.code


def create(
    db: Database,
    world: World,
    tenders: Sequence[payments.TenderRequest],
    total: str | None = None,
    *,
    reference: str = "CO-1",
    currency: str = "EUR",
    channel: int | None = None,
    customer: int | None = None,
) -> list[int]:
    """Checkout's first transaction: the payments are recorded (balances redeemed)."""
    amount = Decimal(total) if total is not None else sum((t.amount for t in tenders), Decimal(0))
    with db.transaction() as session:
        made = payments.create_payments(
            session,
            reference=reference,
            customer_id=customer,
            channel_id=channel or world.web,
            currency=currency,
            total=amount,
            tenders=tenders,
        )
        return [p.id for p in made]


def pay(
    db: Database, world: World, tenders: Sequence[payments.TenderRequest], **kwargs: Any
) -> list[Payment]:
    """The three checkout steps: record, authorise with no transaction open, record."""
    ids = create(db, world, tenders, **kwargs)
    outcomes = payments.authorize_pending(db, ids)
    with db.transaction() as session:
        payments.record_outcomes(session, outcomes)
        return payments.payments_for_reference(session, kwargs.get("reference", "CO-1"))


def payment(db: Database, payment_id: int) -> Payment:
    with db.read() as session:
        found = payments.get_payment(session, payment_id)
        session.expunge_all()
        return found


def ledger(db: Database, payment_id: int) -> list[tuple[str, str, Decimal]]:
    with db.read() as session:
        return [
            (t.kind, t.status, t.amount)
            for t in payments.payment_transactions(session, [payment_id])
        ]


def gift_balance(db: Database, code: str) -> Decimal:
    with db.read() as session:
        return balances.find_usable_gift_card(session, code).balance


def assert_balances_match_ledgers(db: Database) -> None:
    with db.read() as session:
        assert balances.verify(session) == []


def count_rows(db: Database, model: Any) -> int:
    with db.read() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def pending_rows(db: Database) -> int:
    with db.read() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(PaymentTransaction)
                .where(PaymentTransaction.status == "pending")
            )
            or 0
        )
