"""The marketing domain's events: consent given or withdrawn, offers and messages sent."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from mercato.event_types import DomainEvent


@dataclass(frozen=True, kw_only=True)
class ConsentChanged(DomainEvent):
    """A customer gave or withdrew consent for a purpose (and channel); append-only."""

    TYPE = "consent.changed"
    AGGREGATE = "customer"

    consent_id: int
    customer_id: int
    purpose: str
    channel_id: int | None
    granted: bool
    previous_granted: bool | None
    source: str
    source_channel_id: int | None
    wording_version: str
    recorded_at: datetime


@dataclass(frozen=True, kw_only=True)
class OfferIssued(DomainEvent):
    """An offer rule gave a customer a personal code and queued the message telling them."""

    TYPE = "marketing.offer_issued"
    AGGREGATE = "customer"

    rule_id: int
    run_id: int
    customer_id: int
    promotion_id: int | None
    code_id: int
    expires_at: datetime | None
    message_id: int


@dataclass(frozen=True, kw_only=True)
class MessageFacts(DomainEvent):
    AGGREGATE = "customer"

    message_id: int
    customer_id: int | None
    channel: str
    template: str
    status: str
    reference_type: str | None
    reference_id: str | None

    def aggregate_id(self) -> str | int | None:
        # A guest's service message has no profile to hang on: it stands alone.
        return self.customer_id if self.customer_id is not None else self.message_id

    def aggregate_kind(self) -> str:
        return "customer" if self.customer_id is not None else "message"


@dataclass(frozen=True, kw_only=True)
class MessageSent(MessageFacts):
    """A message (email, SMS) was handed to the mail server or gateway."""

    TYPE = "marketing.message_sent"


@dataclass(frozen=True, kw_only=True)
class MessageFailed(MessageFacts):
    """A message could not be sent after its attempts."""

    TYPE = "marketing.message_failed"
