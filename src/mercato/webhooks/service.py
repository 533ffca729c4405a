"""Webhook subscriptions and their deliveries: the only code that changes them.

Deliveries are created here (``enqueue_event``, called by the outbox subscriber in the
transaction that marks the event dispatched) and re-queued here (re-send, test event);
the worker (``worker.py``) claims them, calls the receivers and records the results.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.auth.service import audit
from mercato.db import get_or_404, utcnow
from mercato.errors import FieldError, UnprocessableState, ValidationProblem
from mercato.events import Event
from mercato.pagination import Page, decode_cursor, page_of
from mercato.webhooks import signing, targets
from mercato.webhooks.config import private_targets_allowed
from mercato.webhooks.event_types import WebhookTest
from mercato.webhooks.models import (
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookSubscription,
)
from mercato.webhooks.schemas import MAX_URL_LENGTH, SubscriptionIn, SubscriptionPatch

TEST_EVENT_TYPE = WebhookTest.TYPE
_PATTERN = re.compile(r"\*|[a-z0-9_]+(\.[a-z0-9_]+)*(\.\*)?")
_SUBSCRIPTIONS_CACHE = "mercato_webhook_subscriptions"


# --- validation ---------------------------------------------------------------------------


def check_url(url: str, field: str = "body.url", *, allow_private: bool | None = None) -> str:
    """An absolute http(s) URL with a host and no credentials, not naming a loopback,
    private, link-local or metadata address (unless the setting allows them); anything
    else is a 422. Names are resolved and checked at each delivery (``targets``)."""
    url = url.strip()
    if not url or len(url) > MAX_URL_LENGTH:
        raise ValidationProblem.field(field, f"1 to {MAX_URL_LENGTH} characters")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise ValidationProblem.field(field, "must not contain spaces or control characters")
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise ValidationProblem.field(field, "must be an absolute http:// or https:// URL")
    if "@" in parts.netloc:
        # Receivers authenticate Mercato by the signature; credentials in URLs leak in logs.
        raise ValidationProblem.field(field, "must not contain credentials (user:password@)")
    if not parts.hostname:
        raise ValidationProblem.field(field, "must name a host")
    try:
        parts.port  # noqa: B018 - urlsplit validates the port lazily
    except ValueError as exc:
        raise ValidationProblem.field(field, "has an invalid port") from exc
    if parts.fragment:
        raise ValidationProblem.field(field, "must not contain a #fragment (it is never sent)")
    allowed = private_targets_allowed() if allow_private is None else allow_private
    refused = None if allowed else targets.literal_refusal(parts.hostname)
    if refused is not None:
        raise ValidationProblem.field(
            field,
            f"must be a public address: {refused} (MERCATO_WEBHOOKS_ALLOW_PRIVATE_TARGETS "
            "allows such targets for local development)",
        )
    return url


def check_event_types(patterns: Sequence[str], field: str = "body.event_types") -> list[str]:
    """Validated patterns, duplicates dropped, order kept."""
    errors = [
        FieldError(f"{field}[{i}]", 'an event type ("order.placed"), a prefix ("order.*") or "*"')
        for i, p in enumerate(patterns)
        if len(p) > 80 or not _PATTERN.fullmatch(p)
    ]
    if errors:
        raise ValidationProblem(
            "; ".join(f"{e['field']}: {e['reason']}" for e in errors), errors=errors
        )
    if not patterns:
        raise ValidationProblem.field(field, "at least one event type")
    return list(dict.fromkeys(patterns))


def matches(patterns: Sequence[str], event_type: str) -> bool:
    """Same rule as the in-process dispatcher: exact, ``prefix.*`` or ``*``."""
    for pattern in patterns:
        if pattern == "*" or pattern == event_type:
            return True
        if pattern.endswith(".*") and event_type.startswith(pattern[:-1]):
            return True
    return False


# --- subscriptions ------------------------------------------------------------------------


def snapshot(subscription: WebhookSubscription) -> dict[str, Any]:
    """What the audit log records: never the secret."""
    return {
        "url": subscription.url,
        "event_types": list(subscription.event_types),
        "description": subscription.description,
        "active": subscription.active,
    }


def create_subscription(
    session: Session, actor: Principal, data: SubscriptionIn
) -> tuple[WebhookSubscription, str]:
    """A new subscription and its secret (in clear: the only time it is available)."""
    url = check_url(data.url)
    patterns = check_event_types(data.event_types)
    secret = signing.generate_secret()
    now = utcnow()
    subscription = WebhookSubscription(
        url=url,
        event_types=patterns,
        description=data.description,
        active=data.active,
        secret_sealed=signing.seal(secret),
        secret_hint=signing.secret_hint(secret),
        created_at=now,
        updated_at=now,
    )
    session.add(subscription)
    session.flush()
    audit(
        session,
        actor,
        "webhook_subscription.created",
        "webhook_subscription",
        subscription.id,
        snapshot(subscription),
    )
    return subscription, secret


def get_subscription(session: Session, subscription_id: int) -> WebhookSubscription:
    return get_or_404(
        session, WebhookSubscription, subscription_id, f"webhook subscription {subscription_id}"
    )


def list_subscriptions(
    session: Session,
    *,
    active: bool | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[WebhookSubscription]:
    query = select(WebhookSubscription).order_by(WebhookSubscription.id)
    if active is not None:
        query = query.where(WebhookSubscription.active.is_(active))
    after = _int_cursor(cursor)
    if after is not None:
        query = query.where(WebhookSubscription.id > after)
    return page_of(list(session.scalars(query.limit(limit + 1))), limit, key=lambda x: x.id)


def update_subscription(
    session: Session, actor: Principal, subscription_id: int, patch: SubscriptionPatch
) -> WebhookSubscription:
    subscription = get_subscription(session, subscription_id)
    given = patch.model_fields_set
    for name in ("url", "event_types", "active"):
        if name in given and getattr(patch, name) is None:
            raise ValidationProblem.field(f"body.{name}", "may not be null")
    changes: dict[str, Any] = {}
    if patch.url is not None:
        changes["url"] = check_url(patch.url)
    if patch.event_types is not None:
        changes["event_types"] = check_event_types(patch.event_types)
    if patch.active is not None:
        changes["active"] = patch.active
    if "description" in given:
        changes["description"] = patch.description
    before = snapshot(subscription)
    changes = {k: v for k, v in changes.items() if before[k] != v}
    if changes:
        for name, value in changes.items():
            setattr(subscription, name, value)
        subscription.updated_at = utcnow()
        session.flush()
        audit(
            session,
            actor,
            "webhook_subscription.updated",
            "webhook_subscription",
            subscription.id,
            {k: {"from": before[k], "to": v} for k, v in changes.items()},
        )
    return subscription


def delete_subscription(session: Session, actor: Principal, subscription_id: int) -> None:
    """Deletes the subscription with its deliveries and their history."""
    subscription = get_subscription(session, subscription_id)
    gone = snapshot(subscription)
    deliveries = select(WebhookDelivery.id).where(
        WebhookDelivery.subscription_id == subscription_id
    )
    # Explicit deletes rather than relying on ON DELETE CASCADE being enforced everywhere.
    session.execute(delete(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(deliveries)))
    session.execute(
        delete(WebhookDelivery).where(WebhookDelivery.subscription_id == subscription_id)
    )
    session.delete(subscription)
    session.flush()
    audit(
        session,
        actor,
        "webhook_subscription.deleted",
        "webhook_subscription",
        subscription_id,
        gone,
    )


def rotate_secret(
    session: Session, actor: Principal, subscription_id: int, keep_previous: timedelta
) -> tuple[WebhookSubscription, str]:
    """A new secret; the old one keeps signing (a second ``v1``) for ``keep_previous``."""
    subscription = get_subscription(session, subscription_id)
    secret = signing.generate_secret()
    now = utcnow()
    if keep_previous > timedelta(0):
        subscription.previous_secret_sealed = subscription.secret_sealed
        subscription.previous_secret_expires_at = now + keep_previous
    else:
        subscription.previous_secret_sealed = None
        subscription.previous_secret_expires_at = None
    subscription.secret_sealed = signing.seal(secret)
    subscription.secret_hint = signing.secret_hint(secret)
    subscription.updated_at = now
    session.flush()
    audit(
        session,
        actor,
        "webhook_subscription.secret_rotated",
        "webhook_subscription",
        subscription.id,
        {"keep_previous_hours": keep_previous.total_seconds() / 3600},
    )
    return subscription, secret


# --- deliveries ---------------------------------------------------------------------------


def envelope_body(envelope: dict[str, Any]) -> str:
    """The JSON text sent to receivers (compact, UTF-8, stable across retries)."""
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False, default=str)


def parse_body(body: str) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(body)
    return parsed


def _active_subscriptions(session: Session) -> list[tuple[int, list[str]]]:
    # The dispatcher hands a whole batch of events to one session: read once per batch.
    cached: list[tuple[int, list[str]]] | None = session.info.get(_SUBSCRIPTIONS_CACHE)
    if cached is None:
        rows = session.execute(
            select(WebhookSubscription.id, WebhookSubscription.event_types).where(
                WebhookSubscription.active.is_(True)
            )
        ).all()
        cached = [(int(r.id), list(r.event_types)) for r in rows]
        session.info[_SUBSCRIPTIONS_CACHE] = cached
    return cached


def _insert_ignoring_duplicates(session: Session, rows: list[dict[str, Any]]) -> None:
    maker = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(
        maker(WebhookDelivery)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["subscription_id", "event_id"])
    )


def enqueue_event(session: Session, event: Event) -> int:
    """One delivery per matching active subscription; a re-dispatched event adds none.

    Runs in the dispatcher's transaction, so the deliveries exist exactly when the event
    is marked dispatched: a crash in between leaves the event to be dispatched again.
    """
    targets = [
        sid for sid, patterns in _active_subscriptions(session) if matches(patterns, event.type)
    ]
    if not targets:
        return 0
    body = envelope_body(event.envelope())
    now = utcnow()
    _insert_ignoring_duplicates(
        session,
        [_new_delivery(sid, event.id, event.type, body, now) for sid in targets],
    )
    return len(targets)


def _new_delivery(
    subscription_id: int, event_id: str, event_type: str, body: str, now: datetime
) -> dict[str, Any]:
    return {
        "subscription_id": subscription_id,
        "event_id": event_id,
        "event_type": event_type,
        "body": body,
        "status": DeliveryStatus.PENDING.value,
        "attempts": 0,
        "total_attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }


def send_test_event(session: Session, actor: Principal, subscription_id: int) -> WebhookDelivery:
    """A ``webhook.test`` delivery to this subscription only, whatever its event types."""
    subscription = get_subscription(session, subscription_id)
    if not subscription.active:
        raise UnprocessableState(
            "the subscription is paused: activate it to send a test event",
            code="webhook-subscription-inactive",
        )
    now = utcnow()
    event_id = str(uuid.uuid4())
    test_event = WebhookTest(subscription_id=subscription.id)
    envelope = {
        "id": event_id,
        "type": test_event.TYPE,
        "time": now.isoformat(),
        "version": test_event.VERSION,
        "data": test_event.data(),
    }
    delivery = WebhookDelivery(
        **_new_delivery(subscription.id, event_id, TEST_EVENT_TYPE, envelope_body(envelope), now)
    )
    session.add(delivery)
    session.flush()
    audit(
        session,
        actor,
        "webhook_subscription.test_sent",
        "webhook_subscription",
        subscription.id,
        {"delivery_id": delivery.id},
    )
    return delivery


def _requeue_values(now: datetime) -> dict[str, Any]:
    return {
        "status": DeliveryStatus.PENDING.value,
        "attempts": 0,
        "next_attempt_at": now,
        "claimed_until": None,
        "claim_token": None,
        "dead_at": None,
    }


def resend_delivery(session: Session, actor: Principal, delivery_id: int) -> WebhookDelivery:
    """Queue a delivery again now (dead, delivered, or waiting for a retry) with fresh attempts.

    A delivery a worker is sending right now is a 409: its result is about to be recorded.
    """
    delivery = get_delivery(session, delivery_id)
    now = utcnow()
    requeued = session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery_id,
            or_(
                WebhookDelivery.status != DeliveryStatus.PENDING.value,
                WebhookDelivery.claimed_until.is_(None),
                WebhookDelivery.claimed_until < now,
            ),
        )
        .values(**_requeue_values(now))
        .returning(WebhookDelivery.id)
    ).first()
    if requeued is None:
        raise UnprocessableState(
            "this delivery is being sent right now; try again in a moment",
            code="webhook-delivery-in-flight",
        )
    session.refresh(delivery)
    audit(
        session,
        actor,
        "webhook_delivery.resent",
        "webhook_delivery",
        delivery.id,
        {"event_id": delivery.event_id},
    )
    return delivery


def resend_dead_letters(session: Session, actor: Principal, subscription_id: int) -> list[int]:
    """Queue every dead letter of a subscription again; returns their ids."""
    get_subscription(session, subscription_id)
    now = utcnow()
    ids = sorted(
        session.scalars(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.subscription_id == subscription_id,
                WebhookDelivery.status == DeliveryStatus.DEAD.value,
            )
            .values(**_requeue_values(now))
            .returning(WebhookDelivery.id)
        ).all()
    )
    if ids:
        audit(
            session,
            actor,
            "webhook_subscription.dead_letters_resent",
            "webhook_subscription",
            subscription_id,
            {"count": len(ids)},
        )
    return ids


def get_delivery(session: Session, delivery_id: int) -> WebhookDelivery:
    return get_or_404(session, WebhookDelivery, delivery_id, f"webhook delivery {delivery_id}")


def delivery_history(session: Session, delivery_id: int) -> list[WebhookAttempt]:
    return list(
        session.scalars(
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id == delivery_id)
            .order_by(WebhookAttempt.number)
        )
    )


def list_deliveries(
    session: Session,
    *,
    subscription_id: int | None = None,
    status: DeliveryStatus | None = None,
    event_type: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[WebhookDelivery]:
    """Newest first."""
    query = select(WebhookDelivery).order_by(WebhookDelivery.id.desc())
    if subscription_id is not None:
        query = query.where(WebhookDelivery.subscription_id == subscription_id)
    if status is not None:
        query = query.where(WebhookDelivery.status == status.value)
    if event_type:
        query = query.where(WebhookDelivery.event_type == event_type)
    before = _int_cursor(cursor)
    if before is not None:
        query = query.where(WebhookDelivery.id < before)
    return page_of(list(session.scalars(query.limit(limit + 1))), limit, key=lambda x: x.id)


def purge_delivered(session: Session, older_than: timedelta) -> int:
    """Delete delivered rows (and their history) older than the retention period."""
    cutoff = utcnow() - older_than
    old = select(WebhookDelivery.id).where(
        WebhookDelivery.status == DeliveryStatus.DELIVERED.value,
        WebhookDelivery.delivered_at < cutoff,
    )
    session.execute(delete(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(old)))
    result = session.execute(
        delete(WebhookDelivery).where(
            WebhookDelivery.status == DeliveryStatus.DELIVERED.value,
            WebhookDelivery.delivered_at < cutoff,
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


def _int_cursor(cursor: str | None) -> int | None:
    value = decode_cursor(cursor)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValidationProblem.field("query.cursor", "not a cursor returned by this API")
    return value
