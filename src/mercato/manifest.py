"""What a domain brings to the platform, declared in one place: ``mercato/<domain>/manifest.py``.

Each domain (and the flows layer) has a ``manifest`` module with one :class:`Manifest`
named ``MANIFEST``: its routers, the events it reacts to, its periodic jobs and what it
contributes to other domains' extension points (privacy hooks, customer timeline sources,
payment providers). ``mercato.bootstrap`` finds every manifest and is the one place that
wires them, for the server, the worker and every command alike; nothing depends on which
entry point ran first, and there is no hand-kept list of domains anywhere.

An :class:`ExtensionPoint` is owned by the domain that calls what is registered in it
(``customers.timeline.SOURCES``, ``personal_data.DOMAINS``,
``payments.providers.PROVIDERS``); other domains contribute to it from their manifest,
so the owner never imports them. Two different contributions under one key are an error
at start-up, not a silent override.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from mercato.event_types import DomainEvent

if TYPE_CHECKING:
    from fastapi import APIRouter
    from sqlalchemy.orm import Session

    from mercato.db import Database
    from mercato.events import Dispatcher
    from mercato.settings import Settings

T = TypeVar("T")


class DuplicateExtension(RuntimeError):
    """Two domains contributed different things under one name of an extension point."""


@dataclass(frozen=True)
class Contribution(Generic[T]):
    point: ExtensionPoint[T]
    key: str
    value: T


class ExtensionPoint(Generic[T]):
    """A named registry the owning domain reads and other domains contribute to."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._entries: dict[str, T] = {}
        self._owners: dict[str, str] = {}

    def __call__(self, key: str, value: T) -> Contribution[T]:
        """A contribution for a manifest's ``contributions``."""
        return Contribution(self, key, value)

    def install(self, contribution: Contribution[T], owner: str) -> None:
        """Add a manifest's contribution; the same one again is harmless."""
        key, value = contribution.key, contribution.value
        current = self._entries.get(key)
        if current is not None and current is not value and self._owners.get(key) != owner:
            raise DuplicateExtension(
                f"{self.name}: {owner} contributes {key!r}, already contributed by "
                f"{self._owners.get(key)}"
            )
        self._entries[key] = value
        self._owners[key] = owner

    def replace(self, key: str, value: T) -> T | None:
        """Put ``value`` under ``key`` on purpose (a plug-in's adapter, a test's stand-in);
        returns what was there."""
        previous = self._entries.get(key)
        self._entries[key] = value
        self._owners.setdefault(key, "replaced")
        return previous

    def remove(self, key: str) -> None:
        self._entries.pop(key, None)
        self._owners.pop(key, None)

    # As a mapping, so a test can swap an entry for its duration (``monkeypatch.setitem``).
    def __setitem__(self, key: str, value: T) -> None:
        self.replace(key, value)

    def __delitem__(self, key: str) -> None:
        self.remove(key)

    def get(self, key: str, default: T | None = None) -> T | None:
        return self._entries.get(key, default)

    def __getitem__(self, key: str) -> T:
        return self._entries[key]

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def items(self) -> list[tuple[str, T]]:
        return [(key, self._entries[key]) for key in sorted(self._entries)]


@dataclass(frozen=True)
class Subscription:
    """React to an event type (its class, from the catalog in :mod:`mercato.event_types`:
    the handler receives an instance of it), or to every event (``"*"``: the handler
    receives the envelope, for consumers that forward events without reading them)."""

    event: type[DomainEvent] | str
    handler: Callable[[Session, Any], None]

    def __post_init__(self) -> None:
        if isinstance(self.event, str) and self.event != "*":
            raise ValueError(
                f"subscribe to an event class, not the name {self.event!r} "
                "(mercato.event_types.type_named finds the class of a name)"
            )


@dataclass(frozen=True)
class Job:
    """Work the dispatcher runs about every ``every_seconds``, in several processes at once
    safely (conditional updates). ``run`` gets a transaction of its own; ``run_outside``
    gets the database instead, for work that calls outside services (captures, refunds)
    and must open its own short transactions around them."""

    name: str
    every_seconds: float
    run: Callable[[Session], object] | None = None
    run_outside: Callable[[Database], object] | None = None

    def __post_init__(self) -> None:
        if (self.run is None) == (self.run_outside is None):
            raise ValueError(f"job {self.name}: give exactly one of run and run_outside")


@dataclass(frozen=True)
class Manifest:
    """Everything a domain wires into the platform."""

    name: str
    routers: Sequence[APIRouter] = ()
    subscriptions: Sequence[Subscription] = ()
    jobs: Sequence[Job] = ()
    contributions: Sequence[Contribution[Any]] = ()
    # Process-wide set-up that depends on the settings (e.g. the tax provider setting).
    configure: Callable[[Settings], None] | None = None
    # Reactions that keep state per dispatcher (the webhook worker, message senders).
    attach: Callable[[Dispatcher], None] | None = None
