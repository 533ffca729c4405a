"""The returns domain's events: ``return.<status>``, one per step of a return's life cycle."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from mercato.event_types import DomainEvent
from mercato.returns.state import ReturnStatus


@dataclass(frozen=True)
class ReturnedLine:
    """A line of the return: the variant, its units and why they came back.

    ``amount`` is the money (or store credit) that went back for it once the return is
    refunded (what loyalty reverses points on); before that, its credit once received.
    """

    return_line_id: int
    order_line_id: int
    variant_id: int
    quantity: int
    reason: str
    condition: str | None
    amount: Decimal | None


@dataclass(frozen=True, kw_only=True)
class ReturnFacts(DomainEvent):
    """What every return event says about the return."""

    AGGREGATE = "return"

    return_id: int
    number: str
    order_id: int
    order_number: str
    channel_id: int
    customer_id: int | None
    currency: str
    status: str
    location_id: int | None
    refund_method: str
    refunded_total: Decimal
    shipping_refund: Decimal
    exchange_order_id: int | None
    lines: tuple[ReturnedLine, ...]


@dataclass(frozen=True, kw_only=True)
class ReturnRequested(ReturnFacts):
    """A customer (or staff for them) asked to return units of an order."""

    TYPE = "return.requested"


@dataclass(frozen=True, kw_only=True)
class ReturnApproved(ReturnFacts):
    """The return is accepted (by its policy at once, or by staff): the units may come back."""

    TYPE = "return.approved"


@dataclass(frozen=True, kw_only=True)
class ReturnReceived(ReturnFacts):
    """The units arrived at a location; each line's credit is known."""

    TYPE = "return.received"


@dataclass(frozen=True, kw_only=True)
class ReturnInspected(ReturnFacts):
    """Each line was restocked, written off as damaged or set aside for the vendor."""

    TYPE = "return.inspected"


@dataclass(frozen=True, kw_only=True)
class ReturnRefunded(ReturnFacts):
    """Money or store credit went back to the customer for the return."""

    TYPE = "return.refunded"


@dataclass(frozen=True, kw_only=True)
class ReturnClosed(ReturnFacts):
    """The return ended with nothing (more) to pay out, e.g. an even exchange."""

    TYPE = "return.closed"


@dataclass(frozen=True, kw_only=True)
class ReturnRejected(ReturnFacts):
    """Staff refused the return before anything arrived."""

    TYPE = "return.rejected"


@dataclass(frozen=True, kw_only=True)
class ReturnCancelled(ReturnFacts):
    """The return was withdrawn (by the customer or staff) before anything arrived."""

    TYPE = "return.cancelled"


# The event a return's move into each status publishes.
STATUS_EVENTS: dict[ReturnStatus, type[ReturnFacts]] = {
    ReturnStatus.REQUESTED: ReturnRequested,
    ReturnStatus.APPROVED: ReturnApproved,
    ReturnStatus.RECEIVED: ReturnReceived,
    ReturnStatus.INSPECTED: ReturnInspected,
    ReturnStatus.REFUNDED: ReturnRefunded,
    ReturnStatus.CLOSED: ReturnClosed,
    ReturnStatus.REJECTED: ReturnRejected,
    ReturnStatus.CANCELLED: ReturnCancelled,
}
