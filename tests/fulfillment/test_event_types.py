"""Fulfilment's events: order events carry the order's facts like the orders domain's own,
and every status tracking can move a shipment into has its event."""

from __future__ import annotations

from typing import get_type_hints

from mercato.event_types import field_names
from mercato.fulfillment.event_types import (
    TRACKED_STATUS_EVENTS,
    OrderEventFacts,
    OrderReadyForPickup,
    OrderRouted,
)
from mercato.fulfillment.tracking import _TRACKING_STATUS
from mercato.orders.event_types import OrderFacts


def test_order_events_of_fulfilment_carry_the_order_facts() -> None:
    assert list(field_names(OrderEventFacts)) == list(field_names(OrderFacts))
    mine, theirs = get_type_hints(OrderEventFacts), get_type_hints(OrderFacts)
    assert {k: mine[k] for k in field_names(OrderFacts)} == {
        k: theirs[k] for k in field_names(OrderFacts)
    }
    for cls in (OrderRouted, OrderReadyForPickup):
        assert cls.AGGREGATE == "order" and cls.TYPE.startswith("order.")


def test_every_tracked_status_has_its_event() -> None:
    assert set(TRACKED_STATUS_EVENTS) == set(_TRACKING_STATUS.values())
    for status, cls in TRACKED_STATUS_EVENTS.items():
        assert f"shipment.{status}" == cls.TYPE
