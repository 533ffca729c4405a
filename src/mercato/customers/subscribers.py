"""The customers domain's reactions to other domains' events."""

from __future__ import annotations

from mercato.customers import figures
from mercato.events import Dispatcher


def register(dispatcher: Dispatcher) -> None:
    """Keep profile figures current from orders (merges move them in their own transaction)."""
    dispatcher.subscribe("order.placed", figures.on_order_placed)
    # Marketplace and ERP orders arrive confirmed, never "placed": they count all the same
    # (a fact per order id, so an order seen twice counts once).
    dispatcher.subscribe("order.imported", figures.on_order_placed)
    dispatcher.subscribe("order.cancelled", figures.on_order_cancelled)
    # A guest order attached to the profile of its verified email or phone.
    dispatcher.subscribe("order.customer_linked", figures.on_order_linked)
    # Lifetime value is net of refunds (see figures).
    dispatcher.subscribe("payment.refunded", figures.on_payment_refunded)
    dispatcher.subscribe("return.refunded", figures.on_return_refunded)
