"""Background work of the marketing domain, registered with the app's dispatcher."""

from __future__ import annotations

from collections.abc import Mapping

from mercato.db import Database
from mercato.events import Dispatcher
from mercato.marketing import notifier
from mercato.settings import get_settings

DELIVERY_INTERVAL_SECONDS = 10.0


def register(
    dispatcher: Dispatcher,
    notifiers: Mapping[notifier.MessageChannel, notifier.Notifier] | None = None,
) -> None:
    """Deliver queued messages periodically with the configured senders (SMTP when the
    ``MERCATO_SMTP_*`` settings are set); without senders messages wait in the outbox."""
    senders = (
        dict(notifiers) if notifiers is not None else notifier.configured_notifiers(get_settings())
    )
    if not senders:
        return

    def deliver(database: Database) -> None:
        # No transaction is open around the job: sending must not hold one (on SQLite, the
        # write lock) across network calls; deliver_queued opens short ones of its own.
        notifier.deliver_queued(database, senders)

    dispatcher.add_periodic_work("marketing-deliver-messages", DELIVERY_INTERVAL_SECONDS, deliver)
