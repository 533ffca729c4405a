"""The shopper's own orders: how each is shipping, what was charged, what changed."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path

from mercato.channels.deps import ChannelCtx
from mercato.customers.deps import CustomerId
from mercato.deps import DbSession
from mercato.errors import NotFound, Unauthorized
from mercato.orders import service
from mercato.orders.schemas import OrderOut
from mercato.orders.views import order_out
from mercato.routing import router

api = router("/v1/store", tags=["orders"])


def _signed_in(customer_id: CustomerId) -> int:
    if customer_id is None:
        raise Unauthorized("sign in to see your orders", code="customer-required")
    return customer_id


@api.get(
    "/orders/{number}",
    response_model=OrderOut,
    responses={401: {"description": "Not signed in"}, 404: {"description": "Not your order"}},
)
def my_order(
    number: Annotated[str, Path(max_length=20)],
    session: DbSession,
    channel: ChannelCtx,
    customer_id: Annotated[int, Depends(_signed_in)],
) -> OrderOut:
    """One of your orders, bought in any channel, with ``shipping_changes``: each time it
    came to ship from another country or with another carrier than quoted at checkout."""
    try:
        order = service.get_by_number(session, number)
    except NotFound:
        order = None
    if order is None or order.customer_id != customer_id:
        raise NotFound(f"order {number} not found")  # anyone else's does not exist
    return order_out(session, order)
