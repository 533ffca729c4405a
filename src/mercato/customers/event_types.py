"""The customers domain's events: profiles created, registered, changed and verified."""

from __future__ import annotations

from dataclasses import dataclass

from mercato.event_types import DomainEvent


@dataclass(frozen=True, kw_only=True)
class CustomerFacts(DomainEvent):
    AGGREGATE = "customer"

    customer_id: int


@dataclass(frozen=True, kw_only=True)
class CustomerCreated(CustomerFacts):
    """A profile was created for someone seen for the first time (a guest order, a POS sale)."""

    TYPE = "customer.created"

    channel_id: int | None
    source: str


@dataclass(frozen=True, kw_only=True)
class CustomerRegistered(CustomerFacts):
    """A shopper signed up for an account."""

    TYPE = "customer.registered"

    channel_id: int | None


@dataclass(frozen=True, kw_only=True)
class CustomerUpdated(CustomerFacts):
    """Fields of the profile changed (their names only, never their values)."""

    TYPE = "customer.updated"

    fields: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class CustomerIdentityVerified(CustomerFacts):
    """The customer proved an identity (an email, a phone number) is theirs."""

    TYPE = "customer.identity_verified"

    identity_id: int
    type: str
