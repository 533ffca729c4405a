from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from mercato.schemas import ResponseModel, StrictModel

MAX_URL_LENGTH = 2000
MAX_EVENT_TYPES = 50

EventTypes = Field(
    min_length=1,
    max_length=MAX_EVENT_TYPES,
    description='Exact types ("order.placed"), prefixes ("order.*") or "*" for every event',
)


class SubscriptionIn(StrictModel):
    url: str = Field(
        max_length=MAX_URL_LENGTH, description="http:// or https:// endpoint, no credentials"
    )
    event_types: list[str] = EventTypes
    description: str | None = Field(default=None, max_length=500)
    active: bool = True


class SubscriptionPatch(StrictModel):
    url: str | None = Field(default=None, max_length=MAX_URL_LENGTH)
    event_types: list[str] | None = Field(default=None, min_length=1, max_length=MAX_EVENT_TYPES)
    description: str | None = Field(default=None, max_length=500)
    active: bool | None = None


class RotateSecretIn(StrictModel):
    keep_previous_hours: int = Field(
        default=24,
        ge=0,
        le=168,
        description="Hours during which deliveries are signed with the old secret as well",
    )


class SubscriptionOut(ResponseModel):
    id: int
    url: str
    event_types: list[str]
    description: str | None
    active: bool
    secret_hint: str
    previous_secret_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime


class SubscriptionWithSecret(SubscriptionOut):
    secret: str = Field(description="Shown only in this answer: store it now")


class SubscriptionPage(ResponseModel):
    items: list[SubscriptionOut]
    next_cursor: str | None = None


class DeliveryOut(ResponseModel):
    id: int
    subscription_id: int
    event_id: str
    event_type: str
    status: str
    in_flight: bool = Field(description="A worker holds it and is sending it now")
    attempts: int = Field(description="Attempts since it was created or last re-sent")
    total_attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None
    dead_at: datetime | None
    created_at: datetime


class AttemptOut(ResponseModel):
    number: int
    started_at: datetime
    duration_ms: int
    succeeded: bool
    status_code: int | None
    error: str | None


class DeliveryDetail(DeliveryOut):
    payload: dict[str, Any] = Field(description="The envelope exactly as it is sent")
    history: list[AttemptOut]


class DeliveryPage(ResponseModel):
    items: list[DeliveryOut]
    next_cursor: str | None = None


class ResendOut(ResponseModel):
    resent: int
    delivery_ids: list[int]
