"""The orders domain's events: the order's life cycle and what happens to its lines."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from mercato.event_types import DomainEvent
from mercato.orders.state import OrderStatus


@dataclass(frozen=True, kw_only=True)
class OrderFacts(DomainEvent):
    """What every order event says about the order."""

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


@dataclass(frozen=True, kw_only=True)
class OrderPlaced(OrderFacts):
    """The shopper's payment is authorised (or none is needed): the order exists for good."""

    TYPE = "order.placed"


@dataclass(frozen=True, kw_only=True)
class OrderFraudReview(OrderFacts):
    """The fraud check asked for a person to look at the order before it is confirmed."""

    TYPE = "order.fraud_review"


@dataclass(frozen=True, kw_only=True)
class OrderConfirmed(OrderFacts):
    """The order is accepted and goes to routing."""

    TYPE = "order.confirmed"


@dataclass(frozen=True, kw_only=True)
class OrderAllocated(OrderFacts):
    """Every line has stock set aside at a location that will fulfil it."""

    TYPE = "order.allocated"


@dataclass(frozen=True, kw_only=True)
class OrderPartiallyFulfilled(OrderFacts):
    """Some of the order's lines have left (shipped or handed over), not all."""

    TYPE = "order.partially_fulfilled"


@dataclass(frozen=True, kw_only=True)
class OrderFulfilled(OrderFacts):
    """Every line has been shipped or handed over."""

    TYPE = "order.fulfilled"


@dataclass(frozen=True, kw_only=True)
class OrderDelivered(OrderFacts):
    """The carrier delivered every parcel of the order."""

    TYPE = "order.delivered"


@dataclass(frozen=True, kw_only=True)
class OrderPickedUp(OrderFacts):
    """The customer collected the order in a store."""

    TYPE = "order.picked_up"


@dataclass(frozen=True, kw_only=True)
class OrderClosed(OrderFacts):
    """Nothing more will happen to the order (its return window is over)."""

    TYPE = "order.closed"


@dataclass(frozen=True, kw_only=True)
class OrderCancelled(OrderFacts):
    """The whole order is cancelled; its stock and payments are given back."""

    TYPE = "order.cancelled"


@dataclass(frozen=True, kw_only=True)
class OrderPaymentFailed(OrderFacts):
    """The payment was declined or failed: the order never became a sale."""

    TYPE = "order.payment_failed"


# The event an order's move into each status publishes.
STATUS_EVENTS: dict[OrderStatus, type[OrderFacts]] = {
    OrderStatus.PLACED: OrderPlaced,
    OrderStatus.FRAUD_REVIEW: OrderFraudReview,
    OrderStatus.CONFIRMED: OrderConfirmed,
    OrderStatus.ALLOCATED: OrderAllocated,
    OrderStatus.PARTIALLY_FULFILLED: OrderPartiallyFulfilled,
    OrderStatus.FULFILLED: OrderFulfilled,
    OrderStatus.DELIVERED: OrderDelivered,
    OrderStatus.PICKED_UP: OrderPickedUp,
    OrderStatus.CLOSED: OrderClosed,
    OrderStatus.CANCELLED: OrderCancelled,
    OrderStatus.PAYMENT_FAILED: OrderPaymentFailed,
}


@dataclass(frozen=True, kw_only=True)
class OrderImported(OrderFacts):
    """An order taken elsewhere (a marketplace, an earlier system) was recorded."""

    TYPE = "order.imported"

    external_id: str


@dataclass(frozen=True, kw_only=True)
class OrderCustomerLinked(OrderFacts):
    """A guest order now belongs to a customer profile (sign-up, verified identity)."""

    TYPE = "order.customer_linked"

    cart_id: int | None
    bought: bool
    placed_at: datetime | None
    actor_type: str


@dataclass(frozen=True)
class LineQuantity:
    order_line_id: int
    quantity: int


@dataclass(frozen=True)
class CancelledLine:
    order_line_id: int
    variant_id: int
    quantity: int


@dataclass(frozen=True, kw_only=True)
class OrderLinesReturned(OrderFacts):
    """Units of some lines came back under a return (``reference``)."""

    TYPE = "order.lines_returned"

    reference: str
    lines: tuple[LineQuantity, ...]


@dataclass(frozen=True, kw_only=True)
class OrderLinesCancelled(OrderFacts):
    """Units of some lines were cancelled before leaving; ``refund_due`` goes back."""

    TYPE = "order.lines_cancelled"

    refund_due: Decimal
    lines: tuple[CancelledLine, ...]


@dataclass(frozen=True, kw_only=True)
class OrderShippingChanged(OrderFacts):
    """The order ships from another country or with another carrier than quoted."""

    TYPE = "order.shipping_changed"

    origin_country: str
    carrier: str
    service: str
    quoted: dict[str, Any] | None
    actor_type: str


@dataclass(frozen=True, kw_only=True)
class OrderNoteAdded(OrderFacts):
    """Staff added a note to the order."""

    TYPE = "order.note_added"

    note_id: int


@dataclass(frozen=True, kw_only=True)
class OrderHeld(OrderFacts):
    """Staff put the order on hold: nothing is routed or shipped until it is released."""

    TYPE = "order.held"


@dataclass(frozen=True, kw_only=True)
class OrderHoldReleased(OrderFacts):
    """The hold on the order was released."""

    TYPE = "order.hold_released"
