from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from mercato.auth.permissions import Permission
from mercato.auth.principal import Principal
from mercato.db import utcnow
from mercato.deps import DbSession, IdempotencyKey, Pagination, require
from mercato.idempotency import Idempotent, scope_for
from mercato.routing import router
from mercato.webhooks import service
from mercato.webhooks.events import worker_for
from mercato.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookSubscription
from mercato.webhooks.schemas import (
    AttemptOut,
    DeliveryDetail,
    DeliveryOut,
    DeliveryPage,
    ResendOut,
    RotateSecretIn,
    SubscriptionIn,
    SubscriptionOut,
    SubscriptionPage,
    SubscriptionPatch,
    SubscriptionWithSecret,
)
from mercato.webhooks.worker import WAKE_KEY

api = router("/v1/webhooks", tags=["webhooks"])

Reader = Annotated[Principal, Depends(require(Permission.EVENTS_READ))]
Writer = Annotated[Principal, Depends(require(Permission.WEBHOOKS_WRITE))]


def subscription_out(subscription: WebhookSubscription) -> SubscriptionOut:
    return SubscriptionOut.model_validate(subscription)


def with_secret(subscription: WebhookSubscription, secret: str) -> SubscriptionWithSecret:
    return SubscriptionWithSecret(**subscription_out(subscription).model_dump(), secret=secret)


def delivery_out(delivery: WebhookDelivery) -> DeliveryOut:
    pending = delivery.status == DeliveryStatus.PENDING.value
    leased = delivery.claimed_until is not None and delivery.claimed_until > utcnow()
    return DeliveryOut(
        id=delivery.id,
        subscription_id=delivery.subscription_id,
        event_id=delivery.event_id,
        event_type=delivery.event_type,
        status=delivery.status,
        in_flight=pending and leased,
        attempts=delivery.attempts,
        total_attempts=delivery.total_attempts,
        next_attempt_at=delivery.next_attempt_at if pending else None,
        last_attempt_at=delivery.last_attempt_at,
        last_status_code=delivery.last_status_code,
        last_error=delivery.last_error,
        delivered_at=delivery.delivered_at,
        dead_at=delivery.dead_at,
        created_at=delivery.created_at,
    )


def _wake_worker(request: Request, session: Session) -> None:
    """Have the app's worker look at the queue as soon as this request commits."""
    worker = worker_for(request.app.state.dispatcher)
    if worker is not None:
        session.info[WAKE_KEY] = worker.kick


# --- subscriptions ------------------------------------------------------------------------


@api.post("/subscriptions", response_model=SubscriptionWithSecret, status_code=201)
def create_subscription(
    body: SubscriptionIn, session: DbSession, principal: Writer
) -> SubscriptionWithSecret:
    """Subscribe an endpoint. The answer holds the signing secret: it is never shown again."""
    subscription, secret = service.create_subscription(session, principal, body)
    return with_secret(subscription, secret)


@api.get("/subscriptions", response_model=SubscriptionPage)
def list_subscriptions(
    session: DbSession, page: Pagination, principal: Reader, active: bool | None = None
) -> SubscriptionPage:
    cursor, limit = page
    result = service.list_subscriptions(session, active=active, cursor=cursor, limit=limit)
    return SubscriptionPage(
        items=[subscription_out(x) for x in result.items], next_cursor=result.next_cursor
    )


@api.get("/subscriptions/{subscription_id}", response_model=SubscriptionOut)
def get_subscription(
    subscription_id: int, session: DbSession, principal: Reader
) -> SubscriptionOut:
    return subscription_out(service.get_subscription(session, subscription_id))


@api.patch("/subscriptions/{subscription_id}", response_model=SubscriptionOut)
def update_subscription(
    subscription_id: int,
    body: SubscriptionPatch,
    session: DbSession,
    principal: Writer,
    request: Request,
) -> SubscriptionOut:
    subscription = service.update_subscription(session, principal, subscription_id, body)
    if subscription.active:
        _wake_worker(request, session)  # a resumed subscription has deliveries waiting
    return subscription_out(subscription)


@api.delete("/subscriptions/{subscription_id}", status_code=204)
def delete_subscription(subscription_id: int, session: DbSession, principal: Writer) -> Response:
    service.delete_subscription(session, principal, subscription_id)
    return Response(status_code=204)


