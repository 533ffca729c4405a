"""The catalog screen: the product list, categories, bulk import with a dry run, export.

The product page and its actions are in ``catalog_product``; both call the catalog and
pricing services as ``catalog/api.py`` and ``pricing/api.py`` do, and render their schemas.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import File, Form, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from mercato.auth.permissions import Permission
from mercato.auth.principal import Principal
from mercato.catalog import importexport, service
from mercato.catalog.api import product_out
from mercato.catalog.schemas import (
    CategoryIn,
    CategoryPatch,
    ImportReport,
    ProductStatus,
)
from mercato.deps import get_database
from mercato.errors import Problem, ValidationProblem
from mercato.jobs import service as jobs
from mercato.web import PREFIX, catalog_product
from mercato.web.catalog_forms import (
    all_categories,
    blank_none,
    category_labels,
    field_messages,
    optional_int,
)
from mercato.web.pages import once, page_router, redirect, show, url_with
from mercato.web.rendering import gettext_for
from mercato.web.session import require_page

router = page_router()
router.include_router(catalog_product.router)

P = Permission
PAGE_SIZE = 50
LANGUAGE_NAMES = {"de": "Deutsch", "ja": "日本語", "vi": "Tiếng Việt", "en": "English"}


# --- the product list -----------------------------------------------------------------------------


@router.get("/catalog", response_class=HTMLResponse)
def products(
    request: Request,
    principal: Principal = require_page(P.CATALOG_READ),
    q: Annotated[str | None, Query(max_length=200)] = None,
    status: str | None = None,
    category_id: str | None = None,
    cursor: str | None = None,
) -> HTMLResponse:
    """As ``GET /v1/products``: words, status and category (with its subcategories)."""
    chosen_status = status if status in {s.value for s in ProductStatus} else None
    category = optional_int(category_id)
    with get_database(request).read() as session:
        categories = all_categories(session)
        category_ids = None
        if category is not None:
            service.get_category(session, category)
            category_ids = service.category_with_descendants(session, [category])
        result = service.search_products(
            session,
            q=blank_none(q),
            category_ids=category_ids,
            statuses=[chosen_status] if chosen_status else None,
            cursor=blank_none(cursor),
            limit=PAGE_SIZE,
        )
        items = [product_out(p) for p in result.items]
    next_url = url_with(request, cursor=result.next_cursor) if result.next_cursor else None
    context = {
        "active": "catalog",
        "items": items,
        "q": q or "",
        "status": chosen_status or "",
        "category_id": category,
        "categories": category_labels(categories),
        "statuses": [s.value for s in ProductStatus],
        "next_url": next_url,
        "first_url": url_with(request, cursor=None) if cursor else None,
    }
    return show(request, "catalog/list.html", context)


# --- categories -----------------------------------------------------------------------------------


def _categories_page(
    request: Request, errors: dict[str, str] | None = None, values: dict[str, Any] | None = None
) -> HTMLResponse:
    with get_database(request).read() as session:
        categories = all_categories(session)
    context = {
        "active": "catalog",
        "categories": categories,
        "labels": category_labels(categories),
        "errors": errors or {},
        "values": values or {},
        "language_names": LANGUAGE_NAMES,
    }
    return show(request, "catalog/categories.html", context, status_code=422 if errors else 200)


@router.get("/catalog/categories", response_class=HTMLResponse)
def categories(
    request: Request, principal: Principal = require_page(P.CATALOG_READ)
) -> HTMLResponse:
    return _categories_page(request)


def _names(de: str | None, ja: str | None, vi: str | None) -> dict[str, str]:
    given = {"de": blank_none(de), "ja": blank_none(ja), "vi": blank_none(vi)}
    return {locale: name for locale, name in given.items() if name}


@router.post("/catalog/categories", response_class=HTMLResponse)
def create_category(
    request: Request,
    code: Annotated[str, Form(max_length=80)],
    name: Annotated[str, Form(max_length=200)],
    parent_id: Annotated[str, Form(max_length=20)] = "",
    position: Annotated[int, Form(ge=0, le=100_000)] = 0,
    name_de: Annotated[str, Form(max_length=200)] = "",
    name_ja: Annotated[str, Form(max_length=200)] = "",
    name_vi: Annotated[str, Form(max_length=200)] = "",
    idempotency_key: Annotated[str | None, Form(max_length=200)] = None,
    principal: Principal = require_page(P.CATALOG_WRITE),
) -> Response:
    """As ``POST /v1/categories``."""
    _ = gettext_for(request).gettext
    values = {"code": code, "name": name, "parent_id": parent_id, "position": position}
    try:
        body = CategoryIn(
            code=code.strip(),
            name=name.strip(),
            parent_id=optional_int(parent_id),
            position=position,
            translations=_names(name_de, name_ja, name_vi),
        )
        with get_database(request).transaction() as session:
            once(
                session,
                principal,
                "catalog.category",
                idempotency_key,
                body.model_dump(mode="json"),
                lambda: service.create_category(session, principal, body).id,
            )
    except (ValidationError, ValidationProblem) as error:
        return _categories_page(request, field_messages(error), values)
    except Problem as problem:
        if problem.status != 409:
            raise
        return _categories_page(request, {"code": problem.detail}, values)
    return redirect(request, f"{PREFIX}/catalog/categories", _("Category created."))


@router.post("/catalog/categories/{category_id}", response_class=HTMLResponse)
def update_category(
    request: Request,
    category_id: int,
    name: Annotated[str, Form(max_length=200)],
    position: Annotated[int, Form(ge=0, le=100_000)] = 0,
    name_de: Annotated[str, Form(max_length=200)] = "",
    name_ja: Annotated[str, Form(max_length=200)] = "",
    name_vi: Annotated[str, Form(max_length=200)] = "",
    principal: Principal = require_page(P.CATALOG_WRITE),
) -> Response:
    """As ``PATCH /v1/categories/{id}``: the name, position and translations."""
    _ = gettext_for(request).gettext
    try:
        patch = CategoryPatch(
            name=name.strip(), position=position, translations=_names(name_de, name_ja, name_vi)
        )
        with get_database(request).transaction() as session:
            service.update_category(session, principal, category_id, patch)
    except (ValidationError, ValidationProblem) as error:
        return _categories_page(request, field_messages(error))
    return redirect(request, f"{PREFIX}/catalog/categories", _("Category saved."))


# --- import and export: background work with progress (mercato.jobs) ---------------------------


@router.get("/catalog/import", response_class=HTMLResponse)
def import_form(
    request: Request, principal: Principal = require_page(P.CATALOG_IMPORT)
) -> HTMLResponse:
    return show(request, "catalog/import.html", {"active": "catalog", "error": None})


@router.post("/catalog/import", response_class=HTMLResponse)
async def run_import(
    request: Request,
    file: Annotated[UploadFile, File()],
    format: Annotated[Literal["csv", "json"], Form()] = "csv",
    dry_run: Annotated[bool, Form()] = False,
    principal: Principal = require_page(P.CATALOG_IMPORT),
) -> Response:
    """As ``POST /v1/catalog/import``, in the background: every line is checked; a dry
    run, or any bad line, writes nothing; the job's report lists each problem by line."""
    _ = gettext_for(request).gettext
    raw = await file.read()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        context = {"active": "catalog", "error": _("The file is not UTF-8 text.")}
        return show(request, "catalog/import.html", context, status_code=422)
    database = get_database(request)
    name = file.filename or format.upper()
    title = (
        _("Dry run of the import of %(file)s", file=name)
        if dry_run
        else _("Import of %(file)s", file=name)
    )

    def work(progress: jobs.Progress) -> jobs.Outcome:
        progress.total(1)
        with database.transaction() as session:
            report = importexport.run_import(session, principal, text, format, dry_run=dry_run)
        progress.advance(1)
        return jobs.Outcome(import_report(report))

    job_id = jobs.start(database, principal, "catalog.import", title, work)
    return redirect(request, f"{PREFIX}/jobs/{job_id}")


