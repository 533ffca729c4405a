"""The profile core: root profiles, identities, addresses, lookups through blind indexes.

A merged profile points at the profile it was merged into (``merged_into_id``); the
*root* of a profile is the active profile at the end of that chain. Everything that
finds a customer (email, phone, token) answers with the root.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from mercato.crypto import blind_index, blind_indexes
from mercato.customers.event_types import CustomerIdentityVerified
from mercato.customers.models import (
    ACTIVE,
    Customer,
    CustomerActivity,
    CustomerAddress,
    CustomerIdentity,
)
from mercato.customers.normalize import (
    ADDRESS_FIELDS,
    IdentityType,
    address_key,
    area_key,
    index_kind,
    name_key,
    normalise_email,
    normalise_identity,
    normalise_phone,
)
from mercato.db import utcnow
from mercato.errors import NotFound
from mercato.events import publish
from mercato.geocoding import locate

# Merge chains are short (staff merge into the surviving profile); this bounds a cycle.
MAX_CHAIN = 32


def insert_for(session: Session, model: Any) -> Any:
    """The dialect's INSERT, which has ON CONFLICT (PostgreSQL and SQLite alike)."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(model)
    return sqlite.insert(model)


def get(session: Session, customer_id: int) -> Customer:
    customer = session.get(Customer, customer_id)
    if customer is None:
        raise NotFound(f"customer {customer_id} not found")
    return customer


def root_of(session: Session, customer: Customer) -> Customer:
    """The active profile that answers for ``customer`` (itself unless merged)."""
    current = customer
    for _ in range(MAX_CHAIN):
        if current.status == ACTIVE or current.merged_into_id is None:
            return current
        current = get(session, current.merged_into_id)
    raise RuntimeError(f"customer {customer.id}: merge chain too long")


def root_id(session: Session, customer_id: int) -> int | None:
    found = session.get(Customer, customer_id)
    return None if found is None else root_of(session, found).id


def chain_ids(session: Session, customer_id: int) -> list[int]:
    """The profile and every profile it is merged into, in order (unlocked read)."""
    ids = [customer_id]
    current = session.execute(
        select(Customer.status, Customer.merged_into_id).where(Customer.id == customer_id)
    ).one_or_none()
    while current is not None and current.status != ACTIVE and current.merged_into_id:
        if len(ids) > MAX_CHAIN:
            raise RuntimeError(f"customer {customer_id}: merge chain too long")
        ids.append(current.merged_into_id)
        current = session.execute(
            select(Customer.status, Customer.merged_into_id).where(
                Customer.id == current.merged_into_id
            )
        ).one_or_none()
    return ids


def lock_root(session: Session, customer_id: int) -> int | None:
    """Lock the profile and its chain (ids ascending, so no two lockers deadlock); the root.

    Whoever changes a profile's derived figures holds this lock, so a merge moving them
    and an order event adding to them never interleave. None for an unknown customer.
    """
    for _ in range(5):
        ids = chain_ids(session, customer_id)
        # A savepoint, so that locks taken on a chain that changed meanwhile (a merge
        # committed while we waited) are released before the new chain is locked in order.
        attempt = session.begin_nested()
        rows = session.execute(
            select(Customer.id)
            .where(Customer.id.in_(sorted(ids)))
            .order_by(Customer.id)
            .with_for_update()
        ).all()
        if not rows:
            attempt.commit()
            return None
        if chain_ids(session, customer_id) == ids:
            attempt.commit()
            return ids[-1]
        attempt.rollback()
    raise RuntimeError(f"customer {customer_id} keeps being merged; retry")


def lock_profiles(session: Session, ids: Iterable[int]) -> None:
    session.execute(
        select(Customer.id)
        .where(Customer.id.in_(sorted(set(ids))))
        .order_by(Customer.id)
        .with_for_update()
    ).all()


def group_ids(session: Session, customer_id: int) -> list[int]:
    """The profile and every profile merged into it, directly or through others."""
    found = [customer_id]
    frontier = [customer_id]
    while frontier and len(found) < 10_000:
        frontier = list(
            session.scalars(select(Customer.id).where(Customer.merged_into_id.in_(frontier)))
        )
        found += [i for i in frontier if i not in found]
    return found


