"""The orders domain's reactions to other domains' events."""

from __future__ import annotations

from sqlalchemy.orm import Session

from mercato.fulfillment.event_types import TaskCreated
from mercato.orders import service


def on_task_created(session: Session, event: TaskCreated) -> None:
    """A location got work for the order: the order search by location finds it there."""
    service.record_location(session, event.order_id, event.location_id)
