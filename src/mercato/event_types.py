"""The event catalog: every event Mercato publishes is a frozen dataclass.

A domain declares its events in ``<domain>/event_types.py``::

    @dataclass(frozen=True, kw_only=True)
    class OrderConfirmed(OrderFacts):
        '''The order is paid (or needs no payment) and goes to routing.'''

        TYPE = "order.confirmed"

and publishes them with ``publish(session, OrderConfirmed(order_id=..., ...))``. The
class gives the event its name (``TYPE``), its version (``VERSION``, raised when a field
changes incompatibly), the aggregate it belongs to (``AGGREGATE``; its id is the field
``KEY``) and typed fields. Subscribers subscribe by class and receive an instance
(``Subscription(OrderConfirmed, on_order_confirmed)``); webhook consumers receive
:meth:`DomainEvent.data`, the fields as JSON (decimals as strings, times in ISO 8601).
The webhook documentation's list of events is generated from this catalog.

Events carry ids and non-personal facts: a consumer that needs a name or an address asks
for it with the id, under its own permissions.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any, ClassVar, Self, TypeVar, get_args, get_origin, get_type_hints

_CATALOG: dict[str, type[DomainEvent]] = {}

E = TypeVar("E", bound="DomainEvent")


@dataclasses.dataclass(frozen=True)
class EventMeta:
    """The envelope an event arrived in: for handlers that key their work on the event."""

    id: str
    time: datetime
    version: int


def json_key(name: str) -> dict[str, str]:
    """Field metadata for a JSON key that is not a Python name (``from``, ``to``)."""
    return {"json": name}


@dataclasses.dataclass(frozen=True, kw_only=True)
class DomainEvent:
    """Base of every event type. Subclasses without ``TYPE`` are shared field sets."""

    TYPE: ClassVar[str]
    VERSION: ClassVar[int] = 1
    AGGREGATE: ClassVar[str]
    KEY: ClassVar[str | None] = None  # the field holding the aggregate's id

    meta: EventMeta | None = dataclasses.field(default=None, compare=False, repr=False)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("TYPE")
        if name is None:
            return
        known = _CATALOG.get(name)
        if known is not None and known.__qualname__ != cls.__qualname__:
            raise TypeError(f"event type {name} is declared twice: {known} and {cls}")
        _CATALOG[name] = cls

    # --- to and from JSON -------------------------------------------------------------------

    def data(self) -> dict[str, Any]:
        """The payload consumers see: every field but ``meta``, as JSON values."""
        return {_key(f): _to_json(getattr(self, f.name)) for f in _payload_fields(type(self))}

    @property
    def envelope(self) -> EventMeta:
        """The envelope it was delivered in (its id, time): only for delivered events."""
        if self.meta is None:
            raise RuntimeError(f"{self.TYPE} was not delivered through the outbox")
        return self.meta

    def aggregate_kind(self) -> str:
        return self.AGGREGATE

    def aggregate_id(self) -> str | int | None:
        key = self.KEY or f"{self.AGGREGATE}_id"
        value = getattr(self, key, None)
        return value if isinstance(value, (int, str)) or value is None else str(value)

    @classmethod
    def parse(cls, data: Mapping[str, Any], meta: EventMeta | None = None) -> Self:
        """An instance from a stored payload (fields the class does not know are ignored,
        so an older reader survives a newer writer's additions)."""
        hints = _hints(cls)
        values: dict[str, Any] = {}
        for f in _payload_fields(cls):
            key = _key(f)
            if key in data:
                values[f.name] = _from_json(hints[f.name], data[key])
        return cls(**values, meta=meta)


def _key(f: dataclasses.Field[Any]) -> str:
    return str(f.metadata.get("json", f.name))


_FIELDS: dict[type, tuple[dataclasses.Field[Any], ...]] = {}
_HINTS: dict[type, dict[str, Any]] = {}


def _payload_fields(cls: type[DomainEvent]) -> tuple[dataclasses.Field[Any], ...]:
    found = _FIELDS.get(cls)
    if found is None:
        found = _FIELDS[cls] = tuple(f for f in dataclasses.fields(cls) if f.name != "meta")
    return found


def _hints(cls: type) -> dict[str, Any]:
    found = _HINTS.get(cls)
    if found is None:
        found = _HINTS[cls] = get_type_hints(cls)
    return found


def _to_json(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, enum.Enum):
        return _to_json(value.value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {_key(f): _to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    raise TypeError(f"an event field cannot hold {type(value).__name__}")


def _from_json(hint: Any, value: Any) -> Any:
    origin, args = get_origin(hint), get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        return _from_json(next(a for a in args if a is not type(None)), value)
    if value is None or hint is Any:
        return value
    if origin in (tuple, list):
        return tuple(_from_json(args[0], v) for v in value)
    if origin is dict or hint is dict:
        return dict(value)
    if hint is Decimal:
        return Decimal(str(value))
    if hint is datetime:
        return datetime.fromisoformat(value)
    if hint is date:
        return date.fromisoformat(value)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        nested = _hints(hint)
        return hint(
            **{
                f.name: _from_json(nested[f.name], value[_key(f)])
                for f in dataclasses.fields(hint)
                if _key(f) in value
            }
        )
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return hint(value)
    return value


# --- the catalog ------------------------------------------------------------------------------


def catalog() -> dict[str, type[DomainEvent]]:
    """Every declared event type by name (the domains' ``event_types`` modules must have
    been imported: :func:`mercato.bootstrap.event_catalog` does that)."""
    return dict(sorted(_CATALOG.items()))


def type_named(name: str) -> type[DomainEvent]:
    found = _CATALOG.get(name)
    if found is None:
        raise KeyError(f"no event type {name!r} in the catalog")
    return found


def describe(cls: type[DomainEvent]) -> str:
    """The first paragraph of the class's docstring, on one line."""
    doc = (cls.__doc__ or "").strip().split("\n\n", 1)[0]
    return " ".join(doc.split()).replace("``", "`")


def field_names(cls: type[DomainEvent]) -> Iterator[str]:
    return (_key(f) for f in _payload_fields(cls))


def typed(envelope: Any) -> DomainEvent:
    """The catalog's instance for an outbox envelope (:class:`mercato.events.Event`)."""
    meta = EventMeta(envelope.id, envelope.time, envelope.version)
    return type_named(envelope.type).parse(envelope.data, meta)


def typed_handler(cls: type[E], handler: Callable[[Any, E], None]) -> Callable[[Any, Any], None]:
    """A dispatcher handler that hands ``handler`` the event as an instance of ``cls``.

    The wrapper keeps the handler's module and name: the outbox records handled events by
    that name, so a retry skips the handlers that already ran.
    """

    @functools.wraps(handler)
    def typed(session: Any, event: Any) -> None:
        meta = EventMeta(event.id, event.time, event.version)
        handler(session, cls.parse(event.data, meta))

    return typed
