"""Long work's page: the progress bar while it runs (htmx polls it), then the report and
the file to download. A user sees only the work they started."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import HTMLResponse, Response

from mercato.deps import get_database
from mercato.jobs import service as jobs
from mercato.web.pages import page_router, show
from mercato.web.rendering import render
from mercato.web.session import SignedIn

router = page_router()


def N_(message: str) -> str:
    """Marks a label for translation where it is shown."""
    return message


# The figures and columns reports carry, labelled in the user's language (a key not
# listed here is shown as it is).
REPORT_LABELS: dict[str, str] = {
    "imported": N_("Imported"),
    "dry_run": N_("Dry run"),
    "rows": N_("Rows"),
    "products": N_("Products"),
    "variants": N_("Variants"),
    "created": N_("Created"),
    "updated": N_("Updated"),
    "problems": N_("Problems"),
    "line": N_("Line"),
    "field": N_("Field"),
    "problem": N_("Problem"),
    "records": N_("Records"),
    "domains": N_("Domains"),
    "customer": N_("Customer"),
    "codes": N_("Codes"),
    "batch": N_("Batch"),
}


@router.get("/jobs", response_class=HTMLResponse)
def recent_jobs(request: Request, principal: SignedIn) -> HTMLResponse:
    with get_database(request).read() as session:
        views = jobs.recent(session, principal)
    return show(request, "jobs/list.html", {"jobs": views})


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, job_id: int, principal: SignedIn) -> HTMLResponse:
    with get_database(request).read() as session:
        job = jobs.get(session, principal, job_id)
    return show(request, "jobs/job.html", {"job": job, "labels": REPORT_LABELS})


@router.get("/jobs/{job_id}/progress", response_class=HTMLResponse)
def job_progress(request: Request, job_id: int, principal: SignedIn) -> HTMLResponse:
    """The fragment htmx polls: it stops polling once the work has ended."""
    with get_database(request).read() as session:
        job = jobs.get(session, principal, job_id)
    return render(request, "jobs/_progress.html", {"job": job, "labels": REPORT_LABELS})


@router.get("/jobs/{job_id}/download")
def job_download(request: Request, job_id: int, principal: SignedIn) -> Response:
    with get_database(request).read() as session:
        file = jobs.file_of(session, principal, job_id)
    return Response(
        file.content.encode(),
        media_type=file.media_type,
        headers={
            "Content-Disposition": f'attachment; filename="{file.name}"',
            "Cache-Control": "no-store",
        },
    )
