"""What each domain knows about a person, and how it exports and erases it.

Privacy requests cross every domain, but no domain may read another's tables, so each
domain that holds personal data contributes a :class:`DomainPrivacy` to :data:`DOMAINS`
from its manifest: how to *collect* the person's identifiers it holds (an order keeps
the email it was placed with even after the profile changed), how to *export* its data
about them, how to *erase* it, and what *blocks* an erasure (an order still to be
delivered needs the address it ships to). The privacy service runs them in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from mercato.manifest import ExtensionPoint


@dataclass
class Identifiers:
    """Values that identify the person, gathered from every domain before an erasure."""

    emails: set[str] = field(default_factory=set)
    phones: set[str] = field(default_factory=set)
    names: set[str] = field(default_factory=set)

    def add_email(self, value: str | None) -> None:
        if value and "@" in value:
            self.emails.add(value.strip().lower())

    def add_phone(self, value: str | None) -> None:
        if value and sum(ch.isdigit() for ch in value) >= 6:
            self.phones.add(value.strip())

    def add_name(self, *parts: str | None) -> None:
        full = " ".join(p.strip() for p in parts if p and p.strip())
        # A single short name ("An") would match unrelated text; whole names only.
        if len(full) >= 5 and " " in full:
            self.names.add(full)

    def add_address(self, address: dict[str, Any] | None) -> None:
        if not address:
            return
        self.add_phone(address.get("phone"))
        self.add_email(address.get("email"))
        self.add_name(address.get("first_name"), address.get("last_name"))
        self.add_name(address.get("name"))


@dataclass(frozen=True)
class Contacts:
    """Normalised emails (lower case) and phone numbers (E.164) of the person."""

    emails: frozenset[str] = frozenset()
    phones: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.emails or self.phones)


@dataclass(frozen=True)
class Subject:
    """The person a request is about: every profile id they had and what identifies them."""

    customer_id: int
    # The profile and every profile that was merged into it.
    customer_ids: tuple[int, ...]
    identifiers: Identifiers
    # Replaces personal values where a record must stay (orders, invoices): it names the
    # erasure request, never the person.
    reference: str
    # The person's own emails and phone numbers (normalised), by which records kept without
    # a customer id (a guest's orders, carts, support cases) are found as theirs.
    contacts: Contacts = field(default_factory=Contacts)
    # Every order of the person, guest orders included (filled by the orders collector), so
    # that domains keyed by order (returns) find what belongs to a guest's orders.
    order_ids: set[int] = field(default_factory=set)


@dataclass(frozen=True)
class Blocker:
    """Something of the person's still under way that needs their personal data: an order
    to deliver, a return to refund. An erasure waits until none is left."""

    kind: str  # "order" | "return"
    id: int
    number: str
    status: str
    why: str

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "id": self.id,
            "number": self.number,
            "status": self.status,
            "why": self.why,
        }


Collector = Callable[[Session, Subject], None]
Exporter = Callable[[Session, Subject], Any]
Eraser = Callable[[Session, Subject], int]
BlockerFinder = Callable[[Session, Subject], list[Blocker]]


@dataclass(frozen=True)
class DomainPrivacy:
    name: str
    export: Exporter
    erase: Eraser | None = None
    collect: Collector | None = None
    blocks: BlockerFinder | None = None


DOMAINS: ExtensionPoint[DomainPrivacy] = ExtensionPoint("privacy hooks")


def domains() -> list[DomainPrivacy]:
    """Every domain's part, in name order (each domain contributes it from its manifest)."""
    return [privacy for _, privacy in DOMAINS.items()]


def record(obj: Any, exclude: Iterable[str] = ()) -> dict[str, Any]:
    """A mapped row as JSON-ready values (for exports): dates ISO, decimals as strings."""
    skipped = set(exclude)
    out: dict[str, Any] = {}
    for column in obj.__table__.columns:
        if column.key in skipped:
            continue
        value = getattr(obj, column.key)
        if isinstance(value, datetime | date):
            value = value.isoformat()
        elif isinstance(value, Decimal):
            value = str(value)
        out[column.key] = value
    return out
