"""Staff view of the one order system: every channel's orders, searchable, with timelines."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import Depends, Query, Request, Response
from fastapi.responses import JSONResponse

from mercato.auth.permissions import Permission
from mercato.auth.principal import Principal
from mercato.deps import (
    DbSession,
    IdempotencyKey,
    Pagination,
    get_database,
    require,
    require_outside_transaction,
)
from mercato.errors import PROBLEM_CONTENT_TYPE, ValidationProblem
from mercato.flows import cancellation, imported_orders, staff_orders
from mercato.flows.staff_orders import StaffOrderIn
from mercato.fulfillment import service as fulfillment
from mercato.orders import service
from mercato.orders.schemas import (
    CancellationOut,
    CancelLinesIn,
    ImportOrderIn,
    NoteIn,
    NoteOut,
    OrderOut,
    OrderSummaryOut,
    ReasonIn,
    RoutingDecisionOut,
    TransitionIn,
)
from mercato.orders.state import OrderStatus
from mercato.orders.views import note_out, order_out
from mercato.payments import service as payments
from mercato.routing import router
from mercato.schemas import MoneyFilter, PageOut

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
    min_total: MoneyFilter | None = None,
    max_total: MoneyFilter | None = None,
    email: Annotated[str | None, Query(max_length=254)] = None,
    phone: Annotated[str | None, Query(max_length=32)] = None,
    payment_status: Annotated[str | None, Query(max_length=20)] = None,
    on_hold: bool | None = None,
) -> PageOut[OrderSummaryOut]:
    """One order list for every channel: web, app, POS, marketplace, call centre.

    A declined checkout attempt (``payment_failed``) is listed only when asked for with
    ``status=payment_failed`` or its ``number``. ``email`` and ``phone`` find the orders
    placed with them and the orders of the customers holding them; ``payment_status`` the
    orders with a payment in that state; ``on_hold`` those held (or not). Store staff see
    their stores' orders only.
    """
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
        email=email,
        phone=phone,
        payment_orders=None
        if payment_status is None
        else payments.orders_with_payment_status(payment_status),
        scope=principal.location_ids,
        on_hold=on_hold,
    )
    result = service.search(session, flt, cursor, limit)
    return PageOut(
        items=[OrderSummaryOut.model_validate(o) for o in result.items],
        next_cursor=result.next_cursor,
    )


@api.get("/{order_id}", response_model=OrderOut)
def get_order(order_id: int, session: DbSession, principal: Reader) -> OrderOut:
    """The order with its lines and its timeline (every status change, who and why)."""
    order = service.check_visible(session, principal, service.get_order(session, order_id))
    return order_out(session, order, with_timeline=True, reader=principal)


@api.get("/by-number/{number}", response_model=OrderOut)
def get_order_by_number(number: str, session: DbSession, principal: Reader) -> OrderOut:
    order = service.check_visible(session, principal, service.get_by_number(session, number))
    return order_out(session, order, with_timeline=True, reader=principal)


Writer = Annotated[Principal, Depends(require(Permission.ORDERS_WRITE))]
WriterNoTx = Annotated[Principal, Depends(require_outside_transaction(Permission.ORDERS_WRITE))]


def _outcome_response(outcome: Any) -> JSONResponse:
    media = PROBLEM_CONTENT_TYPE if outcome.status_code >= 400 else "application/json"
    return JSONResponse(outcome.body, status_code=outcome.status_code, media_type=media)


@api.post("", status_code=201, responses={201: {"model": OrderOut}})
def create_order(
    request: Request, body: StaffOrderIn, principal: WriterNoTx, key: IdempotencyKey
) -> JSONResponse:
    """Take an order for a customer (call centre; endless aisle: sold in store, shipped from
    a warehouse). Same stock, codes and payment rules as a shopper's checkout."""
    outcome = staff_orders.create_staff_order(
        get_database(request),
        principal,
        body,
        key=key,
        request_id=getattr(request.state, "request_id", None),
    )
    return _outcome_response(outcome)


@api.post("/import", response_model=OrderOut, status_code=201)
def import_order(
    body: ImportOrderIn, session: DbSession, principal: Writer, response: Response
) -> OrderOut:
    """An order sold on a marketplace or in an ERP, at its prices, paid there. The same
    ``external_id`` in the same channel answers the existing order (200), never a second."""
    order, created = imported_orders.import_order(
        session,
        principal,
        imported_orders.ImportRequest(
            channel_id=body.channel_id,
            external_id=body.external_id,
            currency=body.currency,
            lines=[
                imported_orders.ImportLine(x.sku, x.quantity, x.unit_price, x.discount, x.tax)
                for x in body.lines
            ],
            shipping_total=body.shipping_total,
            tax_included=body.tax_included,
            email=body.email,
            customer_id=body.customer_id,
            shipping_address=body.shipping_address,
            paid=body.paid,
            locale=body.locale,
            identities=[(i.type.value, i.value, i.verified) for i in body.identities],
            customer_name=body.customer_name,
        ),
    )
    if not created:
        response.status_code = 200
    return order_out(session, order, reader=principal)


