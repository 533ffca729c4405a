"""Settings, webhooks: subscriptions, their delivery log and re-sending
(``/v1/webhooks``).

Reading needs events:read, as the API's reads do; subscribing, testing and re-sending
need webhooks:write. A new subscription's signing secret is shown in the answer to the
form and never again (the once-only store keeps the subscription's id, not the secret).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.deps import get_database
from mercato.errors import Problem
from mercato.web.pages import once, redirect, show, url_with
from mercato.web.rendering import gettext_for
from mercato.web.session import require_page
from mercato.web.settings_tabs import BASE, P, context, form_errors, parse, part_router, split_list
from mercato.webhooks import service
from mercato.webhooks.api import delivery_out, subscription_out, with_secret
from mercato.webhooks.events import worker_for
from mercato.webhooks.models import DeliveryStatus
from mercato.webhooks.schemas import SubscriptionIn, SubscriptionPatch, SubscriptionWithSecret
from mercato.webhooks.worker import WAKE_KEY

router = part_router()

Key = Annotated[str | None, Form(max_length=200)]
Back = Annotated[str, Form(max_length=2000)]


def _wake_worker(request: Request, session: Session) -> None:
    """As the API: the app's delivery worker looks at the queue once this commits."""
    worker = worker_for(request.app.state.dispatcher)
    if worker is not None:
        session.info[WAKE_KEY] = worker.kick


