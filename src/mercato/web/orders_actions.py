"""What staff do to an order from its page: hold and release, cancel, capture, refund,
route again, start a return, write a note. Each calls what the API's endpoint calls (the
same service or flow, the same permission), after checking that the principal may read
the order (store staff: their stores' orders only)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from pydantic import ValidationError

from mercato.auth.permissions import Permission
from mercato.auth.principal import Principal
from mercato.deps import DbSession, get_database
from mercato.errors import ValidationProblem
from mercato.flows import cancellation
from mercato.fulfillment import service as fulfillment
from mercato.orders import service as orders
from mercato.payments import service as payments
from mercato.returns import service as returns
from mercato.returns.schemas import ReturnLineIn
from mercato.returns.state import Reason, RefundMethod
from mercato.web import PREFIX
from mercato.web.pages import once, redirect
from mercato.web.rendering import gettext_for
from mercato.web.session import require_page

# Included by the orders screen's router, which adds the back office prefix.
router = APIRouter(include_in_schema=False)
P = Permission

Key = Annotated[str | None, Form(max_length=64)]
Reason500 = Annotated[str, Form(min_length=1, max_length=500)]


def _order_url(order_id: int) -> str:
    return f"{PREFIX}/orders/{order_id}"


def _check(principal: Principal, order_id: int, request: Request) -> None:
    """The order exists and the principal may read it (a read of its own)."""
    with get_database(request).read() as session:
        orders.check_visible(session, principal, orders.get_order(session, order_id))


def _reason(value: str) -> str:
    text = value.strip()
    if not text:
        raise ValidationProblem.field("reason", "give a reason")
    return text


@router.post("/orders/{order_id}/hold")
def hold(
    request: Request,
    order_id: int,
    session: DbSession,
    reason: Reason500,
    idempotency_key: Key = None,
    principal: Principal = require_page(P.ORDERS_WRITE),
) -> Response:
    orders.check_visible(session, principal, orders.get_order(session, order_id))
    once(
        session,
        principal,
        "orders.hold",
        idempotency_key,
        {"order_id": order_id, "reason": reason},
        lambda: orders.hold(session, principal, order_id, _reason(reason)).id,
    )
    message = gettext_for(request).gettext("Order put on hold.")
    return redirect(request, _order_url(order_id), message)


@router.post("/orders/{order_id}/release")
def release(
    request: Request,
    order_id: int,
    session: DbSession,
    idempotency_key: Key = None,
    principal: Principal = require_page(P.ORDERS_WRITE),
) -> Response:
    orders.check_visible(session, principal, orders.get_order(session, order_id))
    once(
        session,
        principal,
        "orders.release",
        idempotency_key,
        {"order_id": order_id},
        lambda: cancellation.release_hold(session, principal, order_id).id,
    )
    return redirect(request, _order_url(order_id), gettext_for(request).gettext("Hold released."))


@router.post("/orders/{order_id}/cancel")
def cancel(
    request: Request,
    order_id: int,
    reason: Reason500,
    principal: Principal = require_page(P.ORDERS_WRITE),
) -> Response:
    """The cancellation flow: stock and codes back, authorisations voided, captured money
    refunded (it commits step by step, like ``POST /v1/orders/{id}/cancel``)."""
    _check(principal, order_id, request)
    cancellation.cancel_order(
        get_database(request),
        principal,
        order_id,
        _reason(reason),
        request_id=getattr(request.state, "request_id", None),
    )
    return redirect(request, _order_url(order_id), gettext_for(request).gettext("Order cancelled."))


@router.post("/orders/{order_id}/route")
def route(
    request: Request,
    order_id: int,
    session: DbSession,
    idempotency_key: Key = None,
    principal: Principal = require_page(P.ORDERS_WRITE),
) -> Response:
    """Source the open lines again, as ``POST /v1/orders/{id}/route``."""
    orders.check_visible(session, principal, orders.get_order(session, order_id))

    def run() -> Any:
        decision = fulfillment.route_order(session, principal, order_id, trigger="manual")
        return None if decision is None else decision.id

    decided, _replayed = once(
        session, principal, "orders.route", idempotency_key, {"order_id": order_id}, run
    )
    _ = gettext_for(request).gettext
    message = _("Order routed again.") if decided else _("No open lines to route.")
    return redirect(request, _order_url(order_id), message)


@router.post("/orders/{order_id}/notes")
def add_note(
    request: Request,
    order_id: int,
    session: DbSession,
    body: Annotated[str, Form(min_length=1, max_length=5000)],
    idempotency_key: Key = None,
    principal: Principal = require_page(P.ORDERS_WRITE),
) -> Response:
    orders.check_visible(session, principal, orders.get_order(session, order_id))
    once(
        session,
        principal,
        "orders.note",
        idempotency_key,
        {"order_id": order_id, "body": body},
        lambda: orders.add_note(session, principal, order_id, body).id,
    )
    return redirect(request, _order_url(order_id), gettext_for(request).gettext("Note added."))


def _amount(value: str) -> Decimal | None:
    text = value.strip().replace(",", ".")
    if not text:
        return None
    try:
        amount = Decimal(text)
    except InvalidOperation as exc:
        raise ValidationProblem.field("amount", "an amount such as 12.50") from exc
    if not amount.is_finite() or amount <= 0:
        raise ValidationProblem.field("amount", "a positive amount")
    return amount


def _payment_of(request: Request, principal: Principal, order_id: int, payment_id: int) -> None:
    """The payment belongs to this order, which the principal may read."""
    with get_database(request).read() as session:
        orders.check_visible(session, principal, orders.get_order(session, order_id))
        if payments.get_payment(session, payment_id).order_id != order_id:
            raise ValidationProblem.field("payment", "not a payment of this order")


@router.post("/orders/{order_id}/payments/{payment_id}/capture")
def capture(
    request: Request,
    order_id: int,
    payment_id: int,
    amount: Annotated[str, Form(max_length=30)] = "",
    idempotency_key: Key = None,
    principal: Principal = require_page(P.PAYMENTS_WRITE),
) -> Response:
    """``POST /v1/payments/{id}/capture``: all that is left, or the amount given."""
    _payment_of(request, principal, order_id, payment_id)
    payments.capture(
        get_database(request),
        payment_id,
        _amount(amount),
        actor=principal,
        request_key=idempotency_key,
        request_id=getattr(request.state, "request_id", None),
    )
    message = gettext_for(request).gettext("Payment captured.")
    return redirect(request, _order_url(order_id), message)


@router.post("/orders/{order_id}/payments/{payment_id}/refund")
def refund(
    request: Request,
    order_id: int,
    payment_id: int,
    amount: Annotated[str, Form(max_length=30)],
    reason: Annotated[str, Form(max_length=500)] = "",
    idempotency_key: Key = None,
    principal: Principal = require_page(P.REFUNDS_WRITE),
) -> Response:
    """``POST /v1/payments/{id}/refunds``."""
    _payment_of(request, principal, order_id, payment_id)
    value = _amount(amount)
    if value is None:
        raise ValidationProblem.field("amount", "the amount to refund")
    payments.refund(
        get_database(request),
        payment_id,
        value,
        reason=reason.strip() or None,
        actor=principal,
        request_key=idempotency_key,
        request_id=getattr(request.state, "request_id", None),
    )
    return redirect(request, _order_url(order_id), gettext_for(request).gettext("Refund sent."))


@router.post("/orders/{order_id}/returns")
async def start_return(
    request: Request,
    order_id: int,
    session: DbSession,
    principal: Principal = require_page(P.ORDERS_WRITE),
) -> Response:
    """``POST /v1/returns``: units of the order's lines (``qty_<line id>``) with a reason."""
    form = await request.form()
    orders.check_visible(session, principal, orders.get_order(session, order_id))
    reason = str(form.get("reason") or "")
    note = str(form.get("note") or "").strip() or None
    method = str(form.get("refund_method") or RefundMethod.ORIGINAL_PAYMENT.value)
    lines = []
    try:
        for name, value in form.multi_items():
            if name.startswith("qty_") and str(value).strip() not in ("", "0"):
                lines.append(
                    ReturnLineIn(
                        order_line_id=int(name.removeprefix("qty_")),
                        quantity=int(str(value)),
                        reason=Reason(reason),
                    )
                )
        refund_method = RefundMethod(method)
    except (ValueError, ValidationError) as exc:
        raise ValidationProblem.field("lines", "whole units and a reason for each line") from exc
    if not lines:
        raise ValidationProblem.field("lines", "choose at least one unit to return")

    def run() -> Any:
        order = returns.order_to_return(session, order_id, None)
        request_ = returns.ReturnRequest(
            lines=[
                returns.LineRequest(x.order_line_id, x.quantity, x.reason, None, None)
                for x in lines
            ],
            note=note,
            refund_method=refund_method,
        )
        return returns.request_return(session, principal, order, request_).number

    payload = {"order_id": order_id, "lines": [x.model_dump(mode="json") for x in lines]}
    key = str(form.get("idempotency_key") or "") or None
    number, _replayed = once(session, principal, "returns.create", key, payload, run)
    message = gettext_for(request).gettext("Return %(number)s started.") % {"number": number}
    return redirect(request, _order_url(order_id), message)
