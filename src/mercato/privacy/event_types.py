"""The privacy domain's events."""

from __future__ import annotations

from dataclasses import dataclass

from mercato.event_types import DomainEvent


@dataclass(frozen=True, kw_only=True)
class CustomerErased(DomainEvent):
    """A data subject's personal data was erased from every domain (the profiles that
    were theirs are listed; orders and ledgers keep their numbers, not the person)."""

    TYPE = "customer.erased"
    AGGREGATE = "customer"

    customer_id: int
    profile_ids: tuple[int, ...]
