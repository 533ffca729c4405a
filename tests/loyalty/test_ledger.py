"""The points ledger: every change is an entry, the balance is their sum, expiry is FIFO,
tiers follow the rolling 12 months, and bad input changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from mercato.auth.principal import Principal
from mercato.db import Database
from mercato.errors import NotFound, ValidationProblem
from mercato.loyalty import service as loyalty
from mercato.loyalty.models import Account, Lot
from mercato.loyalty.rules import add_months
from tests.loyalty.conftest import (
    Loyal,
    assert_ledger_consistent,
    balance,
    configure,
    entry_count,
    events,
    kinds,
    view,
)

STAFF = Principal.system("tests")
T0 = datetime(2025, 1, 10, 9, tzinfo=UTC)


def earn(db: Database, customer: int, points: int, at: datetime = T0, ref: str = "R") -> None:
    with db.transaction() as session:
        loyalty.earn(
            session, STAFF, customer, points, reference_type="test", reference_id=ref, now=at
        )


def redeem(db: Database, customer: int, points: int, at: datetime = T0) -> None:
    with db.transaction() as session:
        loyalty.redeem(
            session, STAFF, customer, points, reference_type="test", reference_id="X", now=at
        )


def expire(db: Database, at: datetime) -> loyalty.ExpiryRun:
    with db.transaction() as session:
        return loyalty.expire_points(session, now=at)


def lots(db: Database, customer: int) -> list[tuple[int, int]]:
    with db.read() as session:
        rows = session.execute(
            select(Lot.points, Lot.remaining).where(Lot.customer_id == customer).order_by(Lot.id)
        ).all()
    return [(p, r) for p, r in rows]


def test_every_change_is_an_entry_and_the_balance_is_their_sum(db: Database, loyal: Loyal) -> None:
    earn(db, loyal.hana, 500)
    redeem(db, loyal.hana, 120)
    with db.transaction() as session:
        loyalty.adjust(session, STAFF, loyal.hana, 30, "goodwill: late parcel", now=T0)
        loyalty.adjust(session, STAFF, loyal.hana, -10, "correction", now=T0)
    assert kinds(db, loyal.hana) == [
        ("earn", 500),
        ("redeem", -120),
        ("adjust", 30),
        ("adjust", -10),
    ]
    assert balance(db, loyal.hana) == 400
    assert [e["points"] for e in events(db, "loyalty.points_earned")] == [500]
    assert [(e["points"], e["balance"]) for e in events(db, "loyalty.points_redeemed")] == [
        (-120, 380)
    ]
    assert len(events(db, "loyalty.points_adjusted")) == 2
    assert_ledger_consistent(db)
    # The proof is not vacuous: a balance written around the ledger is found.
    with db.transaction() as session:
        session.get_one(Account, loyal.hana).balance = 450
    with db.read() as session:
        found = loyalty.verify(session)
    assert [(m.customer_id, m.balance, m.ledger, m.lots) for m in found] == [
        (loyal.hana, 450, 400, 400)
    ]


def test_bad_input_changes_nothing(db: Database, loyal: Loyal) -> None:
    earn(db, loyal.hana, 100)
    before = entry_count(db)
    for points in (0, -5):
        with pytest.raises(ValidationProblem) as bad, db.transaction() as session:
            loyalty.redeem(
                session, STAFF, loyal.hana, points, reference_type="t", reference_id=None
            )
        assert bad.value.errors[0]["field"] == "body.points"
    with pytest.raises(ValidationProblem), db.transaction() as session:
        loyalty.adjust(session, STAFF, loyal.hana, 0, "nothing")
    with pytest.raises(loyalty.InsufficientPoints) as short, db.transaction() as session:
        loyalty.redeem(session, STAFF, loyal.hana, 101, reference_type="t", reference_id=None)
    assert short.value.extra == {"requested": 101, "available": 100}
    with pytest.raises(loyalty.InsufficientPoints), db.transaction() as session:
        loyalty.adjust(session, STAFF, loyal.hana, -101, "too much")
    with pytest.raises(NotFound), db.transaction() as session:
        loyalty.redeem(session, STAFF, 999_999, 1, reference_type="t", reference_id=None)
    with pytest.raises(NotFound), db.transaction() as session:
        loyalty.adjust(session, STAFF, 999_999, 10, "ghost")
    assert entry_count(db) == before
    assert balance(db, loyal.hana) == 100
    assert_ledger_consistent(db)


def test_points_expire_first_in_first_out(db: Database, loyal: Loyal) -> None:
    t1 = T0 + timedelta(days=90)
    earn(db, loyal.hana, 100, T0, "first")  # expires T0 + 12 months
    earn(db, loyal.hana, 200, t1, "second")  # expires t1 + 12 months
    redeem(db, loyal.hana, 50, T0 + timedelta(days=120))  # taken from the oldest lot
    assert lots(db, loyal.hana) == [(100, 50), (200, 200)]
    first_expiry = add_months(T0, 12)
    soon = view(db, loyal.hana, now=first_expiry - timedelta(days=10))
    assert soon.expiring_points == 50
    assert [(x.expires_at, x.points) for x in soon.expiring] == [(first_expiry, 50)]
    assert expire(db, first_expiry - timedelta(seconds=1)).points == 0
    run = expire(db, first_expiry)
    assert (run.accounts, run.points) == (1, 50)
    assert balance(db, loyal.hana) == 200
    assert expire(db, first_expiry + timedelta(days=1)).points == 0  # expired once
    assert expire(db, add_months(t1, 12)).points == 200
    assert balance(db, loyal.hana) == 0
    assert kinds(db, loyal.hana)[-2:] == [("expire", -50), ("expire", -200)]
    assert [e["points"] for e in events(db, "loyalty.points_expired")] == [-50, -200]
    assert_ledger_consistent(db)
    # A programme without expiry: new points never expire.
    configure(db, loyal, expiry_months=None)
    earn(db, loyal.hana, 100, t1)
    assert expire(db, add_months(t1, 120)).points == 0
    assert balance(db, loyal.hana) == 100


def test_tiers_follow_qualifying_points_of_the_last_12_months(db: Database, loyal: Loyal) -> None:
    earn(db, loyal.hana, 999, T0)
    with db.read() as session:
        assert loyalty.tier_of(session, loyal.hana) is None
    earn(db, loyal.hana, 1, T0)  # 1000: silver
    with db.read() as session:
        tier = loyalty.tier_of(session, loyal.hana)
        assert tier is not None and tier.code == "silver"
        assert loyalty.tier_groups(session, loyal.hana) == frozenset({"silver"})
    # Spending points does not lose a tier: it counts what was earned.
    redeem(db, loyal.hana, 1000, T0 + timedelta(days=1))
    earn(db, loyal.hana, 4000, T0 + timedelta(days=30))
    seen = view(db, loyal.hana, now=T0 + timedelta(days=31))
    assert seen.tier is not None and seen.tier.code == "gold"
    assert seen.qualifying_points == 5000 and seen.next_tier is None
    # 12 months after the first points they no longer count: back to silver, then nothing.
    with db.transaction() as session:
        assert loyalty.reevaluate_tiers(session, now=add_months(T0, 12) + timedelta(days=1)) == 1
        assert loyalty.reevaluate_tiers(session, now=add_months(T0, 12) + timedelta(days=2)) == 0
    assert view(db, loyal.hana, now=add_months(T0, 12) + timedelta(days=1)).tier.code == "silver"  # type: ignore[union-attr]
    with db.transaction() as session:
        loyalty.reevaluate_tiers(session, now=add_months(T0, 14))
    with db.read() as session:
        assert loyalty.tier_of(session, loyal.hana) is None
    changes = [
        (e["from"], e["to"], e["customer_group"]) for e in events(db, "loyalty.tier_changed")
    ]
    assert changes == [
        (None, "silver", "silver"),
        ("silver", "gold", "gold"),
        ("gold", "silver", "silver"),
        ("silver", None, None),
    ]


def test_new_thresholds_apply_to_everyone_at_once(db: Database, loyal: Loyal) -> None:
    earn(db, loyal.hana, 1200, datetime.now(UTC))
    earn(db, loyal.customers[1], 300, datetime.now(UTC))
    configure(
        db,
        loyal,
        tiers=[
            {"code": "bronze", "name": "Bronze", "threshold": 200},
            {"code": "silver", "name": "Silver", "threshold": 2000},
        ],
    )
    assert view(db, loyal.hana).tier.code == "bronze"  # type: ignore[union-attr]
    assert view(db, loyal.customers[1]).tier.code == "bronze"  # type: ignore[union-attr]
    assert view(db, loyal.hana).next_tier.code == "silver"  # type: ignore[union-attr]
