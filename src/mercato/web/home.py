"""Home: how sales go (today, 7 or 30 days, by channel and by country) and what needs
someone now: orders on hold, in fraud review, not routed, late to ship, pickups about to
expire, low stock, support cases past their SLA. Each block shows only to roles with its
permission; store staff see their stores' figures and lists.

The figures come from the orders domain (``orders.service.sales_summary``), the lists from
each domain's service, shaped by the API's response schemas.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

from fastapi import Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from mercato.auth.permissions import Permission
from mercato.auth.principal import Principal
from mercato.catalog import service as catalog
from mercato.db import utcnow
from mercato.deps import DbSession
from mercato.fulfillment import service as fulfillment
from mercato.fulfillment.api import task_out
from mercato.inventory import service as inventory
from mercato.inventory.api import level_out
from mercato.orders import service as orders
from mercato.orders.schemas import OrderSummaryOut
from mercato.support import service as support
from mercato.support.api import case_out
from mercato.web.orders import names
from mercato.web.pages import page_router, show
from mercato.web.rendering import language_of
from mercato.web.session import require_page

router = page_router()
P = Permission

PERIODS = {"today": 0, "7": 7, "30": 30}
LIST_SIZE = 5
# A pickup that ends within this time is shown so the customer can be reminded.
PICKUP_WARNING = timedelta(hours=24)


def _since(period: str, now: datetime) -> datetime:
    """Today: since midnight UTC; otherwise the last N days."""
    days = PERIODS[period]
    if days == 0:
        return datetime(now.year, now.month, now.day, tzinfo=UTC)
    return now - timedelta(days=days)


def _chart(title: str, labels: list[str], values: list[Any]) -> dict[str, Any]:
    """An ECharts bar chart option (data only: mercato.js draws it)."""
    return {
        "title": {"text": title, "textStyle": {"fontSize": 13}},
        "tooltip": {"trigger": "axis"},
        "grid": {"left": 60, "right": 16, "top": 40, "bottom": 40},
        "xAxis": {"type": "category", "data": labels},
        "yAxis": {"type": "value"},
        "series": [{"type": "bar", "data": values}],
    }


def _figures(
    request: Request, session: Session, principal: Principal, period: str
) -> dict[str, Any]:
    scope = None if principal.location_ids is None else orders.in_scope(principal.location_ids)
    summary = orders.sales_summary(session, _since(period, utcnow()), scope=scope)
    channel_names = names(session)["channels"]
    labels = {x.key: channel_names.get(int(x.key), x.key) for x in summary.by_channel}
    currencies = sorted({x.currency for x in summary.by_channel})
    # One revenue chart per currency: amounts of different currencies are never added.
    revenue_charts = []
    for currency in currencies:
        rows = [x for x in summary.by_channel if x.currency == currency]
        revenue_charts.append(
            (
                currency,
                _chart(
                    currency,
                    [labels[x.key] for x in rows],
                    [str(x.revenue.quantize(Decimal("0.01"))) for x in rows],
                ),
            )
        )
    counts: dict[str, int] = {}
    for x in summary.by_country:
        counts[x.key] = counts.get(x.key, 0) + x.orders
    return {
        "summary": summary,
        "channel_labels": labels,
        "revenue_charts": revenue_charts,
        "country_chart": _chart("", list(counts), list(counts.values())) if counts else None,
    }


def _attention(session: Session, principal: Principal) -> dict[str, Any]:
    scope = None if principal.location_ids is None else orders.in_scope(principal.location_ids)
    lists = orders.needing_attention(session, scope=scope, limit=LIST_SIZE)
    pickups = fulfillment.expiring_pickups(
        session, PICKUP_WARNING, location_ids=principal.location_ids, limit=LIST_SIZE
    )
    return {
        "attention": [
            {
                "kind": a.kind,
                "count": a.count,
                "capped": a.capped,
                "orders": [OrderSummaryOut.model_validate(o) for o in a.orders],
            }
            for a in lists
        ],
        "pickups": [task_out(session, principal, t) for t in pickups],
        "names": names(session),
    }


def _low_stock(session: Session, principal: Principal, language: str) -> dict[str, Any]:
    found = inventory.list_levels(
        session, location_ids=principal.location_ids, low_only=True, limit=LIST_SIZE
    )
    levels = [level_out(x) for x in found.items]
    labels = catalog.variant_names(session, [x.variant_id for x in levels], language)
    return {
        "low_stock": levels,
        "variant_labels": labels,
        "more_low_stock": bool(found.next_cursor),
    }


def _late_cases(session: Session, principal: Principal) -> dict[str, Any]:
    now = utcnow()
    flt = support.CaseFilter(overdue=True)
    found = support.search_cases(session, flt, None, LIST_SIZE, now=now)
    return {
        "late_cases": [case_out(c, principal, now) for c in found.items],
        "more_late_cases": bool(found.next_cursor),
    }


@router.get("/", response_class=HTMLResponse)
def home(
    request: Request,
    session: DbSession,
    principal: Principal = require_page(P.ORDERS_READ),
    period: Annotated[str, Query(max_length=8)] = "today",
) -> HTMLResponse:
    chosen = period if period in PERIODS else "today"
    context: dict[str, Any] = {"active": "home", "period": chosen, "periods": list(PERIODS)}
    if principal.has(P.ANALYTICS_READ):
        context.update(_figures(request, session, principal, chosen))
    if principal.has(P.ORDERS_READ):
        context.update(_attention(session, principal))
    if principal.has(P.INVENTORY_READ):
        context.update(_low_stock(session, principal, language_of(request)))
    if principal.has(P.SUPPORT_READ):
        context.update(_late_cases(session, principal))
    return show(request, "home/index.html", context)
