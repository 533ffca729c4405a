"""The channels domain's reactions to other domains' events."""

from __future__ import annotations

from sqlalchemy.orm import Session

from mercato.channels import service
from mercato.locations.event_types import LocationFacts


def on_location_changed(session: Session, event: LocationFacts) -> None:
    service.refresh_ship_origins(session, event.id)