def record(
    session: Session,
    customer_id: int,
    kind: str,
    data: Mapping[str, Any] | None = None,
    channel_id: int | None = None,
) -> None:
    """A profile change for the timeline (field names and ids, never personal values)."""
    session.add(
        CustomerActivity(
            customer_id=customer_id,
            at=utcnow(),
            kind=kind,
            channel_id=channel_id,
            data=dict(data or {}),
        )
    )


def identity_indexes(kind: IdentityType, value: str, channel_id: int | None) -> list[str]:
    return blind_indexes(index_kind(kind, channel_id), value)


def identities_matching(
    session: Session, kind: IdentityType, value: str, channel_id: int | None
) -> list[CustomerIdentity]:
    """Every stored identity with this normalised value (verified ones first)."""
    return list(
        session.scalars(
            select(CustomerIdentity)
            .where(
                CustomerIdentity.type == kind.value,
                CustomerIdentity.value_index.in_(identity_indexes(kind, value, channel_id)),
            )
            .order_by(CustomerIdentity.verified.desc(), CustomerIdentity.id)
        )
    )


def add_identity(
    session: Session,
    customer_id: int,
    kind: IdentityType,
    value: str,
    *,
    verified: bool,
    channel_id: int | None,
) -> CustomerIdentity:
    """Add a normalised identifier to a profile, or refresh the one it has."""
    existing = session.scalar(
        select(CustomerIdentity).where(
            CustomerIdentity.customer_id == customer_id,
            CustomerIdentity.type == kind.value,
            CustomerIdentity.value_index.in_(identity_indexes(kind, value, channel_id)),
        )
    )
    now = utcnow()
    if existing is not None:
        existing.last_seen_at = now
        if verified and not existing.verified:
            existing.verified = True
            session.flush()
            _verified(session, existing)
        return existing
    identity = CustomerIdentity(
        customer_id=customer_id,
        type=kind.value,
        value=value,
        value_index=blind_index(index_kind(kind, channel_id), value),
        verified=verified,
        source_channel_id=channel_id,
        created_at=now,
        last_seen_at=now,
    )
    session.add(identity)
    session.flush()
    record(session, customer_id, "identity.added", {"type": kind.value}, channel_id)
    if verified:
        _verified(session, identity)
    return identity


# Identifiers by which a guest's orders are recognised (see mercato.orders.customer_links).
CONTACT_TYPES = frozenset({IdentityType.EMAIL.value, IdentityType.PHONE.value})


def _verified(session: Session, identity: CustomerIdentity) -> None:
    """Announce an email or phone now verified for a profile (never its value)."""
    if identity.type not in CONTACT_TYPES:
        return
    publish(
        session,
        CustomerIdentityVerified(
            customer_id=identity.customer_id, identity_id=identity.id, type=identity.type
        ),
    )


def verified_contact(session: Session, identity_id: int) -> tuple[int, str, str] | None:
    """(root profile id, type, value) of a verified email or phone identity, if it still is."""
    identity = session.get(CustomerIdentity, identity_id)
    if identity is None or not identity.verified or identity.type not in CONTACT_TYPES:
        return None
    root = root_id(session, identity.customer_id)
    return None if root is None else (root, identity.type, identity.value)


def verified_owner(session: Session, kind: IdentityType, value: str) -> int | None:
    """The (root) profile this email or phone is verified for, if any."""
    for identity in identities_matching(session, kind, value, None):
        if identity.verified:
            return root_id(session, identity.customer_id)
    return None


def clean_address(address: Mapping[str, Any]) -> dict[str, Any]:
    """The address's fields, and where it lies (geocoded offline from its postal code,
    city or country: stores near the customer, routing of their orders)."""
    data = {k: address[k] for k in ADDRESS_FIELDS if address.get(k) not in (None, "")}
    located = locate(data)
    if located.get("coordinates_source"):
        data.update({k: located[k] for k in ("latitude", "longitude", "coordinates_source")})
    return data


