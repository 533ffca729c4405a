"""The support domain's background work, registered with the event dispatcher."""

from __future__ import annotations

from mercato.events import Dispatcher
from mercato.support import service

SLA_CHECK_SECONDS = 60.0


def register(dispatcher: Dispatcher) -> None:
    dispatcher.add_periodic(
        "support-sla-breaches",
        SLA_CHECK_SECONDS,
        lambda session: service.mark_sla_breaches(session),
    )
