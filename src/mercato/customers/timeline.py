"""The customer timeline: every interaction, from every domain, newest first.

Domains contribute entries through a small provider interface instead of the customers
domain reading their tables::

    from mercato.customers.timeline import TimelineEntry, register_timeline_source

    def support_messages(session, customer_id, since, limit) -> list[TimelineEntry]:
        ...  # at most ``limit`` entries at or after ``since`` (None: any time), newest first

    register_timeline_source("support", support_messages)

A source is called once for the profile and once for each profile merged into it, so
entries still filed under a merged profile's id show up until their domain re-points
them. Built in: ``orders`` (orders, and store visits for POS channels, from the orders
service), ``carts`` (from ``cart.*`` events in the outbox, until the carts domain
registers its own source from the carts themselves) and ``profile`` (changes to the
profile itself). Each domain's ``customer_links`` module adds its own: ``returns``,
``support`` (messages), ``emails`` and ``consents`` (marketing), ``points`` (loyalty).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mercato.customers import profiles
from mercato.customers.models import CustomerActivity
from mercato.errors import NotFound
from mercato.events import OutboxEvent


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

_sources: dict[str, TimelineSource] = {}


def register_timeline_source(name: str, fn: TimelineSource) -> None:
    """Add (or replace, so re-registering is harmless) a named source of entries."""
    _sources[name] = fn


def timeline_sources() -> list[str]:
    return list(_sources)


def customer_timeline(
    session: Session, customer_id: int, *, since: datetime | None = None, limit: int = 50
) -> list[TimelineEntry]:
    """The ``limit`` newest entries at or after ``since`` over every source."""
    profiles.get(session, customer_id)
    ids = profiles.group_ids(session, customer_id)
    entries: list[TimelineEntry] = []
    for name, source in list(_sources.items()):
        for member in ids:
            entries += [replace(e, source=name) for e in source(session, member, since, limit)]
    entries.sort(key=lambda e: (e.at, e.kind), reverse=True)
    return entries[:limit]


def _channel_types(session: Session, ids: set[int]) -> dict[int, str]:
    from mercato.channels import service as channels

    types = {}
    for channel_id in ids:
        try:
            types[channel_id] = channels.get_channel(session, channel_id).type
        except NotFound:
            continue
    return types


def orders_source(
    session: Session, customer_id: int, since: datetime | None, limit: int
) -> list[TimelineEntry]:
    from mercato.orders import service as orders

    page = orders.search(
        session, orders.OrderFilter(customer_id=customer_id, placed_from=since), None, limit
    )
    types = _channel_types(session, {o.channel_id for o in page.items})
    entries = []
    for order in page.items:
        visit = types.get(order.channel_id) == "pos"
        total = Decimal(order.grand_total)
        entries.append(
            TimelineEntry(
                at=order.placed_at or order.created_at,
                kind="store_visit" if visit else "order",
                channel_id=order.channel_id,
                summary=(
                    f"{'Store purchase' if visit else 'Order'} {order.number}: "
                    f"{order.status}, {total.normalize():f} {order.currency}"
                ),
                ref_type="order",
                ref_id=str(order.id),
                data={
                    "number": order.number,
                    "status": order.status,
                    "currency": order.currency,
                    "grand_total": str(order.grand_total),
                },
            )
        )
    return entries


_CART_EVENTS = {
    "cart.created": "Cart started",
    "cart.merged": "Guest cart merged into the customer's cart",
}


def carts_source(
    session: Session, customer_id: int, since: datetime | None, limit: int
) -> list[TimelineEntry]:
    query = select(OutboxEvent).where(
        OutboxEvent.type.in_(list(_CART_EVENTS)),
        OutboxEvent.data["customer_id"].as_integer() == customer_id,
    )
    if since is not None:
        query = query.where(OutboxEvent.occurred_at >= since)
    rows = session.scalars(query.order_by(OutboxEvent.id.desc()).limit(limit))
    entries = []
    for row in rows:
        cart_id = row.data.get("cart_id", row.data.get("into_cart_id"))
        entries.append(
            TimelineEntry(
                at=row.occurred_at,
                kind="cart",
                channel_id=row.data.get("channel_id"),
                summary=_CART_EVENTS[row.type],
                ref_type="cart",
                ref_id=None if cart_id is None else str(cart_id),
                data={"event": row.type},
            )
        )
    return entries


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


register_timeline_source("orders", orders_source)
register_timeline_source("carts", carts_source)
register_timeline_source("profile", profile_source)
