"""Privacy requests from the customer page: the export (background work with progress,
then the file to download) and the erasure, whose confirmation step first shows what will
be erased, what will be kept and what blocks it (the privacy service's preview, as
``GET /v1/customers/{id}/privacy/erasure-preview`` answers it).

Only roles with ``privacy:write`` see these pages; the service logs and audits each request
exactly as the API's ``/privacy/export`` and ``/privacy/erase`` do.
"""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Form, Request
from fastapi.responses import HTMLResponse, Response

from mercato.auth.permissions import Permission
from mercato.auth.principal import Principal
from mercato.customers import service as customers
from mercato.customers.api import redacted
from mercato.customers.schemas import CustomerOut
from mercato.db import Database, utcnow
from mercato.deps import get_database
from mercato.errors import Conflict
from mercato.jobs import service as jobs
from mercato.personal_data import domains
from mercato.privacy import scrub
from mercato.privacy import service as privacy
from mercato.privacy.api import PrivacyRequestOut, erasure_preview_out
from mercato.web.pages import redirect, show
from mercato.web.rendering import gettext_for
from mercato.web.session import require_page

# Included by the customers screen's router (which adds the /admin prefix).
router = APIRouter()


def N_(message: str) -> str:
    """Marks a label for translation where it is shown."""
    return message


# What each domain's records are, in words a privacy officer reads.
DOMAIN_LABELS = {
    "carts": N_("Carts"),
    "customers": N_("Profile, identities and addresses"),
    "fulfillment": N_("Shipping labels"),
    "loyalty": N_("Loyalty points ledger"),
    "marketing": N_("Consents and messages sent"),
    "orders": N_("Orders and their notes"),
    "payments": N_("Payments and refunds"),
    "promotions": N_("Promotion code redemptions"),
    "returns": N_("Returns"),
    "support": N_("Support cases and messages"),
}


def _privacy_context(request: Request, principal: Principal, customer_id: int) -> dict[str, object]:
    with get_database(request).read() as session:
        customer = redacted(
            CustomerOut.model_validate(customers.get_customer(session, customer_id)), principal
        )
        preview = erasure_preview_out(privacy.preview_erasure(session, customer_id))
        requests = [
            PrivacyRequestOut.model_validate(r)
            for r in privacy.list_requests(session, customer_id, limit=20)
        ]
    return {
        "active": "customers",
        "customer": customer,
        "preview": preview,
        "requests": requests,
        "labels": DOMAIN_LABELS,
        "errors": {},
        "reason": "",
    }


@router.get("/customers/{customer_id}/privacy", response_class=HTMLResponse)
def privacy_page(
    request: Request,
    customer_id: int,
    principal: Principal = require_page(Permission.PRIVACY_WRITE),
) -> HTMLResponse:
    return show(
        request, "customers/privacy.html", _privacy_context(request, principal, customer_id)
    )


def _export_work(
    database: Database, principal: Principal, customer_id: int, reason: str | None
) -> jobs.Work:
    """The export as background work: one step per domain, then the logged document."""

    def work(progress: jobs.Progress) -> jobs.Outcome:
        progress.total(len(domains()))
        started = utcnow()
        # Gathered in a read transaction: progress is written meanwhile in transactions of
        # its own, which a writing transaction held open on SQLite would block.
        with database.read() as session:
            gathered = privacy.gather_export(
                session, customer_id, on_domain=lambda _name: progress.advance()
            )
        with database.transaction() as session:
            document = privacy.log_export(session, principal, gathered, reason, started)
        report = {
            "customer": customer_id,
            "request": document["request_id"],
            "lines": [
                {"domain": name, "records": privacy.count_records(part)}
                for name, part in gathered.data.items()
            ],
        }
        content = json.dumps(document, ensure_ascii=False, indent=2, default=str)
        name = f"customer-{customer_id}-export.json"
        return jobs.Outcome(report, jobs.JobFile(name, "application/json", content))

    return work


@router.post("/customers/{customer_id}/privacy/export")
def start_export(
    request: Request,
    customer_id: int,
    reason: Annotated[str, Form(max_length=500)] = "",
    principal: Principal = require_page(Permission.PRIVACY_WRITE),
) -> Response:
    """Start the export (``POST /v1/customers/{id}/privacy/export``) as background work;
    the job's page shows its progress and then the download."""
    database = get_database(request)
    with database.read() as session:
        customers.get_customer(session, customer_id)  # 404 before any work starts
    _ = gettext_for(request).gettext
    title = _("Data export of customer %(id)s", id=customer_id)
    work = _export_work(database, principal, customer_id, reason.strip() or None)
    job_id = jobs.start(database, principal, "privacy.export", title, work)
    return redirect(request, f"/admin/jobs/{job_id}")


@router.post("/customers/{customer_id}/privacy/erase", response_class=HTMLResponse)
def erase(
    request: Request,
    customer_id: int,
    after: BackgroundTasks,
    reason: Annotated[str, Form(max_length=500)] = "",
    confirm_customer_id: Annotated[str, Form(max_length=20)] = "",
    principal: Principal = require_page(Permission.PRIVACY_WRITE),
) -> Response:
    """Erase (``POST /v1/customers/{id}/privacy/erase``): the officer gives a reason and
    types the customer's number again, as the API asks, since it cannot be undone."""
    _ = gettext_for(request).gettext
    errors: dict[str, str] = {}
    if not reason.strip():
        errors["reason"] = _("Say why (the request the customer made).")
    if confirm_customer_id.strip() != str(customer_id):
        errors["confirm_customer_id"] = _(
            "Type the customer number %(id)s to confirm.", id=customer_id
        )
    if not errors:
        try:
            with get_database(request).transaction() as session:
                erased = privacy.erase_customer(session, principal, customer_id, reason.strip())
                swept = list(erased.summary.get("sweep", {}))
        except Conflict as conflict:
            errors["erase"] = conflict.detail
    if errors:
        context = _privacy_context(request, principal, customer_id)
        context.update(errors=errors, reason=reason)
        return show(request, "customers/privacy.html", context, status_code=422)
    # Once answered: old row versions leave the database files (as the API does).
    after.add_task(scrub.scrub_quietly, get_database(request).engine, swept)
    message = _("The customer's personal data was erased. Orders and payments were kept.")
    return redirect(request, f"/admin/customers/{customer_id}", message)
