"""The customers screen: find a person, the customer 360 page, duplicates (merge and undo).

Like the API's routers, every handler calls the customers, orders, loyalty, marketing and
support services with the signed-in principal and renders the API's response schemas,
redacted by the API's own helpers: a role without ``customers:pii`` (the analyst) sees
pseudonymous records and cannot search by personal data. Privacy requests (export and
erasure) are in ``customers_privacy``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from mercato.auth.permissions import Permission
from mercato.auth.principal import Principal
from mercato.channels import service as channels
from mercato.customers import service as customers
from mercato.customers.api import merge_out, redacted, redacted_profile
from mercato.customers.schemas import CustomerOut, SuggestionOut, TimelineEntryOut
from mercato.deps import get_database
from mercato.errors import NotFound
from mercato.loyalty import service as loyalty
from mercato.loyalty.api import account_out
from mercato.marketing import service as marketing
from mercato.marketing.api import consents_out
from mercato.marketing.schemas import ConsentRecordOut
from mercato.orders import service as orders
from mercato.orders.schemas import OrderSummaryOut
from mercato.support import service as support
from mercato.support.api import case_out, current_time
from mercato.web import customers_privacy
from mercato.web.pages import once, page_router, redirect, show, url_with
from mercato.web.rendering import gettext_for
from mercato.web.session import require_page

router = page_router()
router.include_router(customers_privacy.router)

PAGE_SIZE = 25
ORDERS_ON_PAGE = 20
TIMELINE_ON_PAGE = 50
SEARCH_KINDS = ("any", "name", "email", "phone", "card")


def channel_names(session: Session) -> dict[int, str]:
    """Channel id -> name, for lists that name the channel of each record."""
    return {c.id: c.name for c in channels.list_channels(session)}


def _search_params(by: str, query: str) -> dict[str, str | None]:
    """What the customers service searches for: one kind, or every kind the text may be
    (an email has an @; a phone number or a loyalty card is tried along with the name)."""
    text = query.strip()
    if by == "name":
        return {"name": text}
    if by == "email":
        return {"email": text}
    if by == "phone":
        return {"phone": text}
    if by == "card":
        return {"loyalty_card": text}
    if "@" in text:
        return {"email": text}
    return {"phone": text, "name": text, "loyalty_card": text}


@router.get("/customers", response_class=HTMLResponse)
def customer_list(
    request: Request,
    q: str = "",
    by: str = "any",
    cursor: str | None = None,
    principal: Principal = require_page(Permission.CUSTOMERS_READ),
) -> Response:
    """Search (roles with customers:pii, as ``GET /v1/customers`` allows) or browse."""
    by = by if by in SEARCH_KINDS else "any"
    searching = bool(q.strip()) and principal.has(Permission.CUSTOMERS_PII)
    params = _search_params(by, q[:254]) if searching else {}
    with get_database(request).read() as session:
        found = customers.list_customers(
            session,
            email=params.get("email"),
            phone=params.get("phone"),
            name=params.get("name"),
            loyalty_card=params.get("loyalty_card"),
            cursor=cursor,
            limit=PAGE_SIZE,
        )
        items = [redacted(CustomerOut.model_validate(c), principal) for c in found.items]
        names = channel_names(session)
    # A search that finds one person opens her page: the agent on the phone wants it now.
    if searching and len(items) == 1 and cursor is None:
        return redirect(request, f"/admin/customers/{items[0].id}")
    next_url = url_with(request, cursor=found.next_cursor) if found.next_cursor else None
    return show(
        request,
        "customers/list.html",
        {
            "active": "customers",
            "items": items,
            "q": q,
            "by": by,
            "searching": searching,
            "channels": names,
            "next_url": next_url,
        },
    )


@router.get("/customers/duplicates", response_class=HTMLResponse)
def duplicates(
    request: Request,
    cursor: str | None = None,
    principal: Principal = require_page(Permission.CUSTOMERS_READ),
) -> HTMLResponse:
    """Likely duplicates, best first (``GET /v1/customers/merge-suggestions``)."""
    with get_database(request).read() as session:
        found = customers.list_suggestions(
            session, status="open", customer_id=None, cursor=cursor, limit=PAGE_SIZE
        )
        suggestions = [SuggestionOut.model_validate(s) for s in found.items]
        people = _people(session, principal, suggestions)
    next_url = url_with(request, cursor=found.next_cursor) if found.next_cursor else None
    return show(
        request,
        "customers/duplicates.html",
        {
            "active": "customers",
            "suggestions": suggestions,
            "people": people,
            "next_url": next_url,
        },
    )


def _people(
    session: Session, principal: Principal, suggestions: list[SuggestionOut]
) -> dict[int, CustomerOut]:
    ids = {i for s in suggestions for i in (s.customer_id, s.candidate_id)}
    return {
        i: redacted(CustomerOut.model_validate(customers.get_customer(session, i)), principal)
        for i in ids
    }


@router.get("/customers/{customer_id}", response_class=HTMLResponse)
def customer_page(
    request: Request,
    customer_id: int,
    orders_cursor: str | None = None,
    merge: str | None = None,
    principal: Principal = require_page(Permission.CUSTOMERS_READ),
) -> HTMLResponse:
    """The customer 360 page: the same answers as the API's profile, orders, timeline,
    loyalty account, consents and support cases for this customer."""
    with get_database(request).read() as session:
        context = _customer_360(session, principal, customer_id, orders_cursor)
        context["cases"] = _cases(session, principal, customer_id, current_time(request))
        if merge:
            context["merge"] = merge_out(customers.get_merge(session, merge))
    next_orders = context.pop("orders_next")
    context["orders_next_url"] = (
        url_with(request, orders_cursor=next_orders) + "#orders" if next_orders else None
    )
    return show(request, "customers/customer.html", {"active": "customers", **context})


def _customer_360(
    session: Session, principal: Principal, customer_id: int, orders_cursor: str | None
) -> dict[str, Any]:
    profile = redacted_profile(customers.customer_profile(session, customer_id), principal)
    found = orders.search(
        session, orders.OrderFilter(customer_id=customer_id), orders_cursor, ORDERS_ON_PAGE
    )
    timeline = [
        TimelineEntryOut.model_validate(e, from_attributes=True)
        for e in customers.customer_timeline(session, customer_id, limit=TIMELINE_ON_PAGE)
    ]
    try:
        account = account_out(loyalty.account_view(session, customer_id))
    except NotFound:
        account = None
    history = marketing.consent_history(session, customer_id, purpose=None, cursor=None, limit=50)
    consent_history = [ConsentRecordOut.model_validate(r) for r in history.items]
    if not principal.has(Permission.CUSTOMERS_PII):
        # A staff note on a consent may quote what the customer said.
        consent_history = [r.model_copy(update={"note": None}) for r in consent_history]
    suggestions = customers.list_suggestions(
        session, status="open", customer_id=customer_id, cursor=None, limit=10
    )
    suggestion_rows = [SuggestionOut.model_validate(s) for s in suggestions.items]
    return {
        "profile": profile,
        "orders": [OrderSummaryOut.model_validate(o) for o in found.items],
        "orders_next": found.next_cursor,
        "timeline": timeline,
        "loyalty": account,
        "consents": consents_out(session, customer_id),
        "consent_history": consent_history,
        "suggestions": suggestion_rows,
        "people": _people(session, principal, suggestion_rows),
        "channels": channel_names(session),
        "merge": None,
    }


def _cases(
    session: Session, principal: Principal, customer_id: int, now: datetime
) -> list[Any] | None:
    """The customer's support cases, for roles that may read support (None otherwise)."""
    if not principal.has(Permission.SUPPORT_READ):
        return None
    found = support.search_cases(
        session, support.CaseFilter(customer_id=customer_id), None, 10, now=now
    )
    return [case_out(c, principal, now) for c in found.items]


