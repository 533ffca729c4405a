"""Lifetime value and average order value are net of refunds: a return refunded to the
card, then one refunded as store credit, each lower the figures once, however often their
events are delivered."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from mercato.customers import figures
from mercato.events import Event
from tests.commerce.conftest import DemoWorld
from tests.commerce.helpers import ok
from tests.helpers import drain, outbox
from tests.returns.conftest import (
    fulfil,
    line,
    place,
    product,
    receive,
    refund,
    staff_login,
    start_return,
)

pytestmark = pytest.mark.slow


def _value(world: DemoWorld, customer_id: int) -> tuple[int, Decimal, Decimal]:
    profile = ok(world.client.get(f"/v1/customers/{customer_id}/profile", headers=world.staff()))[
        "figures"
    ]
    [jpy] = profile["lifetime_value"]
    return (
        profile["order_count"],
        Decimal(jpy["lifetime_value"]),
        Decimal(jpy["average_order_value"]),
    )


def _returned(world: DemoWorld, order: Any, variant: int, **extra: Any) -> dict[str, Any]:
    staff = staff_login(world)
    ret = start_return(world, staff, order, [line(order, variant, 1, "changed_mind")], **extra)
    ok(receive(world, staff, ret, "WH-TYO"))
    done = ok(refund(world, staff, ret))
    assert done["status"] == "refunded"
    return done


def _redeliver(world: DemoWorld, type_: str) -> None:
    """Hand every stored event of ``type_`` to the figures again (at-least-once delivery)."""
    handler = {
        "payment.refunded": figures.on_payment_refunded,
        "return.refunded": figures.on_return_refunded,
    }[type_]
    for row in outbox(world.database, type_):
        event = Event(
            id=row.event_id, type=row.type, time=row.occurred_at, version=1, data=row.data
        )
        with world.database.transaction() as session:
            handler(session, event.typed())


def test_refunds_lower_lifetime_value_once(demo_world: DemoWorld) -> None:
    item = product(demo_world, {"ONE": {"JPY": "3000"}, "TWO": {"JPY": "5000"}}, {"WH-TYO": 5})
    order = place(demo_world, [(item["ONE"], 1), (item["TWO"], 1)])
    customer_id = order.body["customer_id"]
    fulfil(demo_world, order)
    drain(demo_world)
    total = Decimal(order.body["grand_total"])
    assert _value(demo_world, customer_id) == (1, total, total)

    to_card = _returned(demo_world, order, item["ONE"])
    drain(demo_world)
    card_refund = Decimal(to_card["refunded_total"])
    assert card_refund > 0
    assert _value(demo_world, customer_id) == (1, total - card_refund, total - card_refund)

    as_credit = _returned(demo_world, order, item["TWO"], refund_method="store_credit")
    drain(demo_world)
    credit = Decimal(as_credit["refunded_total"])
    assert credit > 0
    net = total - card_refund - credit
    assert _value(demo_world, customer_id) == (1, net, net)

    for type_ in ("payment.refunded", "return.refunded"):
        _redeliver(demo_world, type_)
    assert _value(demo_world, customer_id) == (1, net, net)
