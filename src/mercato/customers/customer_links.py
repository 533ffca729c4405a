"""What the customers domain exports and erases about a person.

Erasure empties the profile (names, email, phone, password, preferences, groups and tags;
blind indexes with them, so the person cannot be found by email or phone any more),
deletes identities, addresses, login tokens and merge suggestions, and marks the profile
``erased``. The id stays: orders, points and figures refer to it, and it now stands for
nobody. Derived figures (amounts, counts) stay; activity entries hold only field names.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from mercato.customers import profiles
from mercato.customers.models import (
    ERASED,
    Customer,
    CustomerActivity,
    CustomerAddress,
    CustomerFigures,
    CustomerIdentity,
    CustomerMerge,
    CustomerOrderFact,
    CustomerRefreshToken,
    CustomerToken,
    MergeSuggestion,
)
from mercato.customers.normalize import IdentityType
from mercato.db import utcnow
from mercato.personal_data import Contacts, DomainPrivacy, Subject, record


def profile_ids(session: Session, customer_id: int) -> list[int]:
    """The profile and every profile merged into it; empty for an unknown customer."""
    if session.get(Customer, customer_id) is None:
        return []
    return profiles.group_ids(session, customer_id)


def contacts_of(session: Session, ids: Sequence[int], *, verified_only: bool) -> Contacts:
    """The emails and phone numbers of these profiles (only verified ones if asked), by
    which a guest's records are recognised as the person's."""
    emails: set[str] = set()
    phones: set[str] = set()
    if not verified_only:
        for customer in session.scalars(select(Customer).where(Customer.id.in_(ids))):
            if customer.email:
                emails.add(customer.email.strip().lower())
            if customer.phone:
                phones.add(customer.phone)
    for identity in profiles.identities_of(session, ids):
        if verified_only and not identity.verified:
            continue
        if identity.type == IdentityType.EMAIL.value:
            emails.add(identity.value)
        elif identity.type == IdentityType.PHONE.value:
            phones.add(identity.value)
    return Contacts(frozenset(emails), frozenset(phones))


def _profiles(session: Session, subject: Subject) -> list[Customer]:
    return list(
        session.scalars(
            select(Customer).where(Customer.id.in_(subject.customer_ids)).order_by(Customer.id)
        )
    )


def _collect(session: Session, subject: Subject) -> None:
    found = subject.identifiers
    for customer in _profiles(session, subject):
        found.add_email(customer.email)
        found.add_phone(customer.phone)
        found.add_name(customer.first_name, customer.last_name)
    for identity in profiles.identities_of(session, subject.customer_ids):
        if identity.type == "email":
            found.add_email(identity.value)
        elif identity.type == "phone":
            found.add_phone(identity.value)
    for address in session.scalars(
        select(CustomerAddress).where(CustomerAddress.customer_id.in_(subject.customer_ids))
    ):
        found.add_address(address.data)


def _export(session: Session, subject: Subject) -> dict[str, Any]:
    ids = subject.customer_ids

    def rows(model: Any, column: Any, *order: Any) -> list[dict[str, Any]]:
        query = select(model).where(column.in_(ids)).order_by(*order)
        return [record(r, exclude=_SECRET) for r in session.scalars(query)]

    return {
        "profiles": [record(c, exclude=_SECRET) for c in _profiles(session, subject)],
        "identities": rows(CustomerIdentity, CustomerIdentity.customer_id, CustomerIdentity.id),
        "addresses": rows(CustomerAddress, CustomerAddress.customer_id, CustomerAddress.id),
        "figures": rows(CustomerFigures, CustomerFigures.customer_id, CustomerFigures.currency),
        "purchases": rows(
            CustomerOrderFact, CustomerOrderFact.customer_id, CustomerOrderFact.order_id
        ),
        "activity": rows(CustomerActivity, CustomerActivity.customer_id, CustomerActivity.id),
        "merges": [
            record(m)
            for m in session.scalars(
                select(CustomerMerge)
                .where(or_(CustomerMerge.into_id.in_(ids), CustomerMerge.from_id.in_(ids)))
                .order_by(CustomerMerge.created_at)
            )
        ],
    }


# Secrets and keyed hashes are not the person's data: they would only help an attacker.
_SECRET = frozenset(
    {
        "password_hash",
        "email_index",
        "phone_index",
        "name_index",
        "value_index",
        "address_index",
        "area_index",
    }
)


def _erase(session: Session, subject: Subject) -> int:
    ids = list(subject.customer_ids)
    customers = _profiles(session, subject)
    for customer in customers:
        customer.email = None
        customer.phone = None
        customer.first_name = None
        customer.last_name = None
        customer.password_hash = None
        customer.locale = None
        customer.currency = None
        customer.preferred_store_id = None
        customer.groups = []
        customer.tags = []
        customer.updated_at = utcnow()
        if customer.id == subject.customer_id:
            customer.status = ERASED
    session.flush()
    for model, column in (
        (CustomerIdentity, CustomerIdentity.customer_id),
        (CustomerAddress, CustomerAddress.customer_id),
        (CustomerToken, CustomerToken.customer_id),
        (CustomerRefreshToken, CustomerRefreshToken.customer_id),
    ):
        session.execute(delete(model).where(column.in_(ids)))
    session.execute(
        delete(MergeSuggestion).where(
            or_(MergeSuggestion.customer_id.in_(ids), MergeSuggestion.candidate_id.in_(ids))
        )
    )
    return len(customers)


PRIVACY = DomainPrivacy("customers", export=_export, erase=_erase, collect=_collect)
