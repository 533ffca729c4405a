"""The returns domain's reactions to other domains' events."""

from __future__ import annotations

from mercato.events import Dispatcher
from mercato.returns import service


def register(dispatcher: Dispatcher) -> None:
    """Learn when orders reach their customers: the return window counts from then."""
    for event_type in service.FULFILMENT_EVENTS:
        dispatcher.subscribe(event_type, service.record_fulfilment)