@router.post("/customers/{customer_id}/merge")
def merge_customer(
    request: Request,
    customer_id: int,
    from_id: Annotated[int, Form(gt=0)],
    idempotency_key: Annotated[str | None, Form(max_length=200)] = None,
    principal: Principal = require_page(Permission.CUSTOMERS_WRITE),
) -> Response:
    """Merge profile ``from_id`` into this one (``POST /v1/customers/{id}/merge``)."""
    with get_database(request).transaction() as session:
        result, _replayed = once(
            session,
            principal,
            f"customer.merge:{customer_id}",
            idempotency_key,
            {"from": from_id},
            lambda: merge_out(customers.merge(session, principal, customer_id, from_id)).model_dump(
                mode="json", by_alias=True
            ),
        )
    _ = gettext_for(request).gettext
    message = _("Customer %(from_id)s was merged into this profile.", from_id=from_id)
    return redirect(request, f"/admin/customers/{customer_id}?merge={result['merge_id']}", message)


@router.post("/customers/merges/{merge_id}/undo")
def undo_merge(
    request: Request,
    merge_id: str,
    idempotency_key: Annotated[str | None, Form(max_length=200)] = None,
    principal: Principal = require_page(Permission.CUSTOMERS_WRITE),
) -> Response:
    """Restore the merged profile (``POST /v1/customers/merges/{id}/undo``)."""
    with get_database(request).transaction() as session:
        result, _replayed = once(
            session,
            principal,
            f"customer.merge-undo:{merge_id}",
            idempotency_key,
            {},
            lambda: merge_out(customers.undo_merge(session, principal, merge_id)).model_dump(
                mode="json", by_alias=True
            ),
        )
    _ = gettext_for(request).gettext
    message = _("The merge was undone: customer %(from_id)s is back.", from_id=result["from"])
    return redirect(request, f"/admin/customers/{result['into']}", message)


@router.post("/customers/suggestions/{suggestion_id}/dismiss")
def dismiss_suggestion(
    request: Request,
    suggestion_id: int,
    back: Annotated[str, Form(max_length=200)] = "/admin/customers/duplicates",
    principal: Principal = require_page(Permission.CUSTOMERS_WRITE),
) -> Response:
    with get_database(request).transaction() as session:
        customers.dismiss_suggestion(session, principal, suggestion_id)
    target = back if back.startswith("/admin/customers") else "/admin/customers/duplicates"
    return redirect(request, target, gettext_for(request).gettext("Not a duplicate: noted."))
