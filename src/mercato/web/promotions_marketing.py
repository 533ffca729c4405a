"""Gift cards (issue, look up a balance, disable), offer rules with their dry run, and the
message outbox: part of the promotions screen. As ``payments/api.py`` and
``marketing/api.py``, with the same redaction of personal data."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from mercato.auth.permissions import Permission
from mercato.auth.principal import Principal
from mercato.deps import get_database
from mercato.errors import Problem, ValidationProblem
from mercato.marketing import notifier
from mercato.marketing import service as marketing
from mercato.marketing.api import message_out, rule_out, run_out
from mercato.marketing.schemas import CandidateOut, PreviewOut
from mercato.payments import balances
from mercato.payments import service as payments
from mercato.payments.api import gift_card_out
from mercato.payments.schemas import GiftCardIn, IssuedGiftCardOut
from mercato.web import PREFIX
from mercato.web.catalog_forms import blank_none, decimal_or_none, field_messages, optional_int
from mercato.web.pages import once, redirect, show, url_with
from mercato.web.rendering import gettext_for
from mercato.web.session import require_page

# Included in the promotions screen's router (``web/promotions.py``), which adds the prefix.
router = APIRouter(include_in_schema=False)

P = Permission
PAGE_SIZE = 50


# --- gift cards -----------------------------------------------------------------------------------


def _gift_cards_page(
    request: Request,
    *,
    issued: IssuedGiftCardOut | None = None,
    found: Any = None,
    errors: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    principal: Principal = request.state.principal
    last4 = blank_none(request.query_params.get("last4"))
    status = request.query_params.get("status")
    chosen = status if status in ("active", "disabled") else None
    with get_database(request).read() as session:
        result = balances.list_gift_cards(
            session,
            status=chosen,
            customer_id=None,
            last4=last4 if last4 and len(last4) == 4 else None,
            cursor=blank_none(request.query_params.get("cursor")),
            limit=PAGE_SIZE,
        )
        cards = [gift_card_out(c, principal) for c in result.items]
    context = {
        "active": "promotions",
        "cards": cards,
        "last4": last4 or "",
        "status": chosen or "",
        "next_url": url_with(request, cursor=result.next_cursor) if result.next_cursor else None,
        "issued": issued,
        "found": found,
        "errors": errors or {},
        "values": values or {},
    }
    return show(request, "promotions/gift_cards.html", context, status_code=status_code)


@router.get("/promotions/gift-cards", response_class=HTMLResponse)
def gift_cards(
    request: Request, principal: Principal = require_page(P.PAYMENTS_READ)
) -> HTMLResponse:
    """As ``GET /v1/gift-cards`` (by the code's last four characters, or status)."""
    return _gift_cards_page(request)


@router.post("/promotions/gift-cards", response_class=HTMLResponse)
def issue_gift_card(
    request: Request,
    currency: Annotated[str, Form(max_length=3)],
    amount: Annotated[str, Form(max_length=30)],
    note: Annotated[str, Form(max_length=2000)] = "",
    customer_id: Annotated[str, Form(max_length=20)] = "",
    idempotency_key: Annotated[str | None, Form(max_length=200)] = None,
    principal: Principal = require_page(P.GIFT_CARDS_WRITE),
) -> HTMLResponse:
    """As ``POST /v1/gift-cards``: the full code is shown on this answer only."""
    values = {"currency": currency, "amount": amount, "note": note, "customer_id": customer_id}
    try:
        body = GiftCardIn.model_validate(
            {
                "currency": currency.strip().upper(),
                "amount": decimal_or_none(amount),
                "note": blank_none(note),
                "customer_id": optional_int(customer_id),
            }
        )
        with get_database(request).transaction() as session:
            card = payments.issue_gift_card(
                session,
                principal,
                currency=body.currency,
                amount=body.amount,
                expires_at=body.expires_at,
                customer_id=body.customer_id,
                note=body.note,
                request_key=blank_none(idempotency_key),
            )
            issued = IssuedGiftCardOut(**gift_card_out(card.card).model_dump(), code=card.code)
    except (ValidationError, ValidationProblem) as error:
        return _gift_cards_page(
            request, errors=field_messages(error), values=values, status_code=422
        )
    return _gift_cards_page(request, issued=issued)


@router.post("/promotions/gift-cards/lookup", response_class=HTMLResponse)
def look_up_gift_card(
    request: Request,
    code: Annotated[str, Form(max_length=64)],
    principal: Principal = require_page(P.PAYMENTS_READ),
) -> HTMLResponse:
    """The balance of a card by its code (a POST: codes stay out of URLs and logs). As the
    shoppers' balance check, unknown, disabled and expired codes answer alike."""
    _ = gettext_for(request).gettext
    try:
        with get_database(request).read() as session:
            card = payments.find_usable_gift_card(session, code, "code")
            found = gift_card_out(card, principal)
    except Problem as problem:
        if problem.status != 422:
            raise
        message = _("No usable gift card has this code.")
        return _gift_cards_page(request, errors={"code": message}, status_code=422)
    return _gift_cards_page(request, found=found)


@router.post("/promotions/gift-cards/{gift_card_id}/status", response_class=HTMLResponse)
def set_gift_card_status(
    request: Request,
    gift_card_id: int,
    status: Annotated[str, Form(pattern="^(active|disabled)$")],
    principal: Principal = require_page(P.GIFT_CARDS_WRITE),
) -> Response:
    """As ``POST /v1/gift-cards/{id}/disable`` and ``.../enable``."""
    with get_database(request).transaction() as session:
        payments.set_gift_card_status(session, principal, gift_card_id, status)
    _ = gettext_for(request).gettext
    message = _("Gift card disabled.") if status == "disabled" else _("Gift card enabled.")
    return redirect(request, f"{PREFIX}/promotions/gift-cards", message)


# --- offer rules ----------------------------------------------------------------------------------


@router.get("/promotions/rules", response_class=HTMLResponse)
def rules(
    request: Request,
    principal: Principal = require_page(P.PROMOTIONS_READ),
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> HTMLResponse:
    """As ``GET /v1/marketing/rules``."""
    with get_database(request).read() as session:
        result = marketing.list_rules(session, cursor=blank_none(cursor), limit=PAGE_SIZE)
        items = [rule_out(r) for r in result.items]
    context = {
        "active": "promotions",
        "rules": items,
        "next_url": url_with(request, cursor=result.next_cursor) if result.next_cursor else None,
    }
    return show(request, "promotions/rules.html", context)


@router.get("/promotions/rules/{rule_id}", response_class=HTMLResponse)
def rule_page(
    request: Request, rule_id: int, principal: Principal = require_page(P.PROMOTIONS_READ)
) -> HTMLResponse:
    """The rule with its dry run (``GET /v1/marketing/rules/{id}/dry-run``) and past runs."""
    with get_database(request).read() as session:
        rule = rule_out(marketing.get_rule(session, rule_id))
        preview = marketing.preview_rule(session, rule_id)
        dry_run = PreviewOut(
            rule_id=preview.rule_id,
            window_from=preview.window_from,
            ready=preview.ready,
            problems=preview.problems,
            candidates=[
                CandidateOut.model_validate(c, from_attributes=True) for c in preview.candidates
            ],
        )
        runs = marketing.list_runs(session, rule_id, limit=10)
        past = [run_out(session, r) for r in runs.items]
    context = {"active": "promotions", "rule": rule, "dry_run": dry_run, "runs": past}
    return show(request, "promotions/rule.html", context)


@router.post("/promotions/rules/{rule_id}/run", response_class=HTMLResponse)
def run_rule(
    request: Request,
    rule_id: int,
    idempotency_key: Annotated[str | None, Form(max_length=200)] = None,
    principal: Principal = require_page(P.PROMOTIONS_WRITE),
) -> Response:
    """As ``POST /v1/marketing/rules/{id}/run``: the offer is issued now."""
    with get_database(request).transaction() as session:
        once(
            session,
            principal,
            f"marketing.rule_run.{rule_id}",
            idempotency_key,
            {"rule_id": rule_id},
            lambda: marketing.run_rule(session, principal, rule_id).id,
        )
    _ = gettext_for(request).gettext
    return redirect(request, f"{PREFIX}/promotions/rules/{rule_id}", _("The rule ran."))


# --- the message outbox ---------------------------------------------------------------------------


@router.get("/promotions/messages", response_class=HTMLResponse)
def messages(
    request: Request,
    principal: Principal = require_page(P.CUSTOMERS_READ),
    status: str | None = None,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> HTMLResponse:
    """As ``GET /v1/marketing/messages``: what was queued, sent or failed, newest first;
    addresses and bodies only for roles with customers:pii."""
    chosen = notifier.MessageStatus(status) if status in set(notifier.MessageStatus) else None
    with get_database(request).read() as session:
        result = notifier.list_messages(
            session, status=chosen, cursor=blank_none(cursor), limit=PAGE_SIZE
        )
        items = [message_out(m, principal) for m in result.items]
    context = {
        "active": "promotions",
        "messages": items,
        "status": chosen.value if chosen else "",
        "statuses": [s.value for s in notifier.MessageStatus],
        "next_url": url_with(request, cursor=result.next_cursor) if result.next_cursor else None,
    }
    return show(request, "promotions/messages.html", context)
