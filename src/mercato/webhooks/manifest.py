"""Signed deliveries of events to integrators."""

from mercato.events import Dispatcher
from mercato.manifest import Manifest
from mercato.webhooks import events
from mercato.webhooks.api import api


def _attach(dispatcher: Dispatcher) -> None:
    events.register(dispatcher)


MANIFEST = Manifest("webhooks", routers=[api], attach=_attach)
