"""The promotions screen: promotions with a preview of a sample cart, their codes (bulk
generation, CSV export). Gift cards, offer rules and the message outbox are in
``promotions_marketing``. Each handler calls the service the matching API endpoint calls
(``promotions/api.py``) and renders its schemas."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from typing import Annotated, Any

from fastapi import Form, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from mercato.auth.permissions import Permission
from mercato.auth.principal import Principal
from mercato.catalog import service as catalog
from mercato.channels import service as channels
from mercato.db import utcnow
from mercato.deps import get_database
from mercato.errors import Problem, ValidationProblem
from mercato.jobs import service as jobs
from mercato.promotions import service
from mercato.promotions.api import code_out, evaluation_out, promotion_out, promotions_out
from mercato.promotions.schemas import (
    ActionType,
    EvaluationOut,
    GenerateCodesIn,
    PromotionIn,
    PromotionPatch,
    PromotionStatus,
)
from mercato.web import PREFIX, promotions_marketing
from mercato.web.catalog_forms import blank_none, decimal_or_none, field_messages, optional_int
from mercato.web.pages import once, page_router, redirect, show, url_with
from mercato.web.rendering import gettext_for
from mercato.web.session import require_page

router = page_router()
router.include_router(promotions_marketing.router)

P = Permission
PAGE_SIZE = 50
# The editor offers the common kinds; others (bundles, buy X get Y) come through the API
# and are shown, previewed and paused here like any other.
EDITABLE_ACTIONS = (
    ActionType.PERCENT_OFF_ORDER,
    ActionType.AMOUNT_OFF_ORDER,
    ActionType.PERCENT_OFF_ITEMS,
    ActionType.SHIPPING,
)
SAMPLE_LINES = 3


@router.get("/promotions", response_class=HTMLResponse)
def promotions(
    request: Request,
    principal: Principal = require_page(P.PROMOTIONS_READ),
    status: str | None = None,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> HTMLResponse:
    """As ``GET /v1/promotions``."""
    chosen = PromotionStatus(status) if status in set(PromotionStatus) else None
    with get_database(request).read() as session:
        result = service.list_promotions(
            session, status=chosen, cursor=blank_none(cursor), limit=PAGE_SIZE
        )
        items = promotions_out(session, result.items)
    context = {
        "active": "promotions",
        "items": items,
        "status": chosen.value if chosen else "",
        "statuses": [s.value for s in PromotionStatus],
        "next_url": url_with(request, cursor=result.next_cursor) if result.next_cursor else None,
    }
    return show(request, "promotions/list.html", context)


# --- the editor -----------------------------------------------------------------------------------


def _action(kind: str, percent: str, amount: str, currency: str) -> dict[str, Any]:
    action: dict[str, Any] = {"type": kind}
    if kind in (ActionType.AMOUNT_OFF_ORDER, ActionType.AMOUNT_OFF_ITEMS):
        action["amounts"] = {currency.strip().upper(): decimal_or_none(amount)}
    elif kind == ActionType.SHIPPING:
        action["percent"] = decimal_or_none(percent) or Decimal(100)
    else:
        action["percent"] = decimal_or_none(percent)
    return action


def _conditions(min_currency: str, min_subtotal: str) -> dict[str, Any]:
    minimum = decimal_or_none(min_subtotal)
    if minimum is None or not min_currency.strip():
        return {}
    return {"min_subtotal": {min_currency.strip().upper(): minimum}}


@router.get("/promotions/new", response_class=HTMLResponse)
def new_promotion(
    request: Request, principal: Principal = require_page(P.PROMOTIONS_WRITE)
) -> HTMLResponse:
    return _editor(request, {}, {})


def _editor(
    request: Request, values: dict[str, Any], errors: dict[str, str], status_code: int = 200
) -> HTMLResponse:
    context = {
        "active": "promotions",
        "values": values,
        "errors": errors,
        "actions": [a.value for a in EDITABLE_ACTIONS],
        "statuses": [s.value for s in PromotionStatus],
    }
    return show(request, "promotions/new.html", context, status_code=status_code)


@router.post("/promotions/new", response_class=HTMLResponse)
def create_promotion(
    request: Request,
    name: Annotated[str, Form(max_length=200)],
    action_type: Annotated[str, Form(max_length=40)],
    description: Annotated[str, Form(max_length=5000)] = "",
    status: Annotated[str, Form(max_length=20)] = "draft",
    requires_code: Annotated[bool, Form()] = False,
    percent: Annotated[str, Form(max_length=20)] = "",
    amount: Annotated[str, Form(max_length=30)] = "",
    currency: Annotated[str, Form(max_length=3)] = "",
    min_currency: Annotated[str, Form(max_length=3)] = "",
    min_subtotal: Annotated[str, Form(max_length=30)] = "",
    priority: Annotated[int, Form(ge=-10_000, le=10_000)] = 0,
    idempotency_key: Annotated[str | None, Form(max_length=200)] = None,
    principal: Principal = require_page(P.PROMOTIONS_WRITE),
) -> Response:
    """As ``POST /v1/promotions``."""
    values = {
        "name": name,
        "description": description,
        "status": status,
        "requires_code": requires_code,
        "action_type": action_type,
        "percent": percent,
        "amount": amount,
        "currency": currency,
        "min_currency": min_currency,
        "min_subtotal": min_subtotal,
        "priority": priority,
    }
    try:
        body = PromotionIn.model_validate(
            {
                "name": name.strip(),
                "description": blank_none(description),
                "status": status,
                "priority": priority,
                "requires_code": requires_code,
                "action": _action(action_type, percent, amount, currency),
                "conditions": _conditions(min_currency, min_subtotal),
            }
        )
        with get_database(request).transaction() as session:
            promotion_id, _replayed = once(
                session,
                principal,
                "promotions.create",
                idempotency_key,
                body.model_dump(mode="json"),
                lambda: service.create_promotion(session, principal, body).id,
            )
    except (ValidationError, ValidationProblem) as error:
        messages = {k.removeprefix("action."): v for k, v in field_messages(error).items()}
        return _editor(request, values, messages, 422)
    _ = gettext_for(request).gettext
    return redirect(request, f"{PREFIX}/promotions/{promotion_id}", _("Promotion created."))


# --- a promotion: preview, status, codes ----------------------------------------------------------


def _sample_context(session: Session) -> dict[str, Any]:
    found = channels.list_channels(session)
    return {"channels": [(c.id, c.code, c.name) for c in found]}


def _promotion_page(
    request: Request,
    promotion_id: int,
    *,
    preview: EvaluationOut | None = None,
    sample: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    generated: dict[str, Any] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    batch = request.query_params.get("batch") or None
    cursor = request.query_params.get("cursor") or None
    with get_database(request).read() as session:
        promotion = promotion_out(session, service.get_promotion(session, promotion_id))
        codes = service.list_codes(session, promotion_id, batch=batch, cursor=cursor, limit=50)
        context: dict[str, Any] = {
            "active": "promotions",
            "promotion": promotion,
            "codes": [code_out(c) for c in codes.items],
            "batch": batch,
            "codes_next": url_with(request, cursor=codes.next_cursor)
            if codes.next_cursor
            else None,
            "preview": preview,
            "sample": sample or {},
            "errors": errors or {},
            "generated": generated,
            "statuses": [s.value for s in PromotionStatus],
            "sample_lines": SAMPLE_LINES,
            **_sample_context(session),
        }
    return show(request, "promotions/promotion.html", context, status_code=status_code)


@router.get("/promotions/{promotion_id}", response_class=HTMLResponse)
def promotion_page(
    request: Request, promotion_id: int, principal: Principal = require_page(P.PROMOTIONS_READ)
) -> HTMLResponse:
    return _promotion_page(request, promotion_id)


@router.post("/promotions/{promotion_id}/preview", response_class=HTMLResponse)
async def preview(
    request: Request,
    promotion_id: int,
    principal: Principal = require_page(P.PROMOTIONS_READ),
) -> HTMLResponse:
    """As ``POST /v1/promotions/evaluate``: what this cart would get now (nothing is
    reserved). Lines are given by SKU, quantity and unit price."""
    form = await request.form()
    sample = {k: str(v) for k, v in form.items() if isinstance(v, str)}
    errors: dict[str, str] = {}
    result: EvaluationOut | None = None
    with get_database(request).read() as session:
        try:
            result = _evaluate(session, sample, errors)
        except (ValidationError, ValidationProblem) as error:
            errors.update(field_messages(error))
    return _promotion_page(
        request,
        promotion_id,
        preview=result,
        sample=sample,
        errors=errors,
        status_code=422 if errors else 200,
    )


def _evaluate(
    session: Session, sample: dict[str, str], errors: dict[str, str]
) -> EvaluationOut | None:
    lines: list[service.CartLineInput] = []
    skus = [sample.get(f"sku_{i}", "").strip() for i in range(SAMPLE_LINES)]
    ids = catalog.variant_ids_by_sku(session, [s for s in skus if s])
    for i, sku in enumerate(skus):
        if not sku:
            continue
        quantity = optional_int(sample.get(f"quantity_{i}")) or 1
        price = decimal_or_none(sample.get(f"price_{i}"))
        if sku not in ids:
            errors[f"sku_{i}"] = f"unknown SKU {sku}"
        elif price is None or price < 0:
            errors[f"price_{i}"] = "a unit price"
        else:
            lines.append(service.CartLineInput(f"line-{i + 1}", ids[sku], quantity, price, True))
    if not lines and not errors:
        errors["sku_0"] = "at least one line"
    channel_id = optional_int(sample.get("channel_id"))
    if channel_id is None:
        errors["channel_id"] = "a channel"
    if errors or channel_id is None:
        return None
    shipping = decimal_or_none(sample.get("shipping")) or Decimal(0)
    codes = [c for c in (blank_none(sample.get("codes")) or "").replace(",", " ").split() if c]
    currency = service.check_cart(sample.get("currency", "").strip().upper(), shipping, lines)
    context = service.CartEvaluationContext(
        currency=currency,
        channel_id=channel_id,
        now=utcnow(),
        customer_id=None,
        customer_groups=frozenset(),
        first_order=sample.get("first_order") == "true",
        shipping=shipping,
        codes=codes,
    )
    return evaluation_out(
        service.evaluate(session, lines=service.cart_lines(session, lines), context=context)
    )


@router.post("/promotions/{promotion_id}", response_class=HTMLResponse)
def update_promotion(
    request: Request,
    promotion_id: int,
    status: Annotated[str, Form(max_length=20)],
    name: Annotated[str, Form(max_length=200)],
    priority: Annotated[int, Form(ge=-10_000, le=10_000)] = 0,
    principal: Principal = require_page(P.PROMOTIONS_WRITE),
) -> Response:
    """As ``PATCH /v1/promotions/{id}``: name, priority and status (activate, pause...)."""
    try:
        patch = PromotionPatch.model_validate(
            {"name": name.strip(), "status": status, "priority": priority}
        )
        with get_database(request).transaction() as session:
            service.update_promotion(session, principal, promotion_id, patch)
    except (ValidationError, ValidationProblem) as error:
        return _promotion_page(request, promotion_id, errors=field_messages(error), status_code=422)
    except Problem as problem:
        if problem.status != 409:
            raise
        return _promotion_page(
            request, promotion_id, errors={"status": problem.detail}, status_code=422
        )
    _ = gettext_for(request).gettext
    return redirect(request, f"{PREFIX}/promotions/{promotion_id}", _("Promotion saved."))


@router.post("/promotions/{promotion_id}/codes", response_class=HTMLResponse)
def generate_codes(
    request: Request,
    promotion_id: int,
    count: Annotated[int, Form(ge=1, le=10_000)],
    prefix: Annotated[str, Form(max_length=20)] = "",
    max_uses: Annotated[str, Form(max_length=12)] = "1",
    idempotency_key: Annotated[str | None, Form(max_length=200)] = None,
    principal: Principal = require_page(P.PROMOTIONS_WRITE),
) -> Response:
    """As ``POST /v1/promotions/{id}/codes/generate``; the page then lists the batch, which
    downloads as CSV. More than ``CODES_AT_ONCE`` codes are made in the background: the
    job page shows the progress, then offers the batch as CSV."""
    try:
        body = GenerateCodesIn(
            count=count, prefix=blank_none(prefix), max_uses=optional_int(max_uses)
        )
        database = get_database(request)
        background = body.count > CODES_AT_ONCE
        with database.transaction() as session:
            service.get_promotion(session, promotion_id)
            answer, _replayed = once(
                session,
                principal,
                f"promotions.codes.{promotion_id}",
                idempotency_key,
                body.model_dump(mode="json"),
                lambda: (
                    {"job": _in_background(session, request, principal, promotion_id, body)}
                    if background
                    else {
                        "batch": service.generate_codes(
                            session,
                            principal,
                            promotion_id,
                            body.count,
                            prefix=body.prefix,
                            length=body.length,
                            max_uses=body.max_uses,
                        ).batch
                    }
                ),
            )
    except (ValidationError, ValidationProblem) as error:
        return _promotion_page(request, promotion_id, errors=field_messages(error), status_code=422)
    except Problem as problem:
        if problem.status != 409:
            raise
        return _promotion_page(
            request, promotion_id, errors={"count": problem.detail}, status_code=422
        )
    if "job" in answer:
        return redirect(request, f"{PREFIX}/jobs/{answer['job']}")
    _ = gettext_for(request).gettext
    message = _("%(count)s codes generated.", count=count)
    batch = answer["batch"]
    return redirect(request, f"{PREFIX}/promotions/{promotion_id}?batch={batch}#codes", message)


# Up to this many codes are made while the page waits; more run as background work.
CODES_AT_ONCE = 1_000


def _in_background(
    session: Session,
    request: Request,
    principal: Principal,
    promotion_id: int,
    body: GenerateCodesIn,
) -> int:
    database = get_database(request)

    def work(progress: jobs.Progress) -> jobs.Outcome:
        progress.total(body.count)
        with database.transaction() as session:
            batch = service.generate_codes(
                session,
                principal,
                promotion_id,
                body.count,
                prefix=body.prefix,
                length=body.length,
                max_uses=body.max_uses,
            ).batch
        progress.advance(body.count)
        with database.read() as session:
            content = _codes_csv(session, promotion_id, batch)
        report = {
            "codes": body.count,
            "batch": batch,
            "link": f"{PREFIX}/promotions/{promotion_id}?batch={batch}#codes",
        }
        name = f"promotion-{promotion_id}-{batch}.csv"
        return jobs.Outcome(report, jobs.JobFile(name, "text/csv", content))

    title = f"{body.count} codes for promotion {promotion_id}"
    return jobs.start_after_commit(session, database, principal, "promotions.codes", title, work)


def _codes_csv(session: Session, promotion_id: int, batch: str | None) -> str:
    """The promotion's codes (one batch, or all) with their usage, as CSV."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["code", "max_uses", "uses", "expires_at", "batch", "disabled"])
    cursor: str | None = None
    while True:
        page = service.list_codes(session, promotion_id, batch=batch, cursor=cursor, limit=200)
        for code in (code_out(c) for c in page.items):
            expires = code.expires_at.isoformat() if code.expires_at else ""
            writer.writerow(
                [
                    code.code,
                    code.max_uses or "",
                    code.uses,
                    expires,
                    code.batch or "",
                    code.disabled,
                ]
            )
        cursor = page.next_cursor
        if cursor is None:
            return buffer.getvalue()


@router.get("/promotions/{promotion_id}/codes.csv")
def export_codes(
    request: Request,
    promotion_id: int,
    batch: Annotated[str | None, Query(max_length=36)] = None,
    principal: Principal = require_page(P.PROMOTIONS_READ),
) -> Response:
    """The promotion's codes (one batch, or all) with their usage, as ``GET
    /v1/promotions/{id}/codes`` pages them."""
    with get_database(request).read() as session:
        service.get_promotion(session, promotion_id)
        content = _codes_csv(session, promotion_id, blank_none(batch))
    name = f"promotion-{promotion_id}" + (f"-{batch}" if batch else "") + ".csv"
    return Response(
        content,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
