"""The facts every event of a case carries (:mod:`mercato.support.event_types`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from mercato.events import publish
from mercato.support.event_types import SlaBreached
from mercato.support.models import SupportCase


def case_event(case: SupportCase) -> dict[str, Any]:
    """What every support event carries: no subject, no message text, no contact data."""
    return {
        "case_id": case.id,
        "number": case.number,
        "customer_id": case.customer_id,
        "channel_id": case.channel_id,
        "source": case.source,
        "status": case.status,
        "priority": case.priority,
        "assignee_id": case.assignee_id,
    }


def breach_event(session: Session, case: SupportCase, kind: str, due: datetime) -> None:
    publish(session, SlaBreached(**case_event(case), kind=kind, due_at=due))
