"""The channels domain's events: ways of selling added or changed."""

from __future__ import annotations

from dataclasses import dataclass

from mercato.event_types import DomainEvent


@dataclass(frozen=True, kw_only=True)
class ChannelFacts(DomainEvent):
    AGGREGATE = "channel"
    KEY = "id"

    id: int
    code: str
    type: str
    currencies: tuple[str, ...]
    locales: tuple[str, ...]
    active: bool


@dataclass(frozen=True, kw_only=True)
class ChannelCreated(ChannelFacts):
    """A sales channel (web store, app, POS, marketplace, call centre) was added."""

    TYPE = "channel.created"


@dataclass(frozen=True, kw_only=True)
class ChannelUpdated(ChannelFacts):
    """A channel's settings changed (locales, currencies, locations, assortment)."""

    TYPE = "channel.updated"
