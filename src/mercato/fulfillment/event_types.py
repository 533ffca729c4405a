"""The fulfilment domain's events: tasks given to locations, parcels leaving and travelling,
orders routed and made ready for pickup."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from mercato.event_types import DomainEvent

# --- tasks --------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class TaskCreated(DomainEvent):
    """A location got a task for an order: lines to ship, to hand over, or to transfer."""

    TYPE = "fulfillment.task_created"
    AGGREGATE = "fulfillment_order"

    fulfillment_order_id: int
    order_id: int
    number: str
    location_id: int
    kind: str
    status: str


@dataclass(frozen=True, kw_only=True)
class TransferShipped(DomainEvent):
    """Stock for a pickup store left its origin as a transfer to that store."""

    TYPE = "fulfillment.transfer_shipped"
    AGGREGATE = "fulfillment_order"

    fulfillment_order_id: int
    order_id: int
    transfer_id: int
    to_location_id: int


# --- shipments ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShippedLine:
    order_line_id: int
    variant_id: int
    quantity: int


@dataclass(frozen=True, kw_only=True)
class ShipmentShipped(DomainEvent):
    """A shipment left a location with the carrier: its parcels' tracking numbers and the
    units it carries."""

    TYPE = "shipment.shipped"
    AGGREGATE = "shipment"

    shipment_id: int
    order_id: int
    number: str
    location_id: int
    carrier: str
    service: str
    # Why another carrier than the one quoted ships (None when the quoted one does).
    carrier_substituted: str | None
    tracking_number: str
    tracking_numbers: tuple[str, ...]
    lines: tuple[ShippedLine, ...]


@dataclass(frozen=True, kw_only=True)
class ShipmentTracked(DomainEvent):
    """What a shipment's move reported by the carrier's tracking says."""

    AGGREGATE = "shipment"

    shipment_id: int
    order_id: int
    # The parcel whose tracking event moved the shipment.
    tracking_number: str


@dataclass(frozen=True, kw_only=True)
class ShipmentInTransit(ShipmentTracked):
    """The carrier is moving the shipment (or a parcel of it) towards the customer."""

    TYPE = "shipment.in_transit"


@dataclass(frozen=True, kw_only=True)
class ShipmentDelivered(ShipmentTracked):
    """Every parcel of the shipment was delivered."""

    TYPE = "shipment.delivered"


@dataclass(frozen=True, kw_only=True)
class ShipmentDeliveryException(ShipmentTracked):
    """The carrier reported a problem with a parcel of the shipment (a delivery exception)."""

    TYPE = "shipment.exception"


@dataclass(frozen=True, kw_only=True)
class ShipmentReturnedToSender(ShipmentTracked):
    """A parcel of the shipment is on its way back to the sender."""

    TYPE = "shipment.returned_to_sender"


# The event a shipment's move into each status reported by tracking publishes.
TRACKED_STATUS_EVENTS: dict[str, type[ShipmentTracked]] = {
    "in_transit": ShipmentInTransit,
    "delivered": ShipmentDelivered,
    "exception": ShipmentDeliveryException,
    "returned_to_sender": ShipmentReturnedToSender,
}


# --- orders -------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class OrderEventFacts(DomainEvent):
    """What every order event says about the order: the fields of the orders domain's
    ``OrderFacts``, declared again since one domain's events never import another's."""

    AGGREGATE = "order"

    order_id: int
    number: str
    channel_id: int
    customer_id: int | None
    status: str
    currency: str
    grand_total: Decimal
    source: str
    # Orders recorded before stores were tracked on them have none.
    store_location_id: int | None = None


@dataclass(frozen=True)
class RoutedTask:
    fulfillment_order_id: int
    location_id: int
    kind: str


@dataclass(frozen=True)
class UnfilledLine:
    order_line_id: int
    quantity: int
    reason: str
    detail: str


@dataclass(frozen=True, kw_only=True)
class OrderRouted(OrderEventFacts):
    """Routing decided where the order's open lines are fulfilled: the tasks it opened and
    the lines it could not fill (with why)."""

    TYPE = "order.routed"

    decision_id: int
    trigger: str
    tasks: tuple[RoutedTask, ...]
    unfilled: tuple[UnfilledLine, ...]


@dataclass(frozen=True, kw_only=True)
class OrderReadyForPickup(OrderEventFacts):
    """The order waits on the pickup store's shelf until ``expires_at``; the customer was
    sent the collection code (``message_id``, None when there was nobody to tell)."""

    TYPE = "order.ready_for_pickup"

    fulfillment_order_id: int
    location_id: int
    expires_at: datetime | None
    message_id: int | None
