"""The carts domain's events: carts started, and a guest's cart joining a customer's."""

from __future__ import annotations

from dataclasses import dataclass

from mercato.event_types import DomainEvent


@dataclass(frozen=True, kw_only=True)
class CartCreated(DomainEvent):
    """A shopper (a guest, or a signed-in customer) started a cart in a channel."""

    TYPE = "cart.created"
    AGGREGATE = "cart"

    cart_id: int
    channel_id: int
    customer_id: int | None
    currency: str


@dataclass(frozen=True, kw_only=True)
class CartMerged(DomainEvent):
    """After login, a guest's cart joined the customer's open cart (``from_cart_id`` is
    closed as merged)."""

    TYPE = "cart.merged"
    AGGREGATE = "cart"
    KEY = "into_cart_id"

    from_cart_id: int
    into_cart_id: int
    customer_id: int
