"""Wiring into the outbox dispatcher: fan-out subscriber and the worker's periodic kick."""

from __future__ import annotations

from datetime import timedelta
from weakref import WeakKeyDictionary

from sqlalchemy.orm import Session

from mercato.events import Dispatcher, Event
from mercato.webhooks import service
from mercato.webhooks.config import WebhookConfig
from mercato.webhooks.worker import WAKE_KEY, WebhookWorker

_WORKERS: WeakKeyDictionary[Dispatcher, WebhookWorker] = WeakKeyDictionary()


def register(dispatcher: Dispatcher, config: WebhookConfig | None = None) -> WebhookWorker:
    """Queue a delivery for every committed event a subscription wants, and deliver them.

    The fan-out runs in the dispatcher's transaction that marks the event dispatched, so
    the deliveries are written exactly once per dispatch and never for a rolled-back event.
    The worker starts with the dispatcher's background thread (the first periodic run), so
    a process that does not dispatch events (tests, a CLI command) sends nothing by itself.
    """
    config = config or WebhookConfig()
    worker = WebhookWorker(dispatcher.database, config)
    _WORKERS[dispatcher] = worker

    def fan_out(session: Session, event: Event) -> None:
        if service.enqueue_event(session, event):
            session.info[WAKE_KEY] = worker.kick

    def keep_delivering(_: Session) -> None:
        # Returns at once and never touches the session (so no transaction is opened):
        # the HTTP calls run on the worker's own threads, not the dispatcher's.
        if not config.worker_enabled:
            return
        if worker.running:
            worker.kick()
        else:
            worker.start()

    def purge(session: Session) -> None:
        service.purge_delivered(session, timedelta(days=config.retention_days))

    dispatcher.subscribe("*", fan_out)
    dispatcher.add_periodic("webhook-deliveries", config.poll_seconds, keep_delivering)
    dispatcher.add_periodic("webhook-retention", 3600.0, purge)
    return worker


def worker_for(dispatcher: Dispatcher) -> WebhookWorker | None:
    """The worker :func:`register` attached to this dispatcher (the app's one)."""
    return _WORKERS.get(dispatcher)