def _list_page(
    request: Request,
    principal: Principal,
    cursor: str | None,
    *,
    created: SubscriptionWithSecret | None = None,
    form: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    with get_database(request).read() as session:
        result = service.list_subscriptions(session, cursor=cursor, limit=50)
        items = [subscription_out(x) for x in result.items]
    next_url = url_with(request, cursor=result.next_cursor) if result.next_cursor else None
    values = context(
        principal,
        "webhooks",
        subscriptions=items,
        next_url=next_url,
        created=created,
        form=form or {"event_types": "order.*"},
        errors=errors or {},
    )
    return show(request, "settings/webhooks.html", values, status_code=status_code)


@router.get("/settings/webhooks", response_class=HTMLResponse)
def webhooks(
    request: Request,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    principal: Principal = require_page(P.EVENTS_READ),
) -> HTMLResponse:
    return _list_page(request, principal, cursor)


@router.post("/settings/webhooks", response_class=HTMLResponse)
def subscribe(
    request: Request,
    url: Annotated[str, Form(max_length=2000)],
    event_types: Annotated[str, Form(max_length=4000)],
    description: Annotated[str, Form(max_length=500)] = "",
    idempotency_key: Key = None,
    principal: Principal = require_page(P.WEBHOOKS_WRITE),
) -> Response:
    """As ``POST /v1/webhooks/subscriptions``: the secret is in this answer only."""
    form = {"url": url, "event_types": event_types, "description": description}
    shown: list[SubscriptionWithSecret] = []
    try:
        body = parse(
            SubscriptionIn,
            url=url.strip(),
            event_types=split_list(event_types),
            description=description.strip() or None,
        )
        with get_database(request).transaction() as session:

            def produce() -> dict[str, Any]:
                subscription, secret = service.create_subscription(session, principal, body)
                shown.append(with_secret(subscription, secret))
                return {"id": subscription.id}

            _made, replayed = once(
                session, principal, "settings.webhook", idempotency_key, form, produce
            )
    except Problem as problem:
        if problem.status not in (409, 422):
            raise
        return _list_page(
            request, principal, None, form=form, errors=form_errors(problem), status_code=422
        )
    if replayed:
        _ = gettext_for(request).gettext
        message = _("This subscription was already made; its secret was shown once.")
        return redirect(request, f"{BASE}/webhooks", message)
    return _list_page(request, principal, None, created=shown[0])


@router.get("/settings/webhooks/{subscription_id}", response_class=HTMLResponse)
def subscription(
    request: Request,
    subscription_id: int,
    status: Annotated[str | None, Query(max_length=20)] = None,
    event_type: Annotated[str | None, Query(max_length=80)] = None,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    principal: Principal = require_page(P.EVENTS_READ),
) -> HTMLResponse:
    """The delivery log, newest first, filtered in the URL (as
    ``GET /v1/webhooks/subscriptions/{id}/deliveries``)."""
    return _subscription_page(request, principal, subscription_id, status, event_type, cursor)


def _subscription_page(
    request: Request,
    principal: Principal,
    subscription_id: int,
    status: str | None = None,
    event_type: str | None = None,
    cursor: str | None = None,
    rotated: SubscriptionWithSecret | None = None,
    form: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    wanted = DeliveryStatus(status) if status in {s.value for s in DeliveryStatus} else None
    with get_database(request).read() as session:
        found = subscription_out(service.get_subscription(session, subscription_id))
        result = service.list_deliveries(
            session,
            subscription_id=subscription_id,
            status=wanted,
            event_type=event_type or None,
            cursor=cursor,
            limit=50,
        )
        deliveries = [delivery_out(x) for x in result.items]
    next_url = url_with(request, cursor=result.next_cursor) if result.next_cursor else None
    values = context(
        principal,
        "webhooks",
        subscription=found,
        deliveries=deliveries,
        next_url=next_url,
        statuses=[s.value for s in DeliveryStatus],
        filters={"status": wanted.value if wanted else "", "event_type": event_type or ""},
        back=url_with(request),
        rotated=rotated,
        form=form
        or {
            "url": found.url,
            "event_types": ", ".join(found.event_types),
            "description": found.description or "",
        },
        errors=errors or {},
    )
    return show(request, "settings/webhook.html", values, status_code=status_code)


def _back(back: str, subscription_id: int) -> str:
    """Back to the log the button was pressed on, its filters kept (the form says which
    view it was; only this subscription's log is a place to go back to)."""
    path = f"{BASE}/webhooks/{subscription_id}"
    if back == path or back.startswith(path + "?"):
        return back
    return path


@router.post("/settings/webhooks/deliveries/{delivery_id}/retry")
def retry_delivery(
    request: Request,
    delivery_id: int,
    back: Back = "",
    idempotency_key: Key = None,
    principal: Principal = require_page(P.WEBHOOKS_WRITE),
) -> Response:
    """As ``POST /v1/webhooks/deliveries/{id}/resend``: queued now with fresh attempts."""
    with get_database(request).transaction() as session:

        def produce() -> dict[str, Any]:
            delivery = service.resend_delivery(session, principal, delivery_id)
            _wake_worker(request, session)
            return delivery_out(delivery).model_dump(mode="json")

        done, _replayed = once(
            session,
            principal,
            "settings.webhook_resend",
            idempotency_key,
            {"delivery_id": delivery_id},
            produce,
        )
    _ = gettext_for(request).gettext
    message = _("Delivery %(id)s is queued again.", id=delivery_id)
    return redirect(request, _back(back, int(done["subscription_id"])), message)


@router.post("/settings/webhooks/{subscription_id}/dead-letters/resend")
def resend_dead_letters(
    request: Request,
    subscription_id: int,
    back: Back = "",
    idempotency_key: Key = None,
    principal: Principal = require_page(P.WEBHOOKS_WRITE),
) -> Response:
    with get_database(request).transaction() as session:

        def produce() -> dict[str, Any]:
            ids = service.resend_dead_letters(session, principal, subscription_id)
            if ids:
                _wake_worker(request, session)
            return {"resent": len(ids)}

        done, _replayed = once(
            session,
            principal,
            "settings.webhook_resend_dead",
            idempotency_key,
            {"subscription_id": subscription_id},
            produce,
        )
    _ = gettext_for(request).gettext
    message = _("%(count)s dead letters are queued again.", count=done["resent"])
    return redirect(request, _back(back, subscription_id), message)


@router.post("/settings/webhooks/{subscription_id}/test")
def send_test_event(
    request: Request,
    subscription_id: int,
    back: Back = "",
    idempotency_key: Key = None,
    principal: Principal = require_page(P.WEBHOOKS_WRITE),
) -> Response:
    """As ``POST /v1/webhooks/subscriptions/{id}/test``: a ``webhook.test`` event."""
    with get_database(request).transaction() as session:

        def produce() -> dict[str, Any]:
            delivery = service.send_test_event(session, principal, subscription_id)
            _wake_worker(request, session)
            return {"id": delivery.id}

        once(
            session,
            principal,
            "settings.webhook_test",
            idempotency_key,
            {"subscription_id": subscription_id},
            produce,
        )
    _ = gettext_for(request).gettext
    return redirect(request, _back(back, subscription_id), _("A test event is queued."))


@router.post("/settings/webhooks/{subscription_id}/active")
def set_active(
    request: Request,
    subscription_id: int,
    active: Annotated[bool, Form()],
    back: Back = "",
    principal: Principal = require_page(P.WEBHOOKS_WRITE),
) -> Response:
    """Pause or resume (as ``PATCH /v1/webhooks/subscriptions/{id}``): a paused endpoint's
    deliveries wait, and go out when it is resumed."""
    with get_database(request).transaction() as session:
        found = service.update_subscription(
            session, principal, subscription_id, SubscriptionPatch(active=active)
        )
        if found.active:
            _wake_worker(request, session)
    _ = gettext_for(request).gettext
    message = _("The subscription is active.") if active else _("The subscription is paused.")
    return redirect(request, _back(back, subscription_id), message)


@router.post("/settings/webhooks/{subscription_id}/secret", response_class=HTMLResponse)
def rotate_secret(
    request: Request,
    subscription_id: int,
    keep_previous_hours: Annotated[int, Form(ge=0, le=168)] = 24,
    idempotency_key: Key = None,
    principal: Principal = require_page(P.WEBHOOKS_WRITE),
) -> Response:
    """A new signing secret, shown in this answer only; the old one also signs for
    ``keep_previous_hours`` (as ``POST /v1/webhooks/subscriptions/{id}/secret``)."""
    shown: list[SubscriptionWithSecret] = []
    with get_database(request).transaction() as session:

        def produce() -> dict[str, Any]:
            keep = timedelta(hours=keep_previous_hours)
            found, secret = service.rotate_secret(session, principal, subscription_id, keep)
            shown.append(with_secret(found, secret))
            return {"id": found.id}

        payload = {"subscription_id": subscription_id, "keep": keep_previous_hours}
        _made, replayed = once(
            session, principal, "settings.webhook_secret", idempotency_key, payload, produce
        )
    if replayed:
        _ = gettext_for(request).gettext
        message = _("This secret was already made; it was shown once.")
        return redirect(request, f"{BASE}/webhooks/{subscription_id}", message)
    return _subscription_page(request, principal, subscription_id, rotated=shown[0])


@router.get("/settings/webhooks/{subscription_id}/secret")
def secret_page(
    subscription_id: int, principal: Principal = require_page(P.EVENTS_READ)
) -> RedirectResponse:
    """Where a reloaded secret form lands: the log (the secret is not shown again)."""
    return RedirectResponse(f"{BASE}/webhooks/{subscription_id}", status_code=303)


@router.post("/settings/webhooks/{subscription_id}/edit", response_class=HTMLResponse)
def update_subscription(
    request: Request,
    subscription_id: int,
    url: Annotated[str, Form(max_length=2000)],
    event_types: Annotated[str, Form(max_length=4000)],
    description: Annotated[str, Form(max_length=500)] = "",
    principal: Principal = require_page(P.WEBHOOKS_WRITE),
) -> Response:
    """As ``PATCH /v1/webhooks/subscriptions/{id}`` with the URL, event types and
    description; the secret and the delivery log stay."""
    form = {"url": url, "event_types": event_types, "description": description}
    try:
        patch = parse(
            SubscriptionPatch,
            url=url.strip(),
            event_types=split_list(event_types),
            description=description.strip() or None,
        )
        with get_database(request).transaction() as session:
            found = service.update_subscription(session, principal, subscription_id, patch)
            if found.active:
                _wake_worker(request, session)
    except Problem as problem:
        if problem.status not in (409, 422):
            raise
        errors = form_errors(problem)
        return _subscription_page(
            request, principal, subscription_id, form=form, errors=errors, status_code=422
        )
    _ = gettext_for(request).gettext
    return redirect(request, f"{BASE}/webhooks/{subscription_id}", _("The subscription was saved."))


@router.post("/settings/webhooks/{subscription_id}/delete")
def delete_subscription(
    request: Request,
    subscription_id: int,
    confirm: Annotated[str | None, Form(max_length=10)] = None,
    principal: Principal = require_page(P.WEBHOOKS_WRITE),
) -> Response:
    """As ``DELETE /v1/webhooks/subscriptions/{id}``: the subscription goes with its
    delivery log, so the form asks for a ticked confirmation first."""
    _ = gettext_for(request).gettext
    if confirm is None:
        message = _("Tick the confirmation to delete the subscription.")
        return redirect(request, f"{BASE}/webhooks/{subscription_id}", message)
    with get_database(request).transaction() as session:
        service.delete_subscription(session, principal, subscription_id)
    return redirect(request, f"{BASE}/webhooks", _("The subscription was deleted."))
