"""Fulfilment for one location: the pick list, packing and shipping with labels, the
click & collect shelf and handover, transfers in and out, and the returns desk.

Store staff work at their own stores (the location chooser offers only those, and the
services refuse the others); everyone else chooses the location. Reads use the same
service calls and response schemas as the fulfilment, inventory, returns and shipping
APIs; the actions are in ``fulfilment_actions`` (its own router, in the web manifest).
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from mercato.auth.permissions import Permission
from mercato.auth.principal import Principal
from mercato.deps import get_database
from mercato.errors import NotFound
from mercato.fulfillment import service as fulfillment
from mercato.fulfillment.api import TaskOut, task_out
from mercato.inventory import service as inventory
from mercato.inventory.api import transfer_out
from mercato.inventory.schemas import TransferOut
from mercato.locations import service as locations
from mercato.locations.schemas import LocationOut
from mercato.orders import service as orders
from mercato.pagination import decode_id_cursor, page_of
from mercato.returns import service as returns
from mercato.returns.schemas import ReturnOut
from mercato.returns.views import return_out, shown_to
from mercato.shipping import service as shipping
from mercato.shipping.api import label_out
from mercato.web.inventory_shared import (
    STATUS_NAMES,
    int_or_none,
    variant_labels,
    visible_locations,
)
from mercato.web.pages import page_router, show, url_with
from mercato.web.rendering import language_of
from mercato.web.session import require_page

router = page_router()

ROWS = 20
# The tabs of the task list: which task status each shows.
TASK_TABS = {
    "pick": "open",
    "awaiting": "awaiting_transfer",
    "picking": "picking",
    "packed": "packed",
    "shelf": "ready_for_pickup",
    "shipped": "shipped",
    "collected": "picked_up",
}
TABS = (*TASK_TABS, "transfers", "returns")


def choose_location(
    session: Session, principal: Principal, wanted: int | None
) -> tuple[LocationOut, list[LocationOut]]:
    """The location worked at: the one asked for (store staff: only theirs), else the
    user's first."""
    places = visible_locations(session, principal)
    if not places:
        raise NotFound("no location to work at")
    if wanted is None:
        return places[0], places
    principal.require_location(wanted)
    for place in places:
        if place.id == wanted:
            return place, places
    raise NotFound(f"location {wanted}")


def _tasks(
    session: Session,
    principal: Principal,
    place: int,
    status: str,
    cursor: str | None,
    order_number: str,
) -> tuple[list[TaskOut], str | None]:
    order_id = None
    if order_number:
        try:
            order_id = orders.get_by_number(session, order_number).id
        except NotFound:
            return [], None
    found = fulfillment.list_tasks(
        session,
        location_ids=frozenset({place}),
        status=status,
        kind=None,
        limit=ROWS + 1,
        after=decode_id_cursor(cursor),
        order_id=order_id,
    )
    page = page_of(found, ROWS, key=lambda task: task.id)
    return [task_out(session, principal, t) for t in page.items], page.next_cursor


def _transfers(
    session: Session, place: int, cursor: str | None
) -> tuple[list[TransferOut], str | None]:
    found = inventory.list_transfers(
        session, location_ids=frozenset({place}), cursor=cursor, limit=ROWS
    )
    return [transfer_out(session, t) for t in found.items], found.next_cursor


def _return_out(session: Session, principal: Principal, return_id: int) -> ReturnOut:
    """As the returns API answers (without free text for readers without customers:pii)."""
    ret = returns.get_return(session, return_id)
    out = return_out(ret, returns.return_lines(session, ret.id), returns.timeline(session, ret.id))
    return shown_to(principal, out)


def _returns(
    session: Session, principal: Principal, place: int, cursor: str | None
) -> dict[str, Any]:
    """Returns on their way (approved, any location may take them in) and those received
    at this location."""
    awaited = returns.search(session, returns.ReturnFilter(status="approved"), cursor, ROWS)
    here = returns.search(session, returns.ReturnFilter(location_id=place), None, 10)
    return {
        "awaited": [_return_out(session, principal, r.id) for r in awaited.items],
        "received_here": [_return_out(session, principal, r.id) for r in here.items],
        "next_cursor": awaited.next_cursor,
    }


def fulfilment_page(
    request: Request,
    principal: Principal,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
) -> HTMLResponse:
    """The page for one location and one tab (also re-shown with a form's errors)."""
    params = request.query_params
    tab = params.get("tab") or "pick"
    if tab not in TABS:
        tab = "pick"
    cursor = params.get("cursor")
    context: dict[str, Any] = {
        "active": "fulfilment",
        "status_names": STATUS_NAMES,
        "tab": tab,
        "tabs": TABS,
    }
    with get_database(request).read() as session:
        place, places = choose_location(session, principal, int_or_none(params.get("location")))
        next_cursor: str | None = None
        variant_ids: set[int] = set()
        if tab in TASK_TABS:
            order = (params.get("order") or "").strip()[:20]
            tasks, next_cursor = _tasks(session, principal, place.id, TASK_TABS[tab], cursor, order)
            context.update({"tasks": tasks, "order": order})
        elif tab == "transfers":
            transfers, next_cursor = _transfers(session, place.id, cursor)
            context["transfers"] = transfers
            variant_ids = {x.variant_id for t in transfers for x in t.lines}
        else:
            found = _returns(session, principal, place.id, cursor)
            next_cursor = found.pop("next_cursor")
            context.update(found)
        context["labels"] = variant_labels(session, variant_ids, language_of(request))
        context["names"] = {x.id: x.name for x in visible_locations(session, principal)}
        context["names"].update(_all_names(session))
    context.update(
        {
            "place": place,
            "places": places,
            "errors": errors or {},
            "values": values or {},
            "next_url": url_with(request, cursor=next_cursor) if next_cursor else None,
            "here": url_with(request, cursor=None),
        }
    )
    return show(request, "fulfilment/index.html", context, status_code=422 if errors else 200)


def _all_names(session: Session) -> dict[int, str]:
    """Location names for the other end of a transfer."""
    return {x.id: x.name for x in locations.get_locations(session, locations.all_ids(session))}


@router.get("/fulfilment", response_class=HTMLResponse)
def fulfilment(
    request: Request, principal: Principal = require_page(Permission.ORDERS_READ)
) -> HTMLResponse:
    return fulfilment_page(request, principal)


@router.get("/fulfilment/labels", response_class=HTMLResponse)
def labels(
    request: Request,
    reference: str,
    principal: Principal = require_page(Permission.SHIPPING_READ),
) -> HTMLResponse:
    """An order's shipping labels to print (a label names the recipient: its content is
    shown only to readers with customers:pii, as in the shipping API)."""
    with get_database(request).read() as session:
        found = shipping.list_labels(session, reference=reference[:64], limit=50, before=None)
        outs = [label_out(x, principal) for x in found]
    context = {
        "active": "fulfilment",
        "status_names": STATUS_NAMES,
        "labels": outs,
        "reference": reference[:64],
    }
    return show(request, "fulfilment/labels.html", context)
