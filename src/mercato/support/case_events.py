"""The events every change of a case publishes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from mercato.events import publish
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


def publish_case(session: Session, type_: str, case: SupportCase, **extra: Any) -> None:
    publish(
        session,
        type_,
        {**case_event(case), **extra},
        aggregate_type="support_case",
        aggregate_id=case.id,
    )


def breach_event(session: Session, case: SupportCase, kind: str, due: datetime) -> None:
    publish_case(session, "support.sla_breached", case, kind=kind, due_at=due.isoformat())
