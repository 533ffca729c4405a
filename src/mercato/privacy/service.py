"""Data subject requests: export everything about a person, or erase it everywhere.

Both run every domain's registered part (see :mod:`mercato.personal_data`) in one
transaction, for the profile and every profile merged into it, and for the records a
guest left with the person's email or phone number (found by their keyed hashes), and are
logged in ``privacy_requests`` with who asked and when. Staff handle requests after
checking who asks, so every email and phone of the profile counts; a shopper's own export
counts only the identifiers verified as hers.

**Erasure** removes or irreversibly pseudonymises personal data: each domain erases what
it keys by customer id, then a sweep replaces any remaining copy of the person's emails,
phone numbers and names in free-form columns (event payloads, webhook bodies, notes,
audit entries) with the request's reference. Orders and payments keep their amounts and
the customer id (which now points at an emptied profile), so accounting still balances.
An erased profile cannot be found by email or phone; a second erasure is a 409.

**What blocks an erasure.** Personal data needed to perform a contract may be kept until
it is performed (GDPR art. 17(3) and 6(1)(b)): an order not yet delivered, collected or
cancelled still needs the name, address and phone it ships to, and a return in progress
needs them for the parcel back and the refund. Erasing then would have the warehouse buy a
label for an erased address, so the request is refused (409 ``erasure-blocked``) and
changes nothing: the answer lists each order and return under way (``blocking``); staff
finish or cancel them and ask again.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.auth.service import audit
from mercato.customers import customer_links
from mercato.db import Base, utcnow
from mercato.errors import Conflict, NotFound
from mercato.events import publish
from mercato.personal_data import Blocker, Identifiers, Subject, domains
from mercato.privacy import sweep
from mercato.privacy.event_types import CustomerErased
from mercato.privacy.models import PrivacyRequest

EXPORT = "export"
ERASURE = "erasure"
FORMAT_VERSION = 1


def _subject(
    session: Session, customer_id: int, reference: str, *, verified_only: bool = False
) -> Subject:
    ids = customer_links.profile_ids(session, customer_id)
    if not ids:
        raise NotFound(f"customer {customer_id} not found")
    contacts = customer_links.contacts_of(session, ids, verified_only=verified_only)
    subject = Subject(customer_id, tuple(ids), Identifiers(), reference, contacts)
    for domain in domains():
        if domain.collect is not None:
            domain.collect(session, subject)
    return subject


def _log(
    session: Session,
    actor: Principal,
    kind: str,
    customer_id: int,
    *,
    reference: str | None,
    reason: str | None,
    summary: dict[str, Any],
    started: datetime,
) -> PrivacyRequest:
    request = PrivacyRequest(
        kind=kind,
        customer_id=customer_id,
        reference=reference,
        actor_type=actor.kind,
        actor_id=None if actor.id is None else str(actor.id),
        reason=reason,
        summary=summary,
        requested_at=started,
        completed_at=utcnow(),
    )
    session.add(request)
    session.flush()
    return request


def erased_reference(session: Session, customer_id: int) -> str | None:
    """The reference of the erasure of this customer, if they were erased."""
    return session.scalar(
        select(PrivacyRequest.reference).where(
            PrivacyRequest.customer_id == customer_id, PrivacyRequest.kind == ERASURE
        )
    )


def export_customer(
    session: Session,
    actor: Principal,
    customer_id: int,
    reason: str | None = None,
    *,
    verified_only: bool = False,
) -> dict[str, Any]:
    """Everything Mercato holds about the person, one JSON-ready document by domain.

    Records kept without a customer id (guest orders, carts, support cases) are included
    when they carry one of the person's emails or phone numbers. A shopper exporting her
    own data (``verified_only``) gets only those matching an identifier verified as hers:
    anyone can register with someone else's email, but not verify it."""
    started = utcnow()
    gathered = gather_export(session, customer_id, verified_only=verified_only)
    return log_export(session, actor, gathered, reason, started)


@dataclass(frozen=True)
class GatheredExport:
    customer_id: int
    profile_ids: tuple[int, ...]
    data: dict[str, Any]


def gather_export(
    session: Session,
    customer_id: int,
    *,
    verified_only: bool = False,
    on_domain: Callable[[str], None] | None = None,
) -> GatheredExport:
    """The export's data, read only: a background export gathers it in a read transaction
    (telling ``on_domain`` each domain's name once its part is done: there are
    ``len(domains())``), then logs it with :func:`log_export` in a short write."""
    subject = _subject(session, customer_id, reference="", verified_only=verified_only)
    data: dict[str, Any] = {}
    for domain in domains():
        data[domain.name] = domain.export(session, subject)
        if on_domain is not None:
            on_domain(domain.name)
    return GatheredExport(customer_id, subject.customer_ids, data)


