"""Customer profiles shared by every channel: accounts, the unified profile, merges.

The public API other domains call lives here (some of it implemented in the sibling
modules ``resolution``, ``merging``, ``figures``, ``timeline``)::
    find_by_email(session, email) -> Customer | None
    find_by_phone(session, phone) -> Customer | None
    customer_profile(session, customer_id) -> ProfileOut
    customer_locale(session, customer_id) -> str | None
    customer_groups(session, customer_id) -> frozenset[str]
    resolve_identity(session, *, channel_id, identities, name=None, address=None) -> Customer
    merge(session, actor, into_id, from_id) / undo_merge(session, actor, merge_id)
    register_timeline_source(name, fn) / customer_timeline(session, customer_id, ...)

Every lookup answers with the *root* profile: the one a merged profile was merged into.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mercato.auth.passwords import hash_password, token_hash
from mercato.auth.principal import Principal
from mercato.auth.service import audit
from mercato.channels import service as channels
from mercato.crypto import blind_index, blind_indexes
from mercato.customers import profiles, suggestions
from mercato.customers.event_types import CustomerRegistered, CustomerUpdated
from mercato.customers.figures import figures_of
from mercato.customers.merging import get_merge, merge, undo_merge
from mercato.customers.models import (
    ACTIVE,
    Customer,
    CustomerAddress,
    CustomerIdentity,
    CustomerToken,
)
from mercato.customers.normalize import IdentityType, address_key, area_key, normalise_identity
from mercato.customers.profiles import find_by_email, find_by_phone
from mercato.customers.resolution import resolve_identity
from mercato.customers.schemas import (
    AddressIn,
    AddressOut,
    AddressPatch,
    CurrencyFiguresOut,
    FiguresOut,
    IdentityIn,
    IdentityOut,
    ProfileOut,
    ProfilePatch,
    RegisterIn,
    RfmOut,
    StaffProfilePatch,
)
from mercato.customers.timeline import (
    TimelineEntry,
    customer_timeline,
    register_timeline_source,
)
from mercato.db import utcnow
from mercato.errors import Conflict, NotFound, Unauthorized, ValidationProblem
from mercato.events import publish
from mercato.locations import service as locations
from mercato.pagination import Page, decode_cursor, page_of

__all__ = [
    "TimelineEntry",
    "customer_timeline",
    "find_by_email",
    "find_by_phone",
    "get_merge",
    "merge",
    "register_timeline_source",
    "resolve_identity",
    "undo_merge",
]

# Fields that hold personal data: audit entries and events name them, never their values.
PERSONAL_FIELDS = frozenset({"first_name", "last_name", "phone", "email"})


def register(session: Session, channel_id: int, data: RegisterIn) -> Customer:
    email = data.email.strip().lower()
    if find_account(session, email) is not None:
        raise Conflict("an account with this email exists", code="duplicate-email")
    now = utcnow()
    customer = Customer(
        email=email,
        phone=data.phone,
        password_hash=hash_password(data.password),
        first_name=data.first_name,
        last_name=data.last_name,
        locale=data.locale,
        groups=[],
        tags=[],
        status=ACTIVE,
        registered_channel_id=channel_id,
        created_at=now,
        updated_at=now,
    )
    session.add(customer)
    session.flush()
    added = [
        profiles.add_identity(
            session, customer.id, IdentityType.EMAIL, email, verified=False, channel_id=channel_id
        )
    ]
    if data.phone:
        added.append(
            profiles.add_identity(
                session,
                customer.id,
                IdentityType.PHONE,
                data.phone,
                verified=False,
                channel_id=channel_id,
            )
        )
    profiles.record(session, customer.id, "profile.registered", {}, channel_id)
    suggestions.suggest_for_identities(
        session, customer.id, profiles.shared_identities(session, customer.id, added)
    )
    publish(session, CustomerRegistered(customer_id=customer.id, channel_id=channel_id))
    return customer


def find_account(session: Session, email: str) -> Customer | None:
    """The account whose login email this is (not resolved to a root)."""
    return session.scalar(
        select(Customer).where(
            Customer.email_index.in_(blind_indexes("email", email.strip().lower()))
        )
    )


def authenticate(session: Session, token: str) -> Customer:
    row = session.execute(
        select(CustomerToken, Customer)
        .join(Customer, Customer.id == CustomerToken.customer_id)
        .where(CustomerToken.token_hash == token_hash(token))
    ).one_or_none()
    if row is None:
        raise Unauthorized("unknown customer token", code="invalid-customer-token")
    tok, customer = row
    if tok.revoked_at is not None or tok.expires_at < utcnow():
        raise Unauthorized("customer token expired or revoked", code="invalid-customer-token")
    # One extra query only for a token of a merged profile.
    return customer if customer.status == ACTIVE else profiles.root_of(session, customer)


def get_customer(session: Session, customer_id: int) -> Customer:
    return profiles.get(session, customer_id)


def list_customers(
    session: Session,
    *,
    email: str | None,
    cursor: str | None,
    limit: int,
    phone: str | None = None,
    name: str | None = None,
    loyalty_card: str | None = None,
) -> Page[Customer]:
    """Active profiles by id; with ``email``, ``phone``, ``name`` (the whole name) or
    ``loyalty_card``, the profiles that hold any of them."""
    query = select(Customer).where(Customer.status == ACTIVE).order_by(Customer.id)
    if email or phone or name or loyalty_card:
        found = [
            *(profiles.search_email(session, email) if email else []),
            *(profiles.search_phone(session, phone) if phone else []),
            *(profiles.search_name(session, name) if name else []),
            *(profiles.search_loyalty_card(session, loyalty_card) if loyalty_card else []),
        ]
        query = query.where(Customer.id.in_([c.id for c in found]))
    after = decode_cursor(cursor)
    if after is not None:
        if not isinstance(after, int) or isinstance(after, bool):
            raise ValidationProblem.field("query.cursor", "not a cursor returned by this API")
        query = query.where(Customer.id > after)
    return page_of(list(session.scalars(query.limit(limit + 1))), limit, key=lambda c: c.id)


def customer_groups(session: Session, customer_id: int | None) -> frozenset[str]:
    if customer_id is None:
        return frozenset()
    row = session.execute(
        select(Customer.groups, Customer.status).where(Customer.id == customer_id)
    ).one_or_none()
    if row is None:
        return frozenset()
    if row.status != ACTIVE:
        root = profiles.root_id(session, customer_id)
        if root is not None and root != customer_id:
            return customer_groups(session, root)
    return frozenset(row.groups or ())


def customer_locale(session: Session, customer_id: int) -> str | None:
    """The language to address the customer in: their preference, else the language of
    the channel they first came through; None when neither is known."""

    customer = profiles.root_of(session, profiles.get(session, customer_id))
    if customer.locale:
        return customer.locale
    if customer.registered_channel_id is None:
        return None
    try:
        return channels.get_channel(session, customer.registered_channel_id).default_locale
    except NotFound:
        return None


def address_out(address: CustomerAddress) -> AddressOut:
    return AddressOut.model_validate(
        {
            **address.data,
            "id": address.id,
            "label": address.label,
            "default_shipping": address.default_shipping,
            "default_billing": address.default_billing,
            "source_channel_id": address.source_channel_id,
            "created_at": address.created_at,
        }
    )


def _figures_out(session: Session, customer_id: int) -> FiguresOut:
    found = figures_of(session, customer_id)
    return FiguresOut(
        order_count=found.order_count,
        lifetime_value=[
            CurrencyFiguresOut.model_validate(c, from_attributes=True) for c in found.by_currency
        ],
        first_purchase_at=found.first_purchase_at,
        last_purchase_at=found.last_purchase_at,
        favourite_channel_id=found.favourite_channel_id,
        favourite_store_id=found.favourite_store_id,
        rfm=None if found.rfm is None else RfmOut.model_validate(found.rfm, from_attributes=True),
        segment=found.segment,
    )


def customer_profile(session: Session, customer_id: int) -> ProfileOut:
    """The unified profile with personal data in clear (callers redact for their audience).

    A merged profile's id answers with what that profile still holds and its status;
    ``merged_into_id`` names the profile to read instead.
    """
    customer = profiles.get(session, customer_id)
    members = profiles.group_ids(session, customer.id)
    return ProfileOut.model_validate(
        {
            **{k: getattr(customer, k) for k in _CUSTOMER_FIELDS},
            "groups": list(customer.groups or []),
            "tags": list(customer.tags or []),
            "identities": [
                IdentityOut.model_validate(i)
                for i in profiles.identities_of(session, [customer.id])
            ],
            "addresses": [address_out(a) for a in profiles.addresses_of(session, customer.id)],
            "figures": _figures_out(session, customer.id),
            "merged_profile_ids": members[1:],
        }
    )


_CUSTOMER_FIELDS = (
    "id",
    "email",
    "phone",
    "first_name",
    "last_name",
    "locale",
    "currency",
    "preferred_store_id",
    "status",
    "merged_into_id",
    "registered_channel_id",
    "created_at",
)


def update_profile(
    session: Session,
    customer_id: int,
    patch: ProfilePatch,
    *,
    actor: Principal | None = None,
    channel_id: int | None = None,
) -> Customer:
    """Apply the fields sent (null clears); staff changes are audited (field names only)."""
    customer = profiles.get(session, customer_id)
    changes = patch.model_dump(exclude_unset=True)
    if changes.get("preferred_store_id") is not None:
        locations.require_existing(
            session, [changes["preferred_store_id"]], field="preferred_store_id"
        )
    if isinstance(patch, StaffProfilePatch):
        for field in ("groups", "tags"):
            if field in changes and changes[field] is None:
                changes[field] = []
    changed = [f for f, v in changes.items() if getattr(customer, f) != v]
    for field in changed:
        setattr(customer, field, changes[field])
    if changes.get("phone"):
        profiles.add_identity(
            session,
            customer.id,
            IdentityType.PHONE,
            changes["phone"],
            verified=False,
            channel_id=channel_id,
        )
    if changed:
        _profile_changed(session, customer, changed, actor, channel_id)
    return customer


def _profile_changed(
    session: Session,
    customer: Customer,
    changed: Sequence[str],
    actor: Principal | None,
    channel_id: int | None,
) -> None:
    customer.updated_at = utcnow()
    data = {"fields": sorted(changed)}
    profiles.record(session, customer.id, "profile.updated", data, channel_id)
    if actor is not None:
        shown = {f: getattr(customer, f) for f in changed if f not in PERSONAL_FIELDS}
        audit(
            session,
            actor,
            "customer.updated",
            "customer",
            customer.id,
            {"fields": sorted(changed), "values": shown},
        )
    publish(session, CustomerUpdated(customer_id=customer.id, fields=tuple(sorted(changed))))


def add_identity(
    session: Session, actor: Principal, customer_id: int, data: IdentityIn
) -> CustomerIdentity:
    """Staff add an identifier (a loyalty card handed over, a phone confirmed by call)."""
    customer = profiles.get(session, customer_id)
    try:
        value = normalise_identity(data.type, data.value)
    except ValueError as exc:
        raise ValidationProblem.field("body.value", str(exc)) from exc
    if data.verified:
        for row in profiles.identities_matching(session, data.type, value, None):
            owner = profiles.root_id(session, row.customer_id)
            if row.verified and owner != customer.id:
                raise Conflict(
                    f"this {data.type.value} is verified for customer {owner}: merge instead",
                    code="identity-taken",
                    extra={"customer_id": owner},
                )
    identity = profiles.add_identity(
        session, customer.id, data.type, value, verified=data.verified, channel_id=None
    )
    suggestions.suggest_for_identities(
        session, customer.id, profiles.shared_identities(session, customer.id, [identity])
    )
    audit(
        session,
        actor,
        "customer.identity_added",
        "customer",
        customer.id,
        {"type": data.type.value, "verified": data.verified},
    )
    return identity


def add_address(
    session: Session,
    customer_id: int,
    data: AddressIn,
    *,
    actor: Principal | None = None,
    channel_id: int | None = None,
) -> CustomerAddress:
    customer = profiles.get(session, customer_id)
    fields = data.model_dump(exclude={"label", "default_shipping", "default_billing"})
    address, added = profiles.add_address(
        session, customer.id, fields, channel_id=channel_id, label=data.label
    )
    if not added:
        raise Conflict(
            "the profile already has this address",
            code="duplicate-address",
            extra={"address_id": address.id},
        )
    _set_defaults(session, address, data.default_shipping, data.default_billing)
    if actor is not None:
        audit(
            session,
            actor,
            "customer.address_added",
            "customer",
            customer.id,
            {"address_id": address.id},
        )
    return address


def _set_defaults(
    session: Session, address: CustomerAddress, shipping: bool | None, billing: bool | None
) -> None:
    """At most one default shipping and one default billing address per profile."""
    for field, wanted in (("default_shipping", shipping), ("default_billing", billing)):
        if wanted is None:
            continue
        if wanted:
            for other in profiles.addresses_of(session, address.customer_id):
                if other.id != address.id and getattr(other, field):
                    setattr(other, field, False)
        setattr(address, field, wanted)


def _own_address(session: Session, customer_id: int, address_id: int) -> CustomerAddress:
    address = session.get(CustomerAddress, address_id)
    if address is None or address.customer_id != customer_id:
        raise NotFound(f"address {address_id} not found")
    return address


def update_address(
    session: Session, customer_id: int, address_id: int, patch: AddressPatch
) -> CustomerAddress:
    address = _own_address(session, customer_id, address_id)
    changes = patch.model_dump(exclude_unset=True)
    flags = {k: changes.pop(k) for k in ("default_shipping", "default_billing") if k in changes}
    if "label" in changes:
        address.label = changes.pop("label")
    for required in ("line1", "city", "country"):
        if required in changes and changes[required] is None:
            raise ValidationProblem.field(f"body.{required}", "cannot be cleared")
    if changes:
        data = profiles.clean_address({**address.data, **changes})
        address.data = data
        address.address_index = blind_index("address", address_key(data))
        area = area_key(data)
        address.area_index = None if area is None else blind_index("area", area)
    _set_defaults(session, address, flags.get("default_shipping"), flags.get("default_billing"))
    address.updated_at = utcnow()
    profiles.record(session, customer_id, "address.updated", {"address_id": address.id})
    return address


def delete_address(session: Session, customer_id: int, address_id: int) -> None:
    address = _own_address(session, customer_id, address_id)
    session.delete(address)
    profiles.record(session, customer_id, "address.removed", {"address_id": address_id})


def list_addresses(session: Session, customer_id: int) -> list[CustomerAddress]:
    return profiles.addresses_of(session, customer_id)


def list_suggestions(
    session: Session, *, status: str, customer_id: int | None, cursor: str | None, limit: int
) -> Page[Any]:
    return suggestions.list_suggestions(
        session, status=status, customer_id=customer_id, cursor=cursor, limit=limit
    )


def dismiss_suggestion(session: Session, actor: Principal, suggestion_id: int) -> Any:
    row = suggestions.dismiss(session, suggestion_id)
    audit(
        session,
        actor,
        "customer.suggestion_dismissed",
        "customer",
        row.customer_id,
        {"suggestion_id": row.id, "candidate_id": row.candidate_id},
    )
    return row
