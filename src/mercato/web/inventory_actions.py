"""The inventory screen's forms that move stock: adjust, count, transfer, purchase orders
(create and receive). Each calls the inventory service as the API's endpoint does, once per
submitted form (its idempotency key); a refusal the user can correct comes back beside the
form's fields, a refusal of the place (another store) is an error page.

The routes join ``web.inventory``'s router, which adds the back office prefix.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from mercato.auth.permissions import Permission
from mercato.auth.principal import Principal
from mercato.deps import get_database
from mercato.errors import Problem, ValidationProblem
from mercato.inventory import service
from mercato.inventory.api import level_out, purchase_order_out, transfer_out
from mercato.inventory.schemas import PurchaseOrderOut
from mercato.locations import service as locations
from mercato.locations.api import location_out
from mercato.web import PREFIX
from mercato.web.inventory_shared import (
    STATUS_NAMES,
    form_errors,
    is_form_problem,
    variant_for_sku,
    variant_labels,
    visible_locations,
)
from mercato.web.pages import once, redirect, show, url_with
from mercato.web.rendering import gettext_for, language_of
from mercato.web.session import require_page

# No prefix here: web.inventory includes this router under its own (/admin).
router = APIRouter(include_in_schema=False)

Text = Annotated[str, Form(max_length=2000)]
Key = Annotated[str, Form(max_length=200)]
MANUAL_REASONS = sorted(r.value for r in service.MANUAL_REASONS)
PO_ROWS = 25


def _places(session: Session, principal: Principal) -> dict[str, Any]:
    """Where a user may move stock from (their locations) and to (any location)."""
    everywhere = [
        location_out(x) for x in locations.get_locations(session, locations.all_ids(session))
    ]
    return {"places": visible_locations(session, principal), "destinations": everywhere}


def _form(
    request: Request,
    principal: Principal,
    template: str,
    values: dict[str, Any],
    errors: dict[str, str] | None = None,
) -> HTMLResponse:
    with get_database(request).read() as session:
        context = _places(session, principal)
    context.update(
        {
            "active": "inventory",
            "status_names": STATUS_NAMES,
            "values": values,
            "errors": errors or {},
        }
    )
    return show(request, template, context, status_code=422 if errors else 200)


def _prefill(request: Request) -> dict[str, Any]:
    """A form opened from a grid cell starts with that cell's variant and location."""
    values: dict[str, Any] = dict(request.query_params)
    variant = values.get("variant_id", "")
    if variant.isdigit():
        with get_database(request).read() as session:
            label = variant_labels(session, [int(variant)], language_of(request)).get(int(variant))
        if label:
            values["sku"] = label["sku"]
    return values


# --- adjust ---------------------------------------------------------------------------------


@router.get("/inventory/adjust", response_class=HTMLResponse)
def adjust_form(
    request: Request, principal: Principal = require_page(Permission.INVENTORY_WRITE)
) -> HTMLResponse:
    return _form(request, principal, "inventory/adjust.html", _prefill(request))


@router.post("/inventory/adjust", response_class=HTMLResponse)
def adjust(
    request: Request,
    sku: Annotated[str, Form(max_length=100)],
    location_id: Annotated[int, Form()],
    quantity: Annotated[int, Form()],
    reason: Annotated[str, Form(max_length=20)],
    idempotency_key: Key,
    note: Text = "",
    principal: Principal = require_page(Permission.INVENTORY_WRITE),
) -> Response:
    values = {"sku": sku, "location_id": location_id, "quantity": quantity, "reason": reason}
    values["note"] = note
    _ = gettext_for(request).gettext
    try:
        with get_database(request).transaction() as session:
            variant_id = variant_for_sku(session, sku)
            if reason not in MANUAL_REASONS:
                raise ValidationProblem.field("reason", f"use one of {MANUAL_REASONS}")

            def produce() -> list[dict[str, Any]]:
                ctx = service.Context(principal, None, "adjustment", None, note or None)
                line = service.AdjustmentLine(variant_id, quantity, service.Reason(reason))
                snaps = service.adjust(session, ctx, location_id, [line])
                return [level_out(x).model_dump(mode="json") for x in snaps]

            levels, _replayed = once(
                session, principal, "inventory.adjust", idempotency_key, values, produce
            )
    except Problem as problem:
        if not is_form_problem(problem):
            raise
        return _form(request, principal, "inventory/adjust.html", values, form_errors(problem))
    target = f"{PREFIX}/inventory/ledger?variant_id={variant_id}&location_id={location_id}"
    message = _(
        "Stock adjusted: %(sku)s now has %(count)s on hand.", sku=sku, count=levels[0]["on_hand"]
    )
    return redirect(request, target, message)


