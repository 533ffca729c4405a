"""The checkout's events."""

from __future__ import annotations

from dataclasses import dataclass

from mercato.event_types import DomainEvent


@dataclass(frozen=True, kw_only=True)
class CheckoutAbandoned(DomainEvent):
    """A checkout stopped between taking the stock and the payment's answer (the shopper
    left, or the process died): its order is cancelled, holds and payments given back."""

    TYPE = "checkout.abandoned"
    AGGREGATE = "order"

    order_id: int
    number: str
    channel_id: int
    customer_id: int | None
    cart_id: int | None
    reason: str
    payment_ids: tuple[int, ...]
