"""Many threads spending the same points: never overspent, the ledger always equals the
balance (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from mercato.auth.principal import Principal
from mercato.db import Database, utcnow
from mercato.loyalty import service as loyalty
from mercato.payments import service as payments
from mercato.payments.service import TenderRequest
from tests.loyalty.conftest import Loyal, assert_ledger_consistent, balance, kinds

STAFF = Principal.system("tests")
THREADS = 16


def _give(db: Database, customer: int, points: int, at: datetime | None = None) -> None:
    with db.transaction() as session:
        loyalty.earn(
            session, STAFF, customer, points, reference_type="test", reference_id="G", now=at
        )


def test_concurrent_redemptions_never_overspend(db: Database, loyal: Loyal) -> None:
    _give(db, loyal.hana, 1000)
    start = threading.Barrier(THREADS)

    def spend(n: int) -> bool:
        start.wait()
        try:
            with db.transaction() as session:
                loyalty.redeem(
                    session, STAFF, loyal.hana, 70, reference_type="test", reference_id=str(n)
                )
            return True
        except loyalty.InsufficientPoints:
            return False

    with ThreadPoolExecutor(THREADS) as pool:
        won = sum(pool.map(spend, range(THREADS)))
    assert won == 14  # 14 x 70 = 980 of 1000
    assert balance(db, loyal.hana) == 20
    assert [k for k, _ in kinds(db, loyal.hana)].count("redeem") == 14
    assert_ledger_consistent(db)


def test_spending_earning_and_expiring_racing_keep_the_ledger_whole(
    db: Database, loyal: Loyal
) -> None:
    _give(db, loyal.hana, 300, utcnow() - timedelta(days=400))  # due to expire now
    _give(db, loyal.hana, 200)
    start = threading.Barrier(8)

    def work(n: int) -> None:
        start.wait()
        for i in range(5):
            try:
                with db.transaction() as session:
                    if (n + i) % 3 == 0:
                        loyalty.earn(
                            session, STAFF, loyal.hana, 40, reference_type="t", reference_id="e"
                        )
                    elif (n + i) % 3 == 1:
                        loyalty.redeem(
                            session, STAFF, loyal.hana, 55, reference_type="t", reference_id="r"
                        )
                    else:
                        loyalty.expire_points(session)
            except loyalty.InsufficientPoints:
                pass

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(work, range(8)))
    ledger = kinds(db, loyal.hana)
    assert balance(db, loyal.hana) >= 0
    assert balance(db, loyal.hana) == sum(p for _, p in ledger)
    # The old lot expired once, whatever the redemptions had left of it.
    assert len([k for k, _ in ledger if k == "expire"]) <= 1
    assert_ledger_consistent(db)


def test_concurrent_points_tenders_never_overspend(app: Any, db: Database, loyal: Loyal) -> None:
    _give(db, loyal.hana, 1000)  # 10.00 EUR
    start = threading.Barrier(12)

    def checkout(n: int) -> str:
        with db.transaction() as session:
            made = payments.create_payments(
                session,
                reference=f"RACE-{n}",
                customer_id=loyal.hana,
                channel_id=loyal.web,
                currency="EUR",
                total=Decimal("2.00"),
                tenders=[TenderRequest("loyalty_points", Decimal("2.00"))],
            )
            ids = [p.id for p in made]
        start.wait()
        outcomes = payments.authorize_pending(db, ids)
        return outcomes[0].status

    with ThreadPoolExecutor(12) as pool:
        statuses = list(pool.map(checkout, range(12)))
    assert statuses.count("captured") == 5 and statuses.count("declined") == 7
    assert balance(db, loyal.hana) == 0
    assert_ledger_consistent(db)
