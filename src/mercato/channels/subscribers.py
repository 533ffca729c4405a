"""The channels domain's reactions to other domains' events."""

from __future__ import annotations

from sqlalchemy.orm import Session

from mercato.channels import service
from mercato.events import Event


def on_location_changed(session: Session, event: Event) -> None:
    service.refresh_ship_origins(session, int(event.data["id"]))
