"""Fulfilment: routing orders to locations, pick/pack/ship, click & collect, tracking: the
fulfilment domain's public face. Callers use ``from mercato.fulfillment import service as
fulfillment``.

Routing (:mod:`.routing`) runs when an order is confirmed (an ``order.confirmed``
subscriber) and again when a location rejects a line. It feeds the sourcing engine
(``fulfillment.sourcing``) with the channel's locations, their free stock (plus what this
order already holds, since it may keep it) and their remaining daily capacity, applies the
plan as stock allocations, opens one fulfilment order (the location's task, :mod:`.tasks`)
per location and kind, and stores the decision with its explanation. Units move out of
stock (a ``sale`` in the ledger) when a parcel ships (:mod:`.shipments`) or a customer
collects (:mod:`.pickup`), never before; carriers' tracking events move shipments and the
order along (:mod:`.tracking`). The settings are :mod:`.policies`.
"""

from __future__ import annotations

from mercato.fulfillment.pickup import (
    ReadyForPickup,
    expired_pickups,
    expiring_pickups,
    hand_over,
    ready_for_pickup,
    receive_transfer_for_pickup,
)
from mercato.fulfillment.policies import (
    pickup_days,
    policy,
    set_policy,
)
from mercato.fulfillment.routing import (
    ROUTABLE,
    decisions,
    on_order_confirmed,
    reject_lines,
    route_order,
)
from mercato.fulfillment.shipments import (
    ShipResult,
    ship,
)
from mercato.fulfillment.tasks import (
    OPEN_TASK,
    Package,
    PackageItem,
    cancel_task,
    get_task,
    list_tasks,
    open_units,
    pack,
    release_order_units,
    start_picking,
    task_lines,
    tasks_for_order,
)
from mercato.fulfillment.tracking import (
    complete_if_done,
    delivered_order_ids,
    on_tracking_update,
    shipments_for_order,
)

__all__ = [
    "OPEN_TASK",
    "ROUTABLE",
    "Package",
    "PackageItem",
    "ReadyForPickup",
    "ShipResult",
    "cancel_task",
    "complete_if_done",
    "decisions",
    "delivered_order_ids",
    "expired_pickups",
    "expiring_pickups",
    "get_task",
    "hand_over",
    "list_tasks",
    "on_order_confirmed",
    "on_tracking_update",
    "open_units",
    "pack",
    "pickup_days",
    "policy",
    "ready_for_pickup",
    "receive_transfer_for_pickup",
    "reject_lines",
    "release_order_units",
    "route_order",
    "set_policy",
    "ship",
    "shipments_for_order",
    "start_picking",
    "task_lines",
    "tasks_for_order",
]
