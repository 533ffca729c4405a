"""Points from orders, driven by the order events: pending when placed, granted once when
fulfilled, gone when cancelled, taken back in proportion when returned."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from mercato.auth.principal import Principal
from mercato.db import Database
from mercato.events import publish
from mercato.loyalty import service as loyalty
from mercato.loyalty.schemas import CampaignIn
from mercato.orders import service as orders
from mercato.orders.state import OrderStatus
from mercato.returns.event_types import ReturnedLine, ReturnRefunded
from tests.helpers import drain
from tests.loyalty.conftest import (
    Loyal,
    assert_ledger_consistent,
    balance,
    configure,
    events,
    fulfil,
    kinds,
    place_order,
    view,
)

STAFF = Principal.system("tests")


def returned(
    db: Database, order_id: int, customer: int, lines: list[tuple[int, int, str | None]]
) -> str:
    """What the returns domain publishes once a return is refunded."""
    with db.transaction() as session:
        event = publish(
            session,
            ReturnRefunded(
                return_id=order_id,
                number=f"R{order_id}",
                order_id=order_id,
                order_number=f"M{order_id}",
                channel_id=0,
                customer_id=customer,
                currency="EUR",
                status="refunded",
                location_id=None,
                refund_method="original_payment",
                refunded_total=Decimal("0"),
                shipping_refund=Decimal("0"),
                exchange_order_id=None,
                lines=tuple(
                    ReturnedLine(
                        return_line_id=n,
                        order_line_id=n,
                        variant_id=v,
                        quantity=q,
                        reason="other",
                        condition=None,
                        amount=None if amount is None else Decimal(amount),
                    )
                    for n, (v, q, amount) in enumerate(lines, start=1)
                ),
            ),
        )
    return event.id


def test_points_are_pending_until_fulfilled_then_granted_once(
    app: Any, db: Database, loyal: Loyal
) -> None:
    # 2 bags of coffee at 12.50 (double points on coffee) and a mug at 9.99, shipping 4.90.
    order = place_order(
        db, loyal, loyal.hana, [(loyal.coffee, 2, "12.50"), (loyal.mug, 1, "9.99")], shipping="4.90"
    )
    drain(app)
    assert view(db, loyal.hana).pending == 59  # 25 x 2 + 9.99, rounded down; no shipping
    assert balance(db, loyal.hana) == 0
    fulfil(db, order)
    drain(app)
    with db.transaction() as session:  # delivery after fulfilment grants nothing more
        orders.transition(session, STAFF, order, OrderStatus.DELIVERED)
    drain(app)
    with db.transaction() as session:  # nor does a handler running twice (at least once)
        assert loyalty.grant_order(session, order) is None
    seen = view(db, loyal.hana)
    assert (seen.balance, seen.pending) == (59, 0)
    assert kinds(db, loyal.hana) == [("earn", 59)]
    earned = events(db, "loyalty.points_earned")
    assert [(e["points"], e["order_id"], e["reference_id"]) for e in earned] == [
        (59, order, earned[0]["reference_id"])
    ]
    assert_ledger_consistent(db)


def test_cancelled_orders_guests_and_a_paused_programme_earn_nothing(
    app: Any, db: Database, loyal: Loyal
) -> None:
    order = place_order(db, loyal, loyal.hana, [(loyal.mug, 3, "10")])
    guest = place_order(db, loyal, None, [(loyal.mug, 3, "10")])
    drain(app)
    assert view(db, loyal.hana).pending == 30
    with db.transaction() as session:
        orders.transition(session, STAFF, order, OrderStatus.CANCELLED)
    fulfil(db, guest)
    drain(app)
    assert view(db, loyal.hana).pending == 0
    assert kinds(db, loyal.hana) == []
    # Nor does anything while the programme is paused.
    configure(db, loyal, active=False)
    paused = place_order(db, loyal, loyal.hana, [(loyal.mug, 1, "50")])
    fulfil(db, paused)
    drain(app)
    assert kinds(db, loyal.hana) == []


@pytest.mark.slow
def test_campaigns_and_tier_multiplier(app: Any, db: Database, loyal: Loyal) -> None:
    now = datetime.now(UTC)
    with db.transaction() as session:
        loyalty.create_campaign(
            session,
            STAFF,
            CampaignIn(
                name="Welcome",
                starts_at=now - timedelta(days=1),
                ends_at=now + timedelta(days=1),
                bonus_points=500,
                first_order_only=True,
            ),
        )
        loyalty.create_campaign(
            session,
            STAFF,
            CampaignIn(
                name="Double days",
                starts_at=now - timedelta(days=1),
                ends_at=now + timedelta(days=1),
                multiplier=Decimal(2),
            ),
        )
    first = place_order(db, loyal, loyal.hana, [(loyal.mug, 1, "100")])
    drain(app)
    second = place_order(db, loyal, loyal.hana, [(loyal.mug, 1, "100")])
    drain(app)
    for order in (first, second):
        fulfil(db, order)
    drain(app)
    # 100 x2 + 500 welcome, then 100 x2: the welcome bonus comes once.
    assert kinds(db, loyal.hana) == [("earn", 700), ("earn", 200)]
    # Gold (5000 qualifying points) earns 1.5x on top of the campaign.
    with db.transaction() as session:
        loyalty.earn(session, STAFF, loyal.hana, 4100, reference_type="test", reference_id="T")
    third = place_order(db, loyal, loyal.hana, [(loyal.mug, 1, "100")])
    fulfil(db, third)
    drain(app)
    assert kinds(db, loyal.hana)[-1] == ("earn", 300)


def test_a_cancelled_first_order_leaves_the_welcome_bonus_for_the_next(
    app: Any, db: Database, loyal: Loyal
) -> None:
    now = datetime.now(UTC)
    with db.transaction() as session:
        loyalty.create_campaign(
            session,
            STAFF,
            CampaignIn(
                name="Welcome",
                starts_at=now - timedelta(days=1),
                ends_at=now + timedelta(days=1),
                bonus_points=500,
                first_order_only=True,
            ),
        )
    first = place_order(db, loyal, loyal.hana, [(loyal.mug, 1, "10")])
    drain(app)
    assert view(db, loyal.hana).pending == 510
    with db.transaction() as session:
        orders.transition(session, STAFF, first, OrderStatus.CANCELLED)
    place_order(db, loyal, loyal.hana, [(loyal.mug, 1, "20")])
    drain(app)
    assert view(db, loyal.hana).pending == 520


def test_returns_take_back_points_in_proportion_once_per_event(
    app: Any, db: Database, loyal: Loyal
) -> None:
    # Coffee: 4 x 10.00 at double points = 80; mug: 2 x 10.00 = 20; 100 points in all.
    order = place_order(db, loyal, loyal.hana, [(loyal.coffee, 4, "10"), (loyal.mug, 2, "10")])
    fulfil(db, order)
    drain(app)
    assert balance(db, loyal.hana) == 100
    first = returned(db, order, loyal.hana, [(loyal.coffee, 1, "10.00")])
    drain(app)
    assert balance(db, loyal.hana) == 80  # a quarter of the coffee's 80 points
    with db.transaction() as session:  # the same event delivered again changes nothing
        assert (
            loyalty.order_returned(
                session, first, order, [loyalty.ReturnedLine(loyal.coffee, 1, Decimal(10))]
            )
            is None
        )
    returned(db, order, loyal.hana, [(loyal.mug, 1, "0.00")])  # exchanged: no money back
    drain(app)
    assert balance(db, loyal.hana) == 80
    returned(db, order, loyal.hana, [(loyal.mug, 1, None)])  # units only, no amount said
    drain(app)
    assert balance(db, loyal.hana) == 70
    returned(db, order, loyal.hana, [(loyal.coffee, 3, "30.00"), (loyal.mug, 1, "10.00")])
    drain(app)
    assert balance(db, loyal.hana) == 0  # everything back: exactly what was granted
    assert kinds(db, loyal.hana) == [
        ("earn", 100),
        ("reverse", -20),
        ("reverse", -10),
        ("reverse", -70),
    ]
    assert [e["points"] for e in events(db, "loyalty.points_reversed")] == [-20, -10, -70]
    assert_ledger_consistent(db)


def test_a_return_after_spending_leaves_a_debt_the_next_points_pay(
    app: Any, db: Database, loyal: Loyal
) -> None:
    order = place_order(db, loyal, loyal.hana, [(loyal.mug, 1, "50")])
    fulfil(db, order)
    drain(app)
    with db.transaction() as session:
        loyalty.redeem(session, STAFF, loyal.hana, 40, reference_type="test", reference_id="P")
    returned(db, order, loyal.hana, [(loyal.mug, 1, "50")])
    drain(app)
    assert balance(db, loyal.hana) == -40
    assert view(db, loyal.hana).qualifying_points == 0
    with db.transaction() as session:
        loyalty.earn(session, STAFF, loyal.hana, 100, reference_type="test", reference_id="E")
    assert balance(db, loyal.hana) == 60
    assert_ledger_consistent(db)  # the new lot holds 60, not 100
