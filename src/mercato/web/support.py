"""The support inbox: cases from every contact channel, the thread with replies and
internal notes, the customer's orders beside it, the SLA clock and satisfaction.

As the API's ``/v1/support`` routers: the support service with the signed-in principal,
the cases shaped by the API's ``case_out`` (redacted for roles without customers:pii),
the SLA clock read through the API's ``current_time`` (the same clock the API's due times
use). Reading needs support:read; assigning, replying and changing status support:write.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from mercato.auth import service as auth_service
from mercato.auth.permissions import Permission
from mercato.auth.principal import Principal
from mercato.deps import get_database
from mercato.errors import NotFound, ValidationProblem
from mercato.support import service as support
from mercato.support.api import case_out, current_time, customer_summary, order_brief
from mercato.support.schemas import CaseOut
from mercato.web.customers import channel_names
from mercato.web.pages import once, page_router, redirect, show, url_with
from mercato.web.rendering import gettext_for
from mercato.web.session import require_page

router = page_router()

PAGE_SIZE = 25
STATUSES = [s.value for s in support.CaseStatus]
SOURCES = [c.value for c in support.ContactChannel]


def _filter(
    principal: Principal, status: str, source: str, assignee: str, sla: str
) -> support.CaseFilter:
    """The inbox's URL filters as the service's filter (unknown values are ignored, so a
    shared link never fails). ``sla=breached``: running cases past a due time now."""
    statuses: tuple[support.CaseStatus, ...] = ()
    if status == "active":
        statuses = tuple(support.ACTIVE)
    elif status in STATUSES:
        statuses = (support.CaseStatus(status),)
    assignee_id: int | None = None
    if assignee == "me":
        assignee_id = principal.id
    elif assignee.isdigit():
        assignee_id = int(assignee)
    return support.CaseFilter(
        statuses=statuses,
        source=support.ContactChannel(source) if source in SOURCES else None,
        assignee_id=assignee_id,
        unassigned=assignee == "none",
        overdue={"breached": True, "on_time": False}.get(sla),
    )


def _staff_names(session: Session, cases: list[CaseOut]) -> dict[int, str]:
    """Assignees' names (staff, not customers: every role that reads support sees them)."""
    names: dict[int, str] = {}
    for case in cases:
        if case.assignee_id is not None and case.assignee_id not in names:
            try:
                user = auth_service.get_user(session, case.assignee_id)
            except NotFound:
                continue
            names[case.assignee_id] = user.name or user.email
    return names


@router.get("/support", response_class=HTMLResponse)
def inbox(
    request: Request,
    status: str = "active",
    source: str = "",
    assignee: str = "",
    sla: str = "",
    cursor: str | None = None,
    principal: Principal = require_page(Permission.SUPPORT_READ),
) -> HTMLResponse:
    """``GET /v1/support/cases`` with the filters in the URL."""
    now = current_time(request)
    flt = _filter(principal, status, source, assignee, sla)
    with get_database(request).read() as session:
        found = support.search_cases(session, flt, cursor, PAGE_SIZE, now=now)
        linked = support.case_orders(session, [c.id for c in found.items])
        cases = [case_out(c, principal, now, linked.get(c.id, [])) for c in found.items]
        staff = _staff_names(session, cases)
        channels = channel_names(session)
    next_url = url_with(request, cursor=found.next_cursor) if found.next_cursor else None
    return show(
        request,
        "support/inbox.html",
        {
            "active": "support",
            "cases": cases,
            "staff": staff,
            "channels": channels,
            "filters": {"status": status, "source": source, "assignee": assignee, "sla": sla},
            "statuses": STATUSES,
            "sources": SOURCES,
            "next_url": next_url,
            "now": now,
        },
    )


