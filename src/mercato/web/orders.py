"""The orders screen: one list for every channel, the order page, and the call centre's
order form. The actions on an order are in ``orders_actions``, the order form in
``orders_new``.

Pages call what ``/v1/orders`` calls, with the signed-in principal: the same search (store
staff see their stores' orders only), the same response schemas (an analyst's orders come
without email, phone, names or addresses beyond the country).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from fastapi import Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from mercato.auth.permissions import Permission
from mercato.auth.principal import Principal
from mercato.channels import service as channels
from mercato.customers.normalize import normalise_phone
from mercato.deps import DbSession
from mercato.fulfillment import service as fulfillment
from mercato.fulfillment.api import task_out
from mercato.locations import service as locations
from mercato.orders import service as orders
from mercato.orders.schemas import OrderSummaryOut, RoutingDecisionOut
from mercato.orders.state import OrderStatus
from mercato.orders.views import order_out, sees_personal_data
from mercato.payments import service as payments
from mercato.payments.schemas import PaymentOut, RefundOut
from mercato.returns import service as returns
from mercato.returns.schemas import ReturnSummaryOut
from mercato.returns.state import Reason
from mercato.web import orders_actions, orders_messages, orders_new
from mercato.web.pages import page_router, show, url_with
from mercato.web.session import require_page

router = page_router()
router.include_router(orders_actions.router)
router.include_router(orders_new.router)
router.include_router(orders_messages.router)

P = Permission
PAGE_SIZE = 50
# The payment states a list can be filtered by (payments.models.PaymentStatus).
PAYMENT_STATES = (
    "pending",
    "requires_action",
    "authorized",
    "partially_captured",
    "captured",
    "partially_refunded",
    "refunded",
    "voided",
    "declined",
    "failed",
)
ON_HOLD = "on_hold"
ORDER_NUMBER = re.compile(r"^M[0-9A-Z]{4}-[0-9A-Z]{4}$")
SMALL = Annotated[str, Query(max_length=40)]


def names(session: Session) -> dict[str, dict[int, str]]:
    """Channel and location names by id, for showing ids the schemas carry."""
    places = locations.get_locations(session, locations.all_ids(session, active_only=False))
    return {
        "channels": {c.id: c.name for c in channels.list_channels(session)},
        "locations": {x.id: x.name for x in places},
    }


def _int(value: str) -> int | None:
    return int(value) if value.isdigit() else None


def _start_of(day: date | None) -> datetime | None:
    # Days in UTC, as the API's placed_from / placed_to are.
    return None if day is None else datetime(day.year, day.month, day.day, tzinfo=UTC)


def _day(value: str) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


def search_terms(q: str) -> dict[str, str]:
    """What a search box text is: an email, an order number, a phone number (international
    form, +49...), or else a marketplace's external id."""
    text = q.strip()
    if not text:
        return {}
    if "@" in text:
        return {"email": text}
    if ORDER_NUMBER.match(text.upper()):
        return {"number": text.upper()}
    try:
        return {"phone": normalise_phone(text)}
    except ValueError:
        return {"external_id": text}