# --- count ----------------------------------------------------------------------------------


@router.get("/inventory/count", response_class=HTMLResponse)
def count_form(
    request: Request, principal: Principal = require_page(Permission.INVENTORY_WRITE)
) -> HTMLResponse:
    return _form(request, principal, "inventory/count.html", _prefill(request))


@router.post("/inventory/count", response_class=HTMLResponse)
def count(
    request: Request,
    sku: Annotated[str, Form(max_length=100)],
    location_id: Annotated[int, Form()],
    counted: Annotated[int, Form()],
    idempotency_key: Key,
    note: Text = "",
    principal: Principal = require_page(Permission.INVENTORY_WRITE),
) -> Response:
    """A cycle count: on hand becomes what was counted; the difference is a movement."""
    values = {"sku": sku, "location_id": location_id, "counted": counted, "note": note}
    _ = gettext_for(request).gettext
    try:
        with get_database(request).transaction() as session:
            variant_id = variant_for_sku(session, sku)

            def produce() -> dict[str, int]:
                ctx = service.Context(principal, note=note or None)
                _count, lines = service.post_count(
                    session, ctx, location_id, [(variant_id, counted)]
                )
                return {"expected": lines[0].expected, "counted": lines[0].counted}

            result, _replayed = once(
                session, principal, "inventory.count", idempotency_key, values, produce
            )
    except Problem as problem:
        if not is_form_problem(problem):
            raise
        return _form(request, principal, "inventory/count.html", values, form_errors(problem))
    target = f"{PREFIX}/inventory/ledger?variant_id={variant_id}&location_id={location_id}"
    message = _(
        "Count posted: %(expected)s expected, %(counted)s counted.",
        expected=result["expected"],
        counted=result["counted"],
    )
    return redirect(request, target, message)


# --- transfer -------------------------------------------------------------------------------


@router.get("/inventory/transfer", response_class=HTMLResponse)
def transfer_form(
    request: Request, principal: Principal = require_page(Permission.INVENTORY_WRITE)
) -> HTMLResponse:
    values = _prefill(request)
    values.setdefault("from_location_id", values.get("location_id", ""))
    values.setdefault("ship", "1")
    return _form(request, principal, "inventory/transfer.html", values)


