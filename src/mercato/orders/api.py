"""Staff view of the one order system: every channel's orders, searchable, with timelines."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

from fastapi import Depends, Query

from mercato.auth.permissions import Permission
from mercato.auth.principal import Principal
from mercato.deps import DbSession, Pagination, require
from mercato.orders import service
from mercato.orders.schemas import OrderOut, OrderSummaryOut
from mercato.orders.state import OrderStatus
from mercato.orders.views import order_out
from mercato.routing import router
from mercato.schemas import PageOut

api = router("/v1/orders", tags=["orders"])

Reader = Annotated[Principal, Depends(require(Permission.ORDERS_READ))]


@api.get("", response_model=PageOut[OrderSummaryOut])
def search_orders(
    session: DbSession,
    page: Pagination,
    principal: Reader,
    customer_id: int | None = None,
    channel_id: int | None = None,
    status: OrderStatus | None = None,
    number: Annotated[str | None, Query(max_length=20)] = None,
    external_id: Annotated[str | None, Query(max_length=64)] = None,
    location_id: int | None = None,
    placed_from: datetime | None = None,
    placed_to: datetime | None = None,
    min_total: Decimal | None = None,
    max_total: Decimal | None = None,
) -> PageOut[OrderSummaryOut]:
    """One order list for every channel: web, app, POS, marketplace, call centre."""
    cursor, limit = page
    flt = service.OrderFilter(
        customer_id=customer_id,
        channel_id=channel_id,
        status=status.value if status else None,
        number=number,
        external_id=external_id,
        placed_from=placed_from,
        placed_to=placed_to,
        min_total=min_total,
        max_total=max_total,
        location_id=location_id,
    )
    result = service.search(session, flt, cursor, limit)
    return PageOut(
        items=[OrderSummaryOut.model_validate(o) for o in result.items],
        next_cursor=result.next_cursor,
    )


@api.get("/{order_id}", response_model=OrderOut)
def get_order(order_id: int, session: DbSession, principal: Reader) -> OrderOut:
    """The order with its lines and its timeline (every status change, who and why)."""
    return order_out(session, service.get_order(session, order_id), with_timeline=True)


@api.get("/by-number/{number}", response_model=OrderOut)
def get_order_by_number(number: str, session: DbSession, principal: Reader) -> OrderOut:
    return order_out(session, service.get_by_number(session, number), with_timeline=True)
