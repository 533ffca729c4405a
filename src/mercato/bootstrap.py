"""The one place that wires the platform, run by every entry point before domain work: the
server (``create_app``), the worker and each ``mercato`` command alike, so a command can do
whatever the server can (void a points payment, tax a cart with the configured provider)
and nothing depends on which entry point ran first.

Every domain declares what it brings in ``mercato/<domain>/manifest.py`` (see
:mod:`mercato.manifest`); :func:`manifests` finds them all, so there is no list of domains
to keep by hand. Two kinds of wiring:

* process-wide (:func:`install`): contributions to extension points (privacy hooks,
  customer timeline sources, payment providers) and set-up that depends on the settings
  (the tax provider ``MERCATO_TAX_PROVIDER`` names);
* per dispatcher (:func:`wire`): the subscriptions and periodic jobs, and reactions that
  keep state per dispatcher (the webhook worker, message senders).

:func:`bootstrap` does both and returns the wired dispatcher. Running it again is
harmless: contributions are installed once, and a dispatcher is wired once.
"""

from __future__ import annotations

import importlib
import pkgutil
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import mercato
from mercato import event_types
from mercato.db import Database
from mercato.event_types import DomainEvent
from mercato.events import Dispatcher
from mercato.manifest import Manifest, Subscription
from mercato.settings import Settings, get_settings, settings_in_force

if TYPE_CHECKING:
    from fastapi import APIRouter

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
    subscriptions and periodic jobs (started by whoever runs it, e.g. the server)."""
    install(settings or get_settings())
    return wire(Dispatcher(database))


@cache
def manifests() -> tuple[Manifest, ...]:
    """Every package's ``MANIFEST`` (the domains', the flows'), in name order."""
    found = []
    for package in packages():
        try:
            module = importlib.import_module(f"mercato.{package}.manifest")
        except ModuleNotFoundError as exc:
            if exc.name != f"mercato.{package}.manifest":
                raise
            continue
        found.append(module.MANIFEST)
    return tuple(sorted(found, key=lambda m: m.name))


@cache
def event_catalog() -> dict[str, type[DomainEvent]]:
    """Every event type Mercato publishes, by name: each package's ``event_types`` (and
    what the manifests bring, such as the merge events every domain follows)."""
    manifests()
    for package in packages():
        _import_if_present(f"mercato.{package}.event_types")
    return event_types.catalog()


def _import_if_present(name: str) -> None:
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise


def _subscribe(dispatcher: Dispatcher, subscription: Subscription) -> None:
    kind = subscription.event
    if isinstance(kind, str):
        dispatcher.subscribe(kind, subscription.handler)
    else:
        dispatcher.subscribe(kind.TYPE, event_types.typed_handler(kind, subscription.handler))


def packages() -> list[str]:
    """The sub-packages of ``mercato`` (domains, flows and infrastructure)."""
    return sorted(info.name for info in pkgutil.iter_modules(mercato.__path__) if info.ispkg)


def routers() -> Sequence[APIRouter]:
    return [router for manifest in manifests() for router in manifest.routers]


def install(settings: Settings) -> None:
    """Process-wide registrations: what domains contribute to each other's extension
    points, and the set-up that follows the settings."""
    for manifest in manifests():
        for contribution in manifest.contributions:
            contribution.point.install(contribution, owner=manifest.name)
        if manifest.configure is not None:
            manifest.configure(settings)


def wire(dispatcher: Dispatcher) -> Dispatcher:
    """Subscribe every domain's reactions and add the periodic jobs (once per dispatcher)."""
    if dispatcher in _wired:
        return dispatcher
    for manifest in manifests():
        for subscription in manifest.subscriptions:
            _subscribe(dispatcher, subscription)
        for job in manifest.jobs:
            if job.run is not None:
                dispatcher.add_periodic(job.name, job.every_seconds, job.run)
            elif job.run_outside is not None:
                dispatcher.add_periodic_work(job.name, job.every_seconds, job.run_outside)
        if manifest.attach is not None:
            manifest.attach(dispatcher)
    _wired.add(dispatcher)
    return dispatcher
