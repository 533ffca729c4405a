"""The wiring every entry point runs before domain work: the server (``create_app``) and
each ``mercato`` command alike, so a command can do whatever the server can (void a points
payment, tax a cart with the configured provider).

Two kinds of registration:

* process-wide (:func:`install`): payment providers beyond the built-in ones (loyalty
  points) and the tax provider ``MERCATO_TAX_PROVIDER`` names;
* per dispatcher (:func:`wire`): the subscribers of cross-domain events and the periodic
  jobs.

:func:`bootstrap` does both and returns the wired dispatcher. Running it again is
harmless: providers are replaced by the same ones, and a dispatcher is wired once.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.orm import Session

from mercato.db import Database
from mercato.events import Dispatcher, Event
from mercato.settings import Settings, get_settings, settings_in_force

_wired: weakref.WeakSet[Dispatcher] = weakref.WeakSet()


@contextmanager
def command_settings(
    database_url: str | None = None, data_dir: Path | None = None
) -> Iterator[Settings]:
    """A command's settings: the options given (``--database-url``, ``--data-dir``) over
    the environment, in force for the whole process while the command runs (see
    ``settings_in_force``)."""
    values: dict[str, object] = {}
    if database_url:
        values["database_url"] = database_url
    if data_dir is not None:
        values["data_dir"] = data_dir.resolve()
    with settings_in_force(**values) as settings:
        yield settings


@contextmanager
def command_database(settings: Settings) -> Iterator[Database]:
    """The database of a command doing domain work, with every registration the server
    has; disposed afterwards."""
    database = open_database(settings)
    try:
        bootstrap(database, settings)
        yield database
    finally:
        database.dispose()


def open_database(settings: Settings) -> Database:
    """The database the settings name; the data directory is made only when it holds it."""
    if not settings.database_url:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    return Database(settings.resolved_database_url(), echo=settings.sql_echo)


def bootstrap(database: Database, settings: Settings | None = None) -> Dispatcher:
    """Every registration of the platform, and a dispatcher for ``database`` wired with the
    subscribers and periodic jobs (started by whoever runs it, e.g. the server)."""
    install(settings or get_settings())
    return wire(Dispatcher(database))


def install(settings: Settings) -> None:
    """Process-wide registrations: the payment providers domains add, the tax provider."""
    from mercato.carts import service as carts
    from mercato.loyalty import provider as loyalty_provider

    loyalty_provider.register()
    carts.configure_tax_provider(settings.tax_provider)


def wire(dispatcher: Dispatcher) -> Dispatcher:
    """Subscribe every domain's reactions and add the periodic jobs (once per dispatcher)."""
    if dispatcher not in _wired:
        _subscribe(dispatcher)
        _wired.add(dispatcher)
    return dispatcher


def _subscribe(dispatcher: Dispatcher) -> None:
    """Cross-domain reactions go through events; domains add their handlers here."""
    from mercato.auth import throttle
    from mercato.carts import customer_links as cart_links
    from mercato.channels import service as channels
    from mercato.checkout import service as checkout
    from mercato.customers import subscribers as customer_subscribers
    from mercato.fulfillment import events as fulfillment_events
    from mercato.inventory import service as inventory
    from mercato.loyalty import customer_links as loyalty_links
    from mercato.loyalty import events as loyalty_events
    from mercato.marketing import customer_links as marketing_links
    from mercato.marketing import events as marketing_events
    from mercato.orders import customer_links as order_links
    from mercato.orders import subscribers as order_subscribers
    from mercato.payments import customer_links as payment_links
    from mercato.promotions import customer_links as promotion_links
    from mercato.returns import customer_links as return_links
    from mercato.returns import subscribers as return_subscribers
    from mercato.support import customer_links as support_links
    from mercato.support import events as support_events
    from mercato.webhooks import events as webhook_events

    dispatcher.add_periodic("expire-holds", 15.0, lambda session: inventory.expire_holds(session))
    dispatcher.add_periodic("prune-auth-throttles", 3600.0, throttle.prune)
    checkout.install(dispatcher)  # the abandoned-checkout and compensation jobs

    def location_changed(session: Session, event: Event) -> None:
        channels.refresh_ship_origins(session, int(event.data["id"]))

    dispatcher.subscribe("location.created", location_changed)
    dispatcher.subscribe("location.updated", location_changed)
    customer_subscribers.register(dispatcher)
    order_subscribers.register(dispatcher)
    for links in (
        order_links,
        cart_links,
        payment_links,
        marketing_links,
        support_links,
        loyalty_links,
        return_links,
        promotion_links,
    ):
        links.register_subscribers(dispatcher)
    marketing_events.register(dispatcher)
    support_events.register(dispatcher)
    fulfillment_events.register(dispatcher)
    webhook_events.register(dispatcher)
    loyalty_events.register(dispatcher)
    return_subscribers.register(dispatcher)