@router.post("/inventory/transfer", response_class=HTMLResponse)
def transfer(
    request: Request,
    sku: Annotated[str, Form(max_length=100)],
    from_location_id: Annotated[int, Form()],
    to_location_id: Annotated[int, Form()],
    quantity: Annotated[int, Form()],
    idempotency_key: Key,
    ship: Annotated[str, Form(max_length=5)] = "",
    note: Text = "",
    principal: Principal = require_page(Permission.INVENTORY_WRITE),
) -> Response:
    """Send units to another location: a draft, or shipped at once (the units leave here
    and are incoming there until the other end receives them)."""
    values: dict[str, Any] = {
        "sku": sku,
        "from_location_id": from_location_id,
        "to_location_id": to_location_id,
        "quantity": quantity,
        "ship": ship,
        "note": note,
    }
    _ = gettext_for(request).gettext
    try:
        with get_database(request).transaction() as session:
            variant_id = variant_for_sku(session, sku)

            def produce() -> dict[str, Any]:
                ctx = service.Context(principal, note=note or None)
                made = service.create_transfer(
                    session,
                    ctx,
                    from_location_id,
                    to_location_id,
                    [(variant_id, quantity)],
                    ship_now=bool(ship),
                )
                out = transfer_out(session, service.get_transfer(session, made.id))
                return out.model_dump(mode="json")

            made, _replayed = once(
                session, principal, "inventory.transfer", idempotency_key, values, produce
            )
    except Problem as problem:
        if not is_form_problem(problem):
            raise
        return _form(request, principal, "inventory/transfer.html", values, form_errors(problem))
    message = _(
        "Transfer %(id)s created (%(status)s).",
        id=made["id"],
        status=_(STATUS_NAMES.get(made["status"], made["status"])),
    )
    back = urlencode({"location": from_location_id, "q": sku.strip()})
    return redirect(request, f"{PREFIX}/inventory?{back}", message)


# --- purchase orders ------------------------------------------------------------------------


@router.get("/inventory/purchase-orders", response_class=HTMLResponse)
def purchase_orders(
    request: Request,
    status: str | None = None,
    cursor: str | None = None,
    principal: Principal = require_page(Permission.INVENTORY_READ),
) -> HTMLResponse:
    """Purchase orders at the user's locations, newest first; open ones by default."""
    shown = status if status in ("open", "partially_received", "received", "cancelled") else None
    statuses = [shown] if shown else ["open", "partially_received"]
    with get_database(request).read() as session:
        found = service.list_purchase_orders(
            session,
            location_ids=principal.location_ids,
            statuses=statuses,
            cursor=cursor,
            limit=PO_ROWS,
        )
        orders = [purchase_order_out(session, po) for po in found.items]
        names = {x.id: x.name for x in visible_locations(session, principal)}
    return show(
        request,
        "inventory/purchase_orders.html",
        {
            "active": "inventory",
            "status_names": STATUS_NAMES,
            "orders": orders,
            "status": shown or "",
            "names": names,
            "next_url": url_with(request, cursor=found.next_cursor) if found.next_cursor else None,
        },
    )


@router.get("/inventory/purchase-orders/new", response_class=HTMLResponse)
def new_purchase_order(
    request: Request, principal: Principal = require_page(Permission.INVENTORY_WRITE)
) -> HTMLResponse:
    return _form(request, principal, "inventory/purchase_order_new.html", {})


def _po_lines(session: Session, text: str) -> list[tuple[int, int]]:
    """Lines typed one per line as ``SKU quantity``."""
    lines: list[tuple[int, int]] = []
    for raw in text.splitlines():
        parts = raw.split()
        if not parts:
            continue
        if len(parts) != 2 or not parts[1].isdigit():
            raise ValidationProblem.field("lines", f"write 'SKU quantity' on each line: {raw!r}")
        lines.append((variant_for_sku(session, parts[0], "lines"), int(parts[1])))
    if not lines:
        raise ValidationProblem.field("lines", "at least one line")
    return lines


