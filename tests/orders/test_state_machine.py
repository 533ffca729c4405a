"""Every legal and every illegal transition of the one order life cycle; each legal one is
recorded and published as ``order.<status>``, an illegal one publishes nothing."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest

from mercato.auth.principal import Principal
from mercato.channels import service as channels
from mercato.channels.schemas import ChannelIn, ChannelType
from mercato.db import Database
from mercato.errors import UnprocessableState
from mercato.orders import service as orders
from mercato.orders.models import OrderTransition
from mercato.orders.state import TRANSITIONS, OrderStatus
from tests.helpers import outbox

SYSTEM = Principal.system("tests")
PAIRS = list(itertools.product(OrderStatus, OrderStatus))


def _order(db: Database, status: OrderStatus) -> int:
    with db.transaction() as session:
        channel = channels.channel_by_code(session, "sm") or channels.create_channel(
            session,
            SYSTEM,
            ChannelIn(
                code="sm", name="SM", type=ChannelType.WEB, default_locale="en", currencies=["EUR"]
            ),
        )
        line = orders.LineDraft(
            variant_id=1,
            sku="X",
            name="X",
            tax_class="standard",
            quantity=1,
            unit_price=Decimal(10),
            subtotal=Decimal(10),
            discount=Decimal(0),
            tax=Decimal("1.60"),
            tax_rate=Decimal("0.19"),
            total=Decimal(10),
        )
        order = orders.create_order(
            session,
            SYSTEM,
            orders.OrderDraft(
                channel_id=channel.id,
                currency="EUR",
                source="staff",
                lines=[line],
                subtotal=Decimal(10),
                discount_total=Decimal(0),
                shipping_total=Decimal(0),
                tax_total=Decimal("1.60"),
                grand_total=Decimal(10),
                tax_included=True,
                status=status,
            ),
        )
        return order.id


def test_every_status_is_in_the_table() -> None:
    assert set(TRANSITIONS) == set(OrderStatus)
    assert TRANSITIONS[OrderStatus.CLOSED] == frozenset()
    assert TRANSITIONS[OrderStatus.CANCELLED] == frozenset()


def _published(db: Database, order_id: int) -> list[tuple[str, str]]:
    """(event type, status in its data) of every event published about the order."""
    return [
        (e.type, e.data["status"])
        for e in outbox(db)
        if e.aggregate_type == "order" and e.aggregate_id == str(order_id)
    ]


@pytest.mark.parametrize("start", list(OrderStatus))
def test_transitions_from(db: Database, start: OrderStatus) -> None:
    for target in OrderStatus:
        order_id = _order(db, start)
        before = _published(db, order_id)
        if target in TRANSITIONS[start]:
            with db.transaction() as session:
                moved = orders.transition(session, SYSTEM, order_id, target, reason="test")
                assert moved.status == target.value
            with db.read() as session:
                last = (
                    session.query(OrderTransition)
                    .filter_by(order_id=order_id)
                    .order_by(OrderTransition.id.desc())
                    .first()
                )
                assert last is not None
                assert (last.from_status, last.to_status) == (start.value, target.value)
                assert last.actor_type == "system" and last.reason == "test"
            assert _published(db, order_id) == [*before, (f"order.{target.value}", target.value)]
        else:
            with pytest.raises(UnprocessableState) as err, db.transaction() as session:
                orders.transition(session, SYSTEM, order_id, target)
            assert err.value.code == "illegal-transition"
            with db.read() as session:
                assert orders.get_order(session, order_id).status == start.value
            assert _published(db, order_id) == before


def test_a_change_that_lost_a_race_is_refused(db: Database) -> None:
    order_id = _order(db, OrderStatus.PLACED)
    with db.transaction() as session:
        orders.transition(session, SYSTEM, order_id, OrderStatus.CONFIRMED)
    # A second writer still believing the order is placed:
    with pytest.raises(UnprocessableState) as err, db.transaction() as session:
        orders.advance(
            session, SYSTEM, order_id, OrderStatus.PLACED, [(OrderStatus.FRAUD_REVIEW, "late")]
        )
    assert err.value.code in ("order-state-changed", "illegal-transition")
    with db.read() as session:
        assert orders.get_order(session, order_id).status == "confirmed"
