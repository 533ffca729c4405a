"""Orders follow a customer merge; guest orders join the profile of a verified contact;
what orders export and erase about a person.

**Guest orders.** An order placed without signing in keeps the email (and the address's
phone) it was placed with, and their keyed hashes. It is attached to a profile, and then
counts in its figures and timeline, when that email or phone is *verified* for the
profile: when the identifier becomes verified (staff confirm it, or a channel reports it
verified and resolution attaches it), every guest order placed with it is attached; a
guest order placed with an identifier already verified for a profile is attached as soon
as it is placed or imported. Registering alone attaches nothing: anyone can register with
someone else's email, so an unverified email never opens another person's orders (the
same rule as automatic profile resolution). Orders already attached are never moved.
Attaching publishes ``order.customer_linked``: the profile's figures count the order as
bought when it was, and its guest cart joins the profile; loyalty points are earned by
members' purchases and are not granted afterwards for a guest's.

**Export and erasure** cover the profile's orders and the guest orders placed with one of
the person's emails or phone numbers (found by their hashes), so a person who bought as a
guest and later asked is answered in full. Erasure keeps every order, line and amount
(accounting and tax records must balance) and the customer id, which then points at an
emptied profile; it drops the email, the customer's note and the addresses except the
country and region that decided the taxes, replaces the hold reason and every staff note
with the erasure reference, and marks them with it.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.channels import service as channels
from mercato.customers import profiles
from mercato.customers.event_types import CustomerIdentityVerified
from mercato.customers.normalize import IdentityType
from mercato.customers.timeline import TimelineEntry
from mercato.errors import NotFound
from mercato.orders import service
from mercato.orders.event_types import OrderFacts
from mercato.orders.models import (
    Order,
    OrderLine,
    OrderNote,
    OrderTransition,
    buyer_phone,
    contact_email,
)
from mercato.orders.state import OrderStatus
from mercato.personal_data import Blocker, DomainPrivacy, Subject, record

_SYSTEM = Principal(kind="system", id=None, label="guest order linking")

# What an erased address keeps: where the tax was due.
KEPT_ADDRESS_FIELDS = ("country", "region")



def _channel_types(session: Session, ids: set[int]) -> dict[int, str]:
    types = {}
    for channel_id in ids:
        try:
            types[channel_id] = channels.get_channel(session, channel_id).type
        except NotFound:
            continue
    return types


def timeline_entries(
    session: Session, customer_id: int, since: datetime | None, limit: int
) -> list[TimelineEntry]:
    """The customer's orders for the timeline; a POS channel's order is a store visit."""
    page = service.search(
        session, service.OrderFilter(customer_id=customer_id, placed_from=since), None, limit
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


def on_identity_verified(session: Session, event: CustomerIdentityVerified) -> None:
    """Attach every guest order placed with the newly verified email or phone."""
    found = profiles.verified_contact(session, event.identity_id)
    if found is None:
        return
    customer_id, kind, value = found
    emails, phones = ([value], []) if kind == IdentityType.EMAIL.value else ([], [value])
    service.link_guest_orders(session, _SYSTEM, customer_id, emails=emails, phones=phones)


def on_guest_order(session: Session, event: OrderFacts) -> None:
    """A guest order placed with an email or phone verified for a profile joins it."""
    if event.customer_id is not None:
        return
    order = session.get(Order, event.order_id)
    if order is None or order.customer_id is not None:
        return

    candidates: list[tuple[IdentityType, str]] = []
    email = contact_email(order.email)
    if email is not None:
        candidates.append((IdentityType.EMAIL, email))
    phone = buyer_phone(order.shipping_address, order.billing_address)
    if phone is not None:
        candidates.append((IdentityType.PHONE, phone))
    for kind, value in candidates:
        owner = profiles.verified_owner(session, kind, value)
        if owner is not None:
            emails, phones = ([value], []) if kind is IdentityType.EMAIL else ([], [value])
            service.link_guest_orders(
                session, _SYSTEM, owner, emails=emails, phones=phones, order_id=order.id
            )
            return


def _orders_of(session: Session, subject: Subject) -> list[Order]:
    contacts = subject.contacts
    return service.orders_of_person(
        session, subject.customer_ids, sorted(contacts.emails), sorted(contacts.phones)
    )


def _collect(session: Session, subject: Subject) -> None:
    for order in _orders_of(session, subject):
        subject.order_ids.add(order.id)
        subject.identifiers.add_email(order.email)
        subject.identifiers.add_address(order.shipping_address)
        subject.identifiers.add_address(order.billing_address)


def _export(session: Session, subject: Subject) -> list[dict[str, Any]]:
    orders = _orders_of(session, subject)
    ids = [o.id for o in orders]
    if not ids:
        return []
    lines = _by_order(session.scalars(select(OrderLine).where(OrderLine.order_id.in_(ids))))
    moves = _by_order(
        session.scalars(select(OrderTransition).where(OrderTransition.order_id.in_(ids)))
    )
    notes = _by_order(session.scalars(select(OrderNote).where(OrderNote.order_id.in_(ids))))
    return [
        {
            **record(order),
            "lines": [record(x) for x in sorted(lines.get(order.id, []), key=_id)],
            "transitions": [record(x) for x in sorted(moves.get(order.id, []), key=_id)],
            "notes": [record(x) for x in sorted(notes.get(order.id, []), key=_id)],
        }
        for order in orders
    ]


def _id(row: Any) -> int:
    return int(row.id)


def _by_order(rows: Any) -> dict[int, list[Any]]:
    grouped: dict[int, list[Any]] = {}
    for row in rows:
        grouped.setdefault(row.order_id, []).append(row)
    return grouped


def _pseudonymous(address: dict[str, Any] | None, reference: str) -> dict[str, Any] | None:
    if address is None:
        return None
    kept = {k: address[k] for k in KEPT_ADDRESS_FIELDS if address.get(k) is not None}
    return {**kept, "name": reference}


def _erase(session: Session, subject: Subject) -> int:
    orders = _orders_of(session, subject)
    for order in orders:
        order.email = None
        order.note = None
        if order.hold_reason is not None:
            order.hold_reason = subject.reference
        order.shipping_address = _pseudonymous(order.shipping_address, subject.reference)
        order.billing_address = _pseudonymous(order.billing_address, subject.reference)
    ids = [o.id for o in orders]
    if ids:
        # Staff notes on her orders are what she said or what was done for her: the note
        # stays (who wrote one, when) and says nothing more.
        for note in session.scalars(select(OrderNote).where(OrderNote.order_id.in_(ids))):
            note.body = subject.reference
    return len(orders)


# Orders whose contract is performed: nothing is shipped to or collected by the person any
# more. Any other order still needs the name, address and phone it ships to.
FINISHED = frozenset(
    {
        OrderStatus.DELIVERED,
        OrderStatus.PICKED_UP,
        OrderStatus.CLOSED,
        OrderStatus.CANCELLED,
        OrderStatus.PAYMENT_FAILED,
    }
)


def _open_orders(session: Session, subject: Subject) -> list[Blocker]:
    """Orders not yet delivered, collected or cancelled: erasing now would ship a parcel to
    an erased address."""
    return [
        Blocker("order", order.id, order.number, order.status, _why(OrderStatus(order.status)))
        for order in _orders_of(session, subject)
        if OrderStatus(order.status) not in FINISHED
    ]


def _why(status: OrderStatus) -> str:
    if status is OrderStatus.PENDING_PAYMENT:
        return "its checkout is waiting for payment"
    if status is OrderStatus.FULFILLED:
        return "shipped or ready, not yet delivered or collected"
    return "not yet shipped: deliver or cancel it first"


PRIVACY = DomainPrivacy(
    "orders", export=_export, erase=_erase, collect=_collect, blocks=_open_orders
)