@api.post("/subscriptions/{subscription_id}/secret", response_model=SubscriptionWithSecret)
def rotate_secret(
    subscription_id: int, body: RotateSecretIn, session: DbSession, principal: Writer
) -> SubscriptionWithSecret:
    """A new signing secret, shown once; the old one also signs for ``keep_previous_hours``."""
    keep = timedelta(hours=body.keep_previous_hours)
    subscription, secret = service.rotate_secret(session, principal, subscription_id, keep)
    return with_secret(subscription, secret)


@api.post("/subscriptions/{subscription_id}/test", response_model=DeliveryOut, status_code=202)
def send_test_event(
    subscription_id: int,
    session: DbSession,
    principal: Writer,
    key: IdempotencyKey,
    request: Request,
) -> JSONResponse:
    """Queue a ``webhook.test`` event for this endpoint only."""

    def run() -> DeliveryOut:
        delivery = service.send_test_event(session, principal, subscription_id)
        _wake_worker(request, session)
        return delivery_out(delivery)

    payload: dict[str, Any] = {"subscription_id": subscription_id}
    scope = scope_for("webhooks.test", principal)
    return Idempotent(session, scope, key, payload).run(run, status_code=202)


# --- deliveries ---------------------------------------------------------------------------


@api.get("/subscriptions/{subscription_id}/deliveries", response_model=DeliveryPage)
def list_deliveries(
    subscription_id: int,
    session: DbSession,
    page: Pagination,
    principal: Reader,
    status: DeliveryStatus | None = None,
    event_type: Annotated[str | None, Query(max_length=80)] = None,
) -> DeliveryPage:
    """Newest first, with status, attempts, last answer or error and next attempt time."""
    service.get_subscription(session, subscription_id)
    cursor, limit = page
    result = service.list_deliveries(
        session,
        subscription_id=subscription_id,
        status=status,
        event_type=event_type,
        cursor=cursor,
        limit=limit,
    )
    return DeliveryPage(
        items=[delivery_out(x) for x in result.items], next_cursor=result.next_cursor
    )


@api.get("/dead-letters", response_model=DeliveryPage)
def list_dead_letters(
    session: DbSession, page: Pagination, principal: Reader, subscription_id: int | None = None
) -> DeliveryPage:
    """Deliveries whose attempts ran out, newest first."""
    cursor, limit = page
    result = service.list_deliveries(
        session,
        subscription_id=subscription_id,
        status=DeliveryStatus.DEAD,
        cursor=cursor,
        limit=limit,
    )
    return DeliveryPage(
        items=[delivery_out(x) for x in result.items], next_cursor=result.next_cursor
    )


@api.get("/deliveries/{delivery_id}", response_model=DeliveryDetail)
def get_delivery(delivery_id: int, session: DbSession, principal: Reader) -> DeliveryDetail:
    """One delivery with the body it sends and every recorded attempt."""
    delivery = service.get_delivery(session, delivery_id)
    history = service.delivery_history(session, delivery_id)
    return DeliveryDetail(
        **delivery_out(delivery).model_dump(),
        payload=service.parse_body(delivery.body),
        history=[AttemptOut.model_validate(x) for x in history],
    )


@api.post("/deliveries/{delivery_id}/resend", response_model=DeliveryOut)
def resend_delivery(
    delivery_id: int,
    session: DbSession,
    principal: Writer,
    key: IdempotencyKey,
    request: Request,
) -> JSONResponse:
    """Send a delivery again now with a fresh set of attempts (a retry with the same
    ``Idempotency-Key`` gets the first answer and queues nothing more)."""

    def run() -> DeliveryOut:
        delivery = service.resend_delivery(session, principal, delivery_id)
        _wake_worker(request, session)
        return delivery_out(delivery)

    payload: dict[str, Any] = {"delivery_id": delivery_id}
    scope = scope_for("webhooks.resend", principal)
    return Idempotent(session, scope, key, payload).run(run, status_code=200)


@api.post("/subscriptions/{subscription_id}/dead-letters/resend", response_model=ResendOut)
def resend_dead_letters(
    subscription_id: int,
    session: DbSession,
    principal: Writer,
    key: IdempotencyKey,
    request: Request,
) -> JSONResponse:
    """Send every dead letter of the subscription again."""

    def run() -> ResendOut:
        ids = service.resend_dead_letters(session, principal, subscription_id)
        if ids:
            _wake_worker(request, session)
        return ResendOut(resent=len(ids), delivery_ids=ids)

    payload: dict[str, Any] = {"subscription_id": subscription_id}
    scope = scope_for("webhooks.resend_dead", principal)
    return Idempotent(session, scope, key, payload).run(run, status_code=200)
