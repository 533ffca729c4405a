"""The orders domain's reactions to other domains' events."""

from __future__ import annotations

from sqlalchemy.orm import Session

from mercato.events import Event
from mercato.orders import service


def on_task_created(session: Session, event: Event) -> None:
    """A location got work for the order: the order search by location finds it there."""
    service.record_location(session, int(event.data["order_id"]), int(event.data["location_id"]))