def _cancellation(
    request: Request, result: cancellation.Cancellation, reader: Principal
) -> CancellationOut:
    with get_database(request).read() as session:
        order = service.get_order(session, result.order.id)
        refunded = sum((r.amount for r in result.refunds), Decimal(0))
        return CancellationOut(
            order=order_out(session, order, with_timeline=True, reader=reader),
            refund_due=result.refund_due,
            refunded=refunded,
        )


@api.post("/{order_id}/cancel", response_model=CancellationOut)
def cancel_order(
    request: Request, order_id: int, body: ReasonIn, principal: WriterNoTx
) -> CancellationOut:
    """Cancel what is not yet shipped or collected: stock back, codes back, authorisations
    voided, captured money refunded to the original payment methods."""
    result = cancellation.cancel_order(
        get_database(request),
        principal,
        order_id,
        body.reason,
        request_id=getattr(request.state, "request_id", None),
    )
    return _cancellation(request, result, principal)


@api.post("/{order_id}/lines/cancel", response_model=CancellationOut)
def cancel_lines(
    request: Request, order_id: int, body: CancelLinesIn, principal: WriterNoTx
) -> CancellationOut:
    quantities: dict[int, int] = {}
    for x in body.lines:
        quantities[x.order_line_id] = quantities.get(x.order_line_id, 0) + x.quantity
    result = cancellation.cancel_lines(
        get_database(request),
        principal,
        order_id,
        quantities,
        body.reason,
        request_id=getattr(request.state, "request_id", None),
    )
    return _cancellation(request, result, principal)


@api.post("/{order_id}/hold", response_model=OrderOut)
def hold(order_id: int, body: ReasonIn, session: DbSession, principal: Writer) -> OrderOut:
    order = service.hold(session, principal, order_id, body.reason)
    return order_out(session, order, reader=principal)


@api.post("/{order_id}/release", response_model=OrderOut)
def release_hold(order_id: int, session: DbSession, principal: Writer) -> OrderOut:
    order = cancellation.release_hold(session, principal, order_id)
    return order_out(session, order, reader=principal)


@api.post("/{order_id}/notes", response_model=NoteOut, status_code=201)
def add_note(order_id: int, body: NoteIn, session: DbSession, principal: Writer) -> NoteOut:
    return note_out(service.add_note(session, principal, order_id, body.body), principal)


@api.get("/{order_id}/notes", response_model=PageOut[NoteOut])
def list_notes(order_id: int, session: DbSession, principal: Reader) -> PageOut[NoteOut]:
    service.check_visible(session, principal, service.get_order(session, order_id))
    return PageOut(items=[note_out(n, principal) for n in service.notes(session, order_id)])


@api.post("/{order_id}/transitions", response_model=OrderOut)
def transition(
    order_id: int, body: TransitionIn, session: DbSession, principal: Writer
) -> OrderOut:
    """Move an order by hand where no stock or money moves: approve after fraud review
    (``confirmed``), hold for review, mark delivered without tracking, close."""
    try:
        target = OrderStatus(body.to)
    except ValueError as exc:
        raise ValidationProblem.field("body.to", "not an order status") from exc
    if target not in service.MANUAL_TARGETS:
        raise ValidationProblem.field(
            "body.to", "set by payment, routing, fulfilment or cancellation, not by hand"
        )
    order = service.transition(session, principal, order_id, target, reason=body.reason)
    return order_out(session, order, with_timeline=True, reader=principal)


@api.get("/{order_id}/routing", response_model=PageOut[RoutingDecisionOut])
def routing_decisions(
    order_id: int, session: DbSession, principal: Reader
) -> PageOut[RoutingDecisionOut]:
    """Every sourcing decision for the order, with the engine's explanation."""
    service.check_visible(session, principal, service.get_order(session, order_id))
    decisions = fulfillment.decisions(session, order_id)
    return PageOut(items=[RoutingDecisionOut.model_validate(d) for d in decisions])


@api.post("/{order_id}/route", response_model=list[RoutingDecisionOut])
def route(order_id: int, session: DbSession, principal: Writer) -> list[RoutingDecisionOut]:
    """Source the open lines again (after stock arrived for a line that could not be)."""
    fulfillment.route_order(session, principal, order_id, trigger="manual")
    return [RoutingDecisionOut.model_validate(d) for d in fulfillment.decisions(session, order_id)]
