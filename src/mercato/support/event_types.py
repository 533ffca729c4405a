"""The support domain's events: cases opened, changed, assigned, moved through their
statuses and rated; messages added; service levels missed.

No event carries a case's subject, a message's text or the contact's details: a consumer
reads them through the API with its own permissions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from mercato.event_types import DomainEvent


@dataclass(frozen=True, kw_only=True)
class CaseFacts(DomainEvent):
    """What every support event says about the case."""

    AGGREGATE = "support_case"
    KEY = "case_id"

    case_id: int
    number: str
    customer_id: int | None
    channel_id: int | None
    source: str
    status: str
    priority: str
    assignee_id: int | None


@dataclass(frozen=True, kw_only=True)
class CaseOpened(CaseFacts):
    """A support case was opened (``order_ids``: the orders it is about)."""

    TYPE = "support.case_opened"

    order_ids: tuple[int, ...]
    tags: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class CaseUpdated(CaseFacts):
    """Staff changed a case's fields (``changes`` names them) or linked an order to it."""

    TYPE = "support.case_updated"

    changes: tuple[str, ...]
    # The order linked, when ``changes`` is ``["orders"]``.
    order_id: int | None = None


@dataclass(frozen=True, kw_only=True)
class CaseAssigned(CaseFacts):
    """The case has a new assignee (``assignee_id``; null when unassigned)."""

    TYPE = "support.case_assigned"

    previous_assignee_id: int | None


@dataclass(frozen=True, kw_only=True)
class CaseStatusChanged(CaseFacts):
    """The case moved from ``from_status`` to ``to_status`` (``open``, ``pending_customer``,
    ``resolved``, ``closed``)."""

    TYPE = "support.case_status_changed"

    from_status: str
    to_status: str
    actor_type: str


@dataclass(frozen=True, kw_only=True)
class CaseMessageAdded(CaseFacts):
    """A message was added to the case's thread (inbound, a reply, or an internal note)."""

    TYPE = "support.message_added"

    message_id: int
    direction: str
    channel: str
    author_type: str
    attachments: int  # how many


@dataclass(frozen=True, kw_only=True)
class CaseRated(CaseFacts):
    """The customer rated a closed case (1 to 5; ``commented``: they also wrote a comment)."""

    TYPE = "support.case_rated"

    satisfaction: int
    commented: bool


@dataclass(frozen=True, kw_only=True)
class SlaBreached(CaseFacts):
    """A case missed its first response or resolution time (``kind``), due at ``due_at``."""

    TYPE = "support.sla_breached"

    kind: str  # first_response | resolution
    due_at: datetime