def import_report(report: ImportReport) -> dict[str, Any]:
    """The import's report as the job page shows it: figures, then a line per problem."""
    figures: dict[str, Any] = {
        "imported": report.imported,
        "dry_run": report.dry_run,
        "rows": report.rows,
        "products": report.products,
        "variants": report.variants,
        "created": report.created,
        "updated": report.updated,
        "problems": len(report.errors),
    }
    if report.errors:
        figures["lines"] = [
            {"line": e.line, "field": e.field, "problem": e.reason} for e in report.errors
        ]
    return figures


@router.post("/catalog/export", response_class=HTMLResponse)
def export(
    request: Request,
    format: Annotated[Literal["csv", "json"], Form()] = "csv",
    principal: Principal = require_page(P.CATALOG_READ),
) -> Response:
    """As ``GET /v1/catalog/export``, in the background; the job page offers the file."""
    _ = gettext_for(request).gettext
    database = get_database(request)

    def work(progress: jobs.Progress) -> jobs.Outcome:
        with database.read() as session:
            count = service.count_products(session)
            progress.total(count)
            if format == "csv":
                body, media = importexport.export_csv(session), "text/csv; charset=utf-8"
            else:
                body, media = importexport.export_json(session), "application/json"
        progress.advance(count)
        return jobs.Outcome({"products": count}, jobs.JobFile(f"catalog.{format}", media, body))

    title = _("Catalog export (%(format)s)", format=format.upper())
    job_id = jobs.start(database, principal, "catalog.export", title, work)
    return redirect(request, f"{PREFIX}/jobs/{job_id}")