def add_address(
    session: Session,
    customer_id: int,
    address: Mapping[str, Any],
    *,
    channel_id: int | None,
    label: str | None = None,
) -> tuple[CustomerAddress, bool]:
    """The profile's address at this place, added if new; True when it was added."""
    data = clean_address(address)
    indexes = blind_indexes("address", address_key(data))
    existing = session.scalar(
        select(CustomerAddress).where(
            CustomerAddress.customer_id == customer_id,
            CustomerAddress.address_index.in_(indexes),
        )
    )
    if existing is not None:
        return existing, False
    area = area_key(data)
    now = utcnow()
    row = CustomerAddress(
        customer_id=customer_id,
        label=label,
        data=data,
        address_index=indexes[0],
        area_index=None if area is None else blind_index("area", area),
        source_channel_id=channel_id,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    session.flush()
    record(session, customer_id, "address.added", {"address_id": row.id}, channel_id)
    return row, True


def _roots(session: Session, ids: Sequence[int]) -> list[Customer]:
    found: dict[int, Customer] = {}
    for customer_id in dict.fromkeys(ids):
        customer = session.get(Customer, customer_id)
        if customer is not None:
            root = root_of(session, customer)
            found.setdefault(root.id, root)
    return list(found.values())


def search_email(session: Session, email: str) -> list[Customer]:
    """Root profiles with this email (login or identity), accounts and verified first."""
    try:
        normal = normalise_email(email)
    except ValueError:
        return []
    accounts = list(
        session.scalars(
            select(Customer.id).where(Customer.email_index.in_(blind_indexes("email", normal)))
        )
    )
    rows = identities_matching(session, IdentityType.EMAIL, normal, None)
    return _roots(session, [*accounts, *(r.customer_id for r in rows)])


def search_phone(session: Session, phone: str) -> list[Customer]:
    try:
        normal = normalise_phone(phone)
    except ValueError:
        return []
    indexes = blind_indexes("phone", normal)
    direct = list(session.scalars(select(Customer.id).where(Customer.phone_index.in_(indexes))))
    rows = identities_matching(session, IdentityType.PHONE, normal, None)
    return _roots(session, [*(r.customer_id for r in rows), *direct])


def search_name(session: Session, name: str) -> list[Customer]:
    """Root profiles with this whole name (either order: "Sato Hana" finds "Hana Sato").

    Names are stored encrypted: only the exact folded name can be found, through its
    blind index, never a part of it."""
    key = name_key(name, None)
    if key is None:
        return []
    ids = list(
        session.scalars(
            select(Customer.id).where(Customer.name_index.in_(blind_indexes("name", key)))
        )
    )
    return _roots(session, ids)


def search_loyalty_card(session: Session, card: str) -> list[Customer]:
    """Root profiles holding this loyalty card number (spaces and dashes do not matter)."""
    try:
        normal = normalise_identity(IdentityType.LOYALTY_CARD, card)
    except ValueError:
        return []
    rows = identities_matching(session, IdentityType.LOYALTY_CARD, normal, None)
    return _roots(session, [r.customer_id for r in rows])


def find_by_email(session: Session, email: str) -> Customer | None:
    """The profile of this email address, through its blind index; None when unknown."""
    found = search_email(session, email)
    return found[0] if found else None


def find_by_phone(session: Session, phone: str) -> Customer | None:
    """The profile of this phone number (any format phonenumbers reads, E.164 best)."""
    found = search_phone(session, phone)
    return found[0] if found else None


def identities_of(session: Session, customer_ids: Sequence[int]) -> list[CustomerIdentity]:
    return list(
        session.scalars(
            select(CustomerIdentity)
            .where(CustomerIdentity.customer_id.in_(customer_ids))
            .order_by(CustomerIdentity.id)
        )
    )


def addresses_of(session: Session, customer_id: int) -> list[CustomerAddress]:
    return list(
        session.scalars(
            select(CustomerAddress)
            .where(CustomerAddress.customer_id == customer_id)
            .order_by(CustomerAddress.id)
        )
    )


def shared_identities(
    session: Session, customer_id: int, identities: Sequence[CustomerIdentity]
) -> dict[int, list[str]]:
    """Other profiles holding one of these identifiers: root id -> identifier types."""
    if not identities:
        return {}
    pairs = [(i.type, i.value_index) for i in identities]
    conditions = [
        (CustomerIdentity.type == kind) & (CustomerIdentity.value_index == index)
        for kind, index in pairs
    ]
    rows = session.execute(
        select(CustomerIdentity.customer_id, CustomerIdentity.type).where(
            or_(*conditions), CustomerIdentity.customer_id != customer_id
        )
    ).all()
    shared: dict[int, list[str]] = {}
    for other_id, kind in rows:
        root = root_id(session, other_id)
        if root is not None and root != customer_id:
            kinds = shared.setdefault(root, [])
            if kind not in kinds:
                kinds.append(kind)
    return shared
