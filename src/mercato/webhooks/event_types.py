"""The webhooks domain's own event."""

from __future__ import annotations

from dataclasses import dataclass

from mercato.event_types import DomainEvent


@dataclass(frozen=True, kw_only=True)
class WebhookTest(DomainEvent):
    """Sent only by ``POST /subscriptions/{id}/test``, only to that subscription, whatever
    its event types."""

    TYPE = "webhook.test"
    AGGREGATE = "webhook_subscription"
    KEY = "subscription_id"

    subscription_id: int
    message: str = "Test event from Mercato"
