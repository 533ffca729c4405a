"""An order taken for a customer on the phone: the staff order flow of ``POST /v1/orders``
(a cart built in the chosen channel, the buyer resolved by phone, the same checkout as a
shopper's). The agent first gets the total to read out (a quote from the same cart,
nothing kept), then places the order, paid on delivery."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from mercato.auth.permissions import Permission
from mercato.auth.principal import Principal
from mercato.channels import service as channels
from mercato.deps import get_database
from mercato.errors import Problem
from mercato.flows import staff_orders
from mercato.web import PREFIX
from mercato.web.pages import redirect, show
from mercato.web.rendering import gettext_for
from mercato.web.session import require_page

# Included by the orders screen's router, which adds the back office prefix.
router = APIRouter(include_in_schema=False)
P = Permission

LINES = 3
FIELDS = (
    "channel_id",
    "phone",
    "email",
    "customer_name",
    "ship_name",
    "ship_line1",
    "ship_postal_code",
    "ship_city",
    "ship_country",
    "note",
    "amount",
    *(f"{k}_{i}" for i in range(1, LINES + 1) for k in ("sku", "qty")),
)
# The call centre cannot take card numbers: the order is paid to the courier.
METHOD = "cash_on_delivery"


def _channels(session: Session) -> list[dict[str, Any]]:
    """Call centre channels first: they are what the form is for."""
    found = sorted(channels.list_channels(session), key=lambda c: (c.type != "call_centre", c.id))
    return [{"id": c.id, "name": c.name} for c in found if c.active]


def _form(request: Request, values: dict[str, str], **extra: Any) -> HTMLResponse:
    with get_database(request).read() as session:
        known = _channels(session)
    context = {
        "active": "orders",
        "values": values,
        "channels": known,
        "lines": range(1, LINES + 1),
        "quote": None,
        "errors": {},
        "problem": None,
        **extra,
    }
    return show(
        request,
        "orders/new.html",
        context,
        status_code=422 if context["errors"] or context["problem"] else 200,
    )


@router.get("/orders/new", response_class=HTMLResponse)
def new_order(
    request: Request, principal: Principal = require_page(P.ORDERS_WRITE)
) -> HTMLResponse:
    return _form(request, {"qty_1": "1"})


def _currency(session: Session, values: dict[str, str]) -> str | None:
    """The currency the channel quotes the delivery country's shoppers in (None: the
    channel's own)."""
    channel_id, country = values.get("channel_id", ""), values.get("ship_country", "")
    if not channel_id.isdigit() or not channels.exists(session, int(channel_id)):
        return None
    by_country = channels.get_channel(session, int(channel_id)).country_currencies or {}
    return by_country.get(country.strip().upper())


def _body(
    values: dict[str, str], amount: Decimal, currency: str | None
) -> staff_orders.StaffOrderIn:
    lines = [
        {"sku": values[f"sku_{i}"].strip(), "quantity": values.get(f"qty_{i}") or "1"}
        for i in range(1, LINES + 1)
        if values.get(f"sku_{i}", "").strip()
    ]
    phone = values.get("phone", "").strip()
    address = {
        "name": values.get("ship_name", "").strip() or values.get("customer_name", "").strip(),
        "line1": values.get("ship_line1", "").strip(),
        "postal_code": values.get("ship_postal_code", "").strip() or None,
        "city": values.get("ship_city", "").strip(),
        "country": values.get("ship_country", "").strip().upper(),
        "phone": phone or None,
    }
    return staff_orders.StaffOrderIn.model_validate(
        {
            "channel_id": values.get("channel_id") or "0",
            "identities": [{"type": "phone", "value": phone}] if phone else [],
            "customer_name": values.get("customer_name", "").strip() or None,
            "currency": currency,
            "email": values.get("email", "").strip() or None,
            "lines": lines,
            "shipping_address": address,
            "payments": [{"method": METHOD, "amount": str(amount)}],
            "note": values.get("note", "").strip() or None,
        }
    )


def _errors(exc: ValidationError) -> dict[str, str]:
    """Pydantic's errors by form field (``shipping_address.city`` -> ``ship_city``)."""
    found: dict[str, str] = {}
    for error in exc.errors():
        loc = [str(x) for x in error["loc"]]
        if loc[:1] == ["shipping_address"] and len(loc) > 1:
            name = f"ship_{loc[1]}"
        elif loc[:1] == ["lines"]:
            name = "sku_1"
        elif loc[:1] == ["identities"]:
            name = "phone"
        else:
            name = loc[0] if loc else "form"
        found.setdefault(name, str(error["msg"]))
    return found


@router.post("/orders/new", response_class=HTMLResponse)
async def take_order(
    request: Request, principal: Principal = require_page(P.ORDERS_WRITE)
) -> Response:
    """``step=quote``: the totals to read out; ``step=place``: the order, for the amount
    quoted (a changed total is refused by the checkout, and quoted again)."""
    form = await request.form()
    values = {name: str(form.get(name) or "") for name in FIELDS}
    placing = form.get("step") == "place"
    key = str(form.get("idempotency_key") or "") or None
    # The flows open their own transactions: off the event loop, like a sync handler.
    return await run_in_threadpool(_take, request, principal, values, placing, key)


def _take(
    request: Request,
    principal: Principal,
    values: dict[str, str],
    placing: bool,
    key: str | None,
) -> Response:
    database = get_database(request)
    try:
        amount = Decimal(values["amount"]) if placing and values["amount"] else Decimal(1)
        with database.read() as session:
            currency = _currency(session, values)
        body = _body(values, amount, currency)
    except (ValidationError, ArithmeticError) as exc:
        errors = _errors(exc) if isinstance(exc, ValidationError) else {"amount": str(exc)}
        return _form(request, values, errors=errors)
    try:
        quote = staff_orders.quote_staff_order(database, principal, body)
    except Problem as problem:
        return _form(request, values, problem=problem.detail)
    if not placing or quote.issues or quote.grand_total != amount:
        values["amount"] = str(quote.grand_total)
        changed = placing and quote.grand_total != amount
        return _form(request, values, quote=quote, changed=changed)
    outcome = staff_orders.create_staff_order(
        database,
        principal,
        body,
        key=key,
        request_id=getattr(request.state, "request_id", None),
    )
    if outcome.status_code >= 400:
        detail = outcome.body.get("detail") or outcome.body.get("title")
        return _form(request, values, quote=quote, problem=str(detail))
    number = outcome.body.get("number", "")
    message = gettext_for(request).gettext("Order %(number)s placed.") % {"number": number}
    return redirect(request, f"{PREFIX}/orders/{outcome.body['id']}", message)