@router.get("/orders", response_class=HTMLResponse)
def order_list(
    request: Request,
    session: DbSession,
    principal: Principal = require_page(P.ORDERS_READ),
    q: Annotated[str, Query(max_length=254)] = "",
    channel: SMALL = "",
    status: SMALL = "",
    location: SMALL = "",
    placed_from: SMALL = "",
    placed_to: SMALL = "",
    payment: SMALL = "",
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> HTMLResponse:
    """Newest first; the filters are the API's (indexed columns, cursor pagination)."""
    terms = search_terms(q)
    first, last = _day(placed_from), _day(placed_to)
    flt = orders.OrderFilter(
        channel_id=_int(channel),
        status=status if status in {s.value for s in OrderStatus} else None,
        # "On hold" is listed with the statuses: it is what staff look for beside them.
        on_hold=True if status == ON_HOLD else None,
        location_id=_int(location),
        placed_from=_start_of(first),
        placed_to=None if last is None else _start_of(last + timedelta(days=1)),
        payment_orders=orders_with(payment),
        scope=principal.location_ids,
        number=terms.get("number"),
        external_id=terms.get("external_id"),
        email=terms.get("email"),
        phone=terms.get("phone"),
    )
    found = orders.search(session, flt, cursor, PAGE_SIZE)
    known = names(session)
    if principal.location_ids is not None:
        known["filter_locations"] = {
            k: v for k, v in known["locations"].items() if k in principal.location_ids
        }
    else:
        known["filter_locations"] = known["locations"]
    return show(
        request,
        "orders/list.html",
        {
            "active": "orders",
            "items": [OrderSummaryOut.model_validate(o) for o in found.items],
            "next_url": url_with(request, cursor=found.next_cursor) if found.next_cursor else None,
            "filters": {
                "q": q,
                "channel": channel,
                "status": status,
                "location": location,
                "placed_from": placed_from,
                "placed_to": placed_to,
                "payment": payment,
            },
            "filtered": any(
                (q, channel, status, location, placed_from, placed_to, payment, cursor)
            ),
            "statuses": [ON_HOLD, *(s.value for s in OrderStatus)],
            "payment_states": PAYMENT_STATES,
            "names": known,
        },
    )


def orders_with(payment: str) -> Any:
    return payments.orders_with_payment_status(payment) if payment in PAYMENT_STATES else None


def visible_order(session: Session, principal: Principal, order_id: int) -> Any:
    """The order if the principal may read it (store staff: their stores' orders only)."""
    return orders.check_visible(session, principal, orders.get_order(session, order_id))


@router.get("/orders/{order_id}", response_class=HTMLResponse)
def order_page(
    request: Request,
    order_id: int,
    session: DbSession,
    principal: Principal = require_page(P.ORDERS_READ),
) -> HTMLResponse:
    order = visible_order(session, principal, order_id)
    out = order_out(session, order, with_timeline=True, reader=principal)
    found = payments.list_payments(
        session,
        reference=None,
        status=None,
        method=None,
        order_id=order.id,
        cursor=None,
        limit=PAGE_SIZE,
    ).items
    refunds: dict[int, list[RefundOut]] = {}
    for r in payments.payment_refunds(session, [p.id for p in found]):
        refund = RefundOut.model_validate(r)
        if not sees_personal_data(principal):
            # A refund's reason is staff's free text, which may quote the customer.
            refund = refund.model_copy(update={"reason": None})
        refunds.setdefault(refund.payment_id, []).append(refund)
    paid = [
        PaymentOut.model_validate(p).model_copy(update={"refunds": refunds.get(p.id, [])})
        for p in found
    ]
    tasks = fulfillment.tasks_for_order(session, order.id)
    decisions = fulfillment.decisions(session, order.id)
    flt = returns.ReturnFilter(order_id=order.id)
    order_returns = returns.search(session, flt, None, PAGE_SIZE).items
    returnable = orders.returnable_quantities(session, order.id)
    status = OrderStatus(order.status)
    return show(
        request,
        "orders/order.html",
        {
            "active": "orders",
            "order": out,
            "payments": paid,
            "tasks": [task_out(session, principal, t) for t in tasks],
            "decisions": [RoutingDecisionOut.model_validate(d) for d in decisions],
            "returns": [ReturnSummaryOut.model_validate(r) for r in order_returns],
            "messages": orders_messages.messages_of(session, principal, order.id),
            "returnable": {k: v for k, v in returnable.items() if v > 0},
            "return_reasons": [r.value for r in Reason],
            "names": names(session),
            "can": {
                "write": principal.has(P.ORDERS_WRITE),
                "resend": principal.has(P.ORDERS_WRITE),
                "pii": sees_personal_data(principal),
                "hold": principal.has(P.ORDERS_WRITE)
                and not order.on_hold
                and status in orders.CANCELLABLE,
                "release": principal.has(P.ORDERS_WRITE) and order.on_hold,
                "cancel": principal.has(P.ORDERS_WRITE) and status in orders.CANCELLABLE,
                "route": principal.has(P.ORDERS_WRITE) and status in fulfillment.ROUTABLE,
                "capture": principal.has(P.PAYMENTS_WRITE),
                "refund": principal.has(P.REFUNDS_WRITE),
            },
        },
    )
