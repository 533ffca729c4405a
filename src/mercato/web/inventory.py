"""The inventory screen: a grid of variants x locations (on hand, available, held) kept
live by the stock feed, the ledger behind each cell, and the ledger check.

The stock-moving forms (adjust, count, transfer, purchase orders) are in
``inventory_actions``; their routes join this module's router. Every read goes through
``inventory.service`` with the signed-in principal's locations, as the API does, so store
staff see and move only their stores' stock.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, StreamingResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from mercato.auth.permissions import Permission
from mercato.auth.principal import Principal
from mercato.catalog import service as catalog
from mercato.deps import get_database
from mercato.errors import ValidationProblem
from mercato.inventory import service
from mercato.inventory.api import level_out
from mercato.inventory.schemas import LevelOut, MovementOut
from mercato.inventory.stream import StockStream
from mercato.locations import service as locations
from mercato.locations.api import location_out
from mercato.web import inventory_actions
from mercato.web.inventory_shared import (
    STATUS_NAMES,
    int_or_none,
    variant_labels,
    visible_locations,
)
from mercato.web.pages import page_router, show, url_with
from mercato.web.rendering import language_of, render
from mercato.web.session import require_page

router = page_router()

GRID_ROWS = 25
LEDGER_ROWS = 50


# --- the grid -------------------------------------------------------------------------------


def _search_variants(session: Session, q: str) -> list[int]:
    """Variants of products whose name, code, SKU or barcode match (first 100 products)."""
    found = catalog.search_products(session, q=q, limit=100)
    return [v.id for product in found.items for v in product.variants]


def _grid(request: Request, principal: Principal) -> dict[str, Any]:
    params = request.query_params
    q = (params.get("q") or "").strip()[:100]
    location_id = int_or_none(params.get("location"))
    low = params.get("view") == "low"
    with get_database(request).read() as session:
        places = visible_locations(session, principal)
        if location_id is not None:
            principal.require_location(location_id)
            columns = [x for x in places if x.id == location_id]
        else:
            columns = places
        column_ids = frozenset(x.id for x in columns)
        wanted = _search_variants(session, q) if q else None
        page = service.stocked_variants(
            session,
            variant_ids=wanted,
            location_ids=column_ids,
            low_only=low,
            cursor=params.get("cursor"),
            limit=GRID_ROWS,
        )
        levels = service.list_levels(
            session,
            variant_ids=page.items,
            location_ids=column_ids,
            limit=len(page.items) * max(1, len(columns)) + 1,
        ).items
        cells: dict[tuple[int, int], LevelOut] = {
            (x.variant_id, x.location_id): level_out(x) for x in levels
        }
        labels = variant_labels(session, page.items, language_of(request))
    return {
        "active": "inventory",
        "status_names": STATUS_NAMES,
        "places": places,
        "columns": columns,
        "rows": [(vid, labels.get(vid, {"sku": str(vid), "name": ""})) for vid in page.items],
        "cells": cells,
        "q": q,
        "location_id": location_id,
        "low": low,
        "grid_url": url_with(request),
        "next_url": url_with(request, cursor=page.next_cursor) if page.next_cursor else None,
    }


@router.get("/inventory", response_class=HTMLResponse)
def grid(
    request: Request, principal: Principal = require_page(Permission.INVENTORY_READ)
) -> HTMLResponse:
    context = _grid(request, principal)
    # The filter form and the live feed ask for the grid alone.
    if request.headers.get("hx-target") == "stock-grid":
        return render(request, "inventory/_grid.html", context)
    return show(request, "inventory/index.html", context)


@router.get("/inventory/ledger", response_class=HTMLResponse)
def ledger(
    request: Request,
    variant_id: int,
    location_id: int,
    cursor: str | None = None,
    principal: Principal = require_page(Permission.INVENTORY_READ),
) -> HTMLResponse:
    """The movements behind one cell of the grid, newest first."""
    principal.require_location(location_id)
    with get_database(request).read() as session:
        level = level_out(service.get_level(session, variant_id, location_id))
        moves = service.list_movements(
            session,
            variant_id=variant_id,
            location_id=location_id,
            location_ids=principal.location_ids,
            cursor=cursor,
            limit=LEDGER_ROWS,
        )
        movements = [MovementOut.model_validate(m) for m in moves.items]
        label = variant_labels(session, [variant_id], language_of(request)).get(variant_id)
        place = location_out(locations.get_location(session, location_id))
    if label is None:
        raise ValidationProblem.field("variant_id", f"unknown variant {variant_id}")
    return show(
        request,
        "inventory/ledger.html",
        {
            "active": "inventory",
            "status_names": STATUS_NAMES,
            "level": level,
            "label": label,
            "place": place,
            "movements": movements,
            "next_url": url_with(request, cursor=moves.next_cursor) if moves.next_cursor else None,
        },
    )


@router.get("/inventory/verify", response_class=HTMLResponse)
def verify(
    request: Request, principal: Principal = require_page(Permission.INVENTORY_READ)
) -> HTMLResponse:
    """The ledger check (``mercato inventory verify``): every stock row equals the sum of
    its movements. Store staff see the mismatches of their own stores only, as in the API."""
    with get_database(request).read() as session:
        rows, bad = service.verify(session)
        visible = [m for m in bad if principal.can_access_location(m.location_id)][:100]
    context = {
        "active": "inventory",
        "status_names": STATUS_NAMES,
        "rows": rows,
        "ok": not bad,
        "mismatches": visible,
    }
    if request.headers.get("hx-request") == "true":
        return render(request, "inventory/_verify.html", context)
    return show(request, "inventory/verify.html", context)


@router.get("/inventory/stream")
async def stream(
    request: Request, principal: Principal = require_page(Permission.INVENTORY_READ)
) -> StreamingResponse:
    """The stock feed for the open grid: a ``stock`` event per change at the user's
    locations (the grid then reloads itself). The API's feed, scoped to the staff user."""
    feed: StockStream = request.app.state.stock_stream
    if principal.location_ids is None:
        database = get_database(request)

        def every_location() -> list[int]:
            with database.read() as session:
                return locations.all_ids(session, active_only=False)

        places = frozenset(await run_in_threadpool(every_location))
    else:
        places = principal.location_ids
    subscriber = await feed.subscribe(places, None)
    return StreamingResponse(
        feed.events(subscriber, {}),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


router.include_router(inventory_actions.router)