def _case_context(
    session: Session, principal: Principal, case_id: int, now: datetime
) -> dict[str, Any]:
    case = support.get_case(session, case_id)
    shaped = case_out(
        case,
        principal,
        now,
        support.case_orders(session, [case.id]).get(case.id, []),
        support.messages(session, case.id, include_internal=True),
    )
    customer = None
    orders: list[Any] = []
    if case.customer_id is not None:
        # The agent console's answer (GET /v1/support/customers/{id}/overview).
        overview = support.customer_overview(session, case.customer_id)
        customer = customer_summary(overview, principal)
        orders = [
            order_brief(o, overview.order_lines.get(o.id, [])) for o in overview.recent_orders
        ]
    return {
        "active": "support",
        "case": shaped,
        "customer": customer,
        "orders": orders,
        "staff": _staff_names(session, [shaped]),
        "channels": channel_names(session),
        "now": now,
        # In the life cycle's order, so the list starts with the next usual step.
        "next_statuses": [
            s.value
            for s in support.CaseStatus
            if s in support.TRANSITIONS[support.CaseStatus(case.status)]
        ],
        "sources": SOURCES,
        "errors": {},
        "draft": "",
    }


@router.get("/support/cases/{case_id}", response_class=HTMLResponse)
def case_page(
    request: Request,
    case_id: int,
    principal: Principal = require_page(Permission.SUPPORT_READ),
) -> HTMLResponse:
    """The case with its whole thread, internal notes marked, and the customer's orders."""
    with get_database(request).read() as session:
        context = _case_context(session, principal, case_id, current_time(request))
    return show(request, "support/case.html", context)


@router.post("/support/cases/{case_id}/messages", response_class=HTMLResponse)
def write_message(
    request: Request,
    case_id: int,
    body: Annotated[str, Form(max_length=20_000)] = "",
    direction: Annotated[str, Form(max_length=20)] = "outbound",
    channel: Annotated[str, Form(max_length=20)] = "email",
    idempotency_key: Annotated[str | None, Form(max_length=200)] = None,
    principal: Principal = require_page(Permission.SUPPORT_WRITE),
) -> Response:
    """A reply to the customer or an internal note (``POST /v1/support/cases/{id}/messages``)."""
    _ = gettext_for(request).gettext
    now = current_time(request)
    if not body.strip():
        with get_database(request).read() as session:
            context = _case_context(session, principal, case_id, now)
        context["errors"] = {"body": _("Write the message first.")}
        return show(request, "support/case.html", context, status_code=422)
    if direction not in (support.Direction.OUTBOUND.value, support.Direction.INTERNAL.value):
        raise ValidationProblem.field("body.direction", "a reply (outbound) or a note (internal)")
    medium = support.ContactChannel(channel) if channel in SOURCES else support.ContactChannel.EMAIL
    draft = support.MessageDraft(body, support.Direction(direction), medium, [])
    with get_database(request).transaction() as session:
        once(
            session,
            principal,
            f"support.message:{case_id}",
            idempotency_key,
            {"body": body, "direction": direction, "channel": medium.value},
            lambda: {"id": support.add_message(session, principal, case_id, draft, now=now).id},
        )
    internal = direction == support.Direction.INTERNAL.value
    message = _("Internal note added.") if internal else _("Reply sent to the customer.")
    return redirect(request, f"/admin/support/cases/{case_id}#thread", message)


@router.post("/support/cases/{case_id}/assign")
def assign(
    request: Request,
    case_id: int,
    assignee: Annotated[str, Form(max_length=10)] = "me",
    principal: Principal = require_page(Permission.SUPPORT_WRITE),
) -> Response:
    """Take the case, or give it back to the team (``PATCH /v1/support/cases/{id}``)."""
    _ = gettext_for(request).gettext
    mine = assignee != "none"
    changes = support.CaseChanges(assignee_id=principal.id if mine else None, unassign=not mine)
    with get_database(request).transaction() as session:
        support.update_case(session, principal, case_id, changes, now=current_time(request))
    message = _("The case is yours.") if mine else _("The case is back with the team.")
    return redirect(request, f"/admin/support/cases/{case_id}", message)


@router.post("/support/cases/{case_id}/status")
def change_status(
    request: Request,
    case_id: int,
    status: Annotated[str, Form(max_length=20)],
    principal: Principal = require_page(Permission.SUPPORT_WRITE),
) -> Response:
    """``POST /v1/support/cases/{id}/status``; the service refuses a transition not allowed."""
    if status not in STATUSES:
        raise ValidationProblem.field("body.status", "not a case status")
    with get_database(request).transaction() as session:
        support.transition(
            session, principal, case_id, support.CaseStatus(status), now=current_time(request)
        )
    return redirect(
        request, f"/admin/support/cases/{case_id}", gettext_for(request).gettext("Status changed.")
    )