def log_export(
    session: Session,
    actor: Principal,
    gathered: GatheredExport,
    reason: str | None,
    started: datetime,
) -> dict[str, Any]:
    """Log (and audit) an export gathered by :func:`gather_export`; the document."""
    customer_id = gathered.customer_id
    summary = {name: _count(part) for name, part in gathered.data.items()}
    request = _log(
        session,
        actor,
        EXPORT,
        customer_id,
        reference=None,
        reason=reason,
        summary=summary,
        started=started,
    )
    audit(session, actor, "privacy.export", "customer", customer_id, {"request_id": request.id})
    return {
        "format_version": FORMAT_VERSION,
        "request_id": request.id,
        "generated_at": request.completed_at.isoformat() if request.completed_at else None,
        "customer_id": customer_id,
        "profile_ids": list(gathered.profile_ids),
        "erased": erased_reference(session, customer_id) is not None,
        "data": gathered.data,
    }


@dataclass(frozen=True)
class DomainShare:
    """What one domain holds about the person: how many records, and whether an erasure
    erases or pseudonymises them (``erases``) or keeps them as they are (payments, the
    loyalty ledger, promotion redemptions: accounting records without personal data)."""

    domain: str
    records: int
    erases: bool


@dataclass(frozen=True)
class ErasurePreview:
    customer_id: int
    already_erased: bool
    domains: list[DomainShare]
    # What must finish first; while any is listed, an erasure is refused.
    blocking: list[Blocker]


def preview_erasure(session: Session, customer_id: int) -> ErasurePreview:
    """What an erasure of this person would erase and what it would keep, and what blocks
    it now; reads only (nothing is logged: nothing personal leaves, only counts)."""
    subject = _subject(session, customer_id, reference="")
    shares = [
        DomainShare(domain.name, _count(domain.export(session, subject)), domain.erase is not None)
        for domain in domains()
    ]
    return ErasurePreview(
        customer_id=customer_id,
        already_erased=erased_reference(session, customer_id) is not None,
        domains=[share for share in shares if share.records],
        blocking=blockers(session, subject),
    )


def erase_customer(
    session: Session, actor: Principal, customer_id: int, reason: str | None = None
) -> PrivacyRequest:
    """Erase the person everywhere; the logged request (with per-domain counts)."""
    started = utcnow()
    if erased_reference(session, customer_id) is not None:
        raise Conflict(f"customer {customer_id} was already erased", code="already-erased")
    reference = f"erased-{secrets.token_hex(8)}"
    subject = _subject(session, customer_id, reference)
    _refuse_while_under_way(subject, blockers(session, subject))
    summary: dict[str, Any] = {}
    for domain in domains():
        if domain.erase is not None:
            summary[domain.name] = domain.erase(session, subject)
    session.flush()
    tables = list(Base.metadata.sorted_tables)
    summary["sweep"] = sweep.sweep_plaintext(session, tables, subject.identifiers, reference)
    for table in tables:
        if table.name in sweep.DECRYPTING_SWEEP:
            count = sweep.sweep_encrypted(session, table, subject.identifiers, reference)
            if count:
                summary["sweep"][table.name] = count
    request = _log(
        session,
        actor,
        ERASURE,
        customer_id,
        reference=reference,
        reason=reason,
        summary=summary,
        started=started,
    )
    audit(session, actor, "privacy.erase", "customer", customer_id, {"request_id": request.id})
    publish(
        session,
        CustomerErased(customer_id=customer_id, profile_ids=tuple(subject.customer_ids)),
    )
    return request


def blockers(session: Session, subject: Subject) -> list[Blocker]:
    """What of the person's is still under way (orders to deliver, returns to settle)."""
    found: list[Blocker] = []
    for domain in domains():
        if domain.blocks is not None:
            found += domain.blocks(session, subject)
    return found


def _refuse_while_under_way(subject: Subject, found: list[Blocker]) -> None:
    if not found:
        return
    listed = ", ".join(f"{b.kind} {b.number} ({b.status})" for b in found)
    raise Conflict(
        f"customer {subject.customer_id} cannot be erased while orders or returns are under "
        f"way: {listed}. Their delivery and refund need the person's details; erase once "
        "they are delivered, collected, refunded or cancelled",
        code="erasure-blocked",
        title="Orders or returns are under way",
        extra={"blocking": [b.as_json() for b in found]},
    )


def list_requests(
    session: Session, customer_id: int | None = None, limit: int = 100, before: int | None = None
) -> list[PrivacyRequest]:
    """Newest first; ``before`` continues after the request with that id."""
    query = select(PrivacyRequest).order_by(PrivacyRequest.id.desc()).limit(limit)
    if before is not None:
        query = query.where(PrivacyRequest.id < before)
    if customer_id is not None:
        query = query.where(PrivacyRequest.customer_id == customer_id)
    return list(session.scalars(query))


def count_records(part: Any) -> int:
    """How many records one domain's part of an export holds."""
    return _count(part)


def _count(part: Any) -> int:
    if isinstance(part, list):
        return len(part)
    if isinstance(part, dict):
        return sum(_count(v) if isinstance(v, list) else 1 for v in part.values())
    return 0 if part is None else 1
