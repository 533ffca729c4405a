"""The customer timeline: every interaction, from every domain, newest first.

Domains contribute entries through a small provider interface instead of the customers
domain reading their tables: a source is a function, contributed to :data:`SOURCES` from
the domain's manifest::

    def support_messages(session, customer_id, since, limit) -> list[TimelineEntry]:
        ...  # at most ``limit`` entries at or after ``since`` (None: any time), newest first

    MANIFEST = Manifest("support", contributions=[timeline.SOURCES("support", support_messages)])

A source is called once for the profile and once for each profile merged into it, so
entries still filed under a merged profile's id show up until their domain re-points
them. The customers domain contributes ``profile`` (changes to the profile itself); the
others theirs: ``orders`` (orders, and store visits for POS channels), ``carts``,
``returns``, ``support`` (messages), ``emails`` and ``consents`` (marketing), ``points``
(loyalty).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mercato.customers import profiles
from mercato.customers.models import CustomerActivity
from mercato.manifest import ExtensionPoint


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    kind: str  # order, store_visit, cart, profile.*, return, support_message, email, ...
    channel_id: int | None
    summary: str
    ref_type: str | None = None
    ref_id: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""


TimelineSource = Callable[[Session, int, datetime | None, int], list[TimelineEntry]]

SOURCES: ExtensionPoint[TimelineSource] = ExtensionPoint("customer timeline sources")


def register_timeline_source(name: str, fn: TimelineSource) -> None:
    """Put ``fn`` under ``name`` on purpose (a plug-in's source, a test's stand-in);
    domains contribute theirs from their manifest instead."""
    SOURCES.replace(name, fn)


def timeline_sources() -> list[str]:
    return list(SOURCES)


def customer_timeline(
    session: Session, customer_id: int, *, since: datetime | None = None, limit: int = 50
) -> list[TimelineEntry]:
    """The ``limit`` newest entries at or after ``since`` over every source."""
    profiles.get(session, customer_id)
    ids = profiles.group_ids(session, customer_id)
    entries: list[TimelineEntry] = []
    for name, source in SOURCES.items():
        for member in ids:
            entries += [replace(e, source=name) for e in source(session, member, since, limit)]
    entries.sort(key=lambda e: (e.at, e.kind), reverse=True)
    return entries[:limit]


_PROFILE_SUMMARIES = {
    "profile.created": "Profile created",
    "profile.registered": "Account registered",
    "profile.updated": "Profile updated",
    "profile.merged": "Profiles merged",
    "profile.merge_undone": "Merge undone",
    "identity.added": "Identifier added",
    "address.added": "Address added",
    "address.updated": "Address changed",
    "address.removed": "Address removed",
}


def profile_source(
    session: Session, customer_id: int, since: datetime | None, limit: int
) -> list[TimelineEntry]:
    query = select(CustomerActivity).where(CustomerActivity.customer_id == customer_id)
    if since is not None:
        query = query.where(CustomerActivity.at >= since)
    rows = session.scalars(query.order_by(CustomerActivity.id.desc()).limit(limit))
    return [
        TimelineEntry(
            at=row.at,
            kind=row.kind,
            channel_id=row.channel_id,
            summary=_PROFILE_SUMMARIES.get(row.kind, row.kind),
            ref_type="customer",
            ref_id=str(customer_id),
            data=row.data,
        )
        for row in rows
    ]