@router.post("/inventory/purchase-orders/new", response_class=HTMLResponse)
def create_purchase_order(
    request: Request,
    reference: Annotated[str, Form(min_length=1, max_length=64)],
    supplier: Annotated[str, Form(min_length=1, max_length=200)],
    location_id: Annotated[int, Form()],
    lines: Annotated[str, Form(max_length=20000)],
    idempotency_key: Key,
    expected_at: Annotated[str, Form(max_length=20)] = "",
    principal: Principal = require_page(Permission.INVENTORY_WRITE),
) -> Response:
    values = {
        "reference": reference,
        "supplier": supplier,
        "location_id": location_id,
        "lines": lines,
        "expected_at": expected_at,
    }
    try:
        with get_database(request).transaction() as session:
            parsed = _po_lines(session, lines)
            expected = _expected(expected_at)

            def produce() -> dict[str, Any]:
                po = service.create_purchase_order(
                    session,
                    service.Context(principal),
                    reference,
                    supplier,
                    location_id,
                    parsed,
                    expected,
                )
                return purchase_order_out(session, po).model_dump(mode="json")

            po, _replayed = once(
                session, principal, "inventory.po", idempotency_key, values, produce
            )
    except Problem as problem:
        if not is_form_problem(problem):
            raise
        errors = form_errors(problem)
        return _form(request, principal, "inventory/purchase_order_new.html", values, errors)
    message = gettext_for(request).gettext(
        "Purchase order %(reference)s created.", reference=reference
    )
    return redirect(request, f"{PREFIX}/inventory/purchase-orders/{po['id']}", message)


def _expected(value: str) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValidationProblem.field("expected_at", "a date like 2026-12-24") from exc


def _po_page(
    request: Request, principal: Principal, po_id: int, errors: dict[str, str] | None = None
) -> HTMLResponse:
    with get_database(request).read() as session:
        po = service.get_purchase_order(session, po_id)
        principal.require_location(po.location_id)
        out: PurchaseOrderOut = purchase_order_out(session, po)
        labels = variant_labels(session, [x.variant_id for x in out.lines], language_of(request))
        place = location_out(locations.get_location(session, po.location_id))
    return show(
        request,
        "inventory/purchase_order.html",
        {
            "active": "inventory",
            "status_names": STATUS_NAMES,
            "po": out,
            "labels": labels,
            "place": place,
            "errors": errors or {},
        },
        status_code=422 if errors else 200,
    )


@router.get("/inventory/purchase-orders/{po_id}", response_class=HTMLResponse)
def purchase_order(
    request: Request, po_id: int, principal: Principal = require_page(Permission.INVENTORY_READ)
) -> HTMLResponse:
    return _po_page(request, principal, po_id)


@router.post("/inventory/purchase-orders/{po_id}/receive", response_class=HTMLResponse)
async def receive_purchase_order(
    request: Request, po_id: int, principal: Principal = require_page(Permission.INVENTORY_WRITE)
) -> Response:
    """Goods arrived: each line's ``received_<variant id>`` field says how many."""
    form = await request.form()
    received: dict[int, int] = {}
    for name, value in form.items():
        if name.startswith("received_") and isinstance(value, str) and value.strip():
            variant = name.removeprefix("received_")
            if variant.isdigit() and value.strip().isdigit() and int(value) > 0:
                received[int(variant)] = int(value)
    key = form.get("idempotency_key")
    note = form.get("note")
    return await run_in_threadpool(
        _receive,
        request,
        principal,
        po_id,
        received,
        key if isinstance(key, str) else None,
        note if isinstance(note, str) and note else None,
    )


def _receive(
    request: Request,
    principal: Principal,
    po_id: int,
    received: dict[int, int],
    key: str | None,
    note: str | None,
) -> Response:
    try:
        if not received:
            raise ValidationProblem.field("received", "enter the units that arrived")
        with get_database(request).transaction() as session:

            def produce() -> dict[str, Any]:
                ctx = service.Context(principal, note=note)
                po = service.receive_purchase_order(session, ctx, po_id, received)
                return purchase_order_out(session, po).model_dump(mode="json")

            payload = {"po": po_id, "lines": {str(k): v for k, v in received.items()}}
            po, _replayed = once(session, principal, "inventory.po.receive", key, payload, produce)
    except Problem as problem:
        if not is_form_problem(problem):
            raise
        return _po_page(request, principal, po_id, form_errors(problem))
    _ = gettext_for(request).gettext
    message = _(
        "Received: the purchase order is %(status)s.",
        status=_(STATUS_NAMES.get(po["status"], po["status"])),
    )
    return redirect(request, f"{PREFIX}/inventory/purchase-orders/{po_id}", message)
