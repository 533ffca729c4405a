"""Merging two profiles of one person, and undoing it exactly.

``merge(into=A, from=B)`` moves B's identities, addresses, groups and tags to A, fills
A's empty preferences and name from B, moves B's order facts (and so its figures) to A,
and marks B ``merged`` into A; every profile lookup then answers with A. The merge
record keeps exactly what moved (row ids, the groups and tags A did not have, the names
of the fields filled), never personal values; undo moves exactly that back.

What other domains hold for B (orders, carts, support cases, loyalty points, consents,
payments) is theirs to re-point: they subscribe to ``customer.merged``
(``{"into": A, "from": B, "merge_id": ...}``), record what they moved under the merge id
and move it back on ``customer.merge_undone`` (same data). Until they do, everything
that resolves a customer (tokens, email, phone) already answers with A.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.auth.service import audit
from mercato.customers import figures, profiles, suggestions
from mercato.customers.models import (
    ACTIVE,
    MERGED,
    Customer,
    CustomerAddress,
    CustomerIdentity,
    CustomerMerge,
)
from mercato.db import get_or_404, utcnow
from mercato.errors import Conflict, NotFound, UnprocessableState, ValidationProblem
from mercato.events import publish
from mercato.merges import CustomerMerged, CustomerMergeUndone, MergeFacts

# Filled on A from B when A has none; undo empties them again if still B's value.
FILLABLE = ("first_name", "last_name", "phone", "locale", "currency", "preferred_store_id")
DONE = "merged"
UNDONE = "undone"


def _load(session: Session, customer_id: int) -> Customer:
    customer = session.get(Customer, customer_id, populate_existing=True)
    if customer is None:
        raise NotFound(f"customer {customer_id} not found")
    return customer


def merge(session: Session, actor: Principal, into_id: int, from_id: int) -> CustomerMerge:
    if into_id == from_id:
        raise ValidationProblem.field("body.from", "a profile cannot be merged into itself")
    if session.get(Customer, into_id) is None:
        raise NotFound(f"customer {into_id} not found")
    if session.get(Customer, from_id) is None:
        raise ValidationProblem.field("body.from", f"customer {from_id} does not exist")
    profiles.lock_profiles(session, [into_id, from_id])
    into, source = _load(session, into_id), _load(session, from_id)
    _check_mergeable(session, into, source)
    moved: dict[str, Any] = {
        "identities": _move_identities(session, source.id, into.id),
        "addresses": _move_addresses(session, source.id, into.id),
        "groups": _union(into, source, "groups"),
        "tags": _union(into, source, "tags"),
        "filled": _fill(into, source),
        "orders": figures.move_facts(session, source.id, into.id),
    }
    source.status, source.merged_into_id = MERGED, into.id
    now = utcnow()
    into.updated_at = source.updated_at = now
    record = CustomerMerge(
        id=str(uuid.uuid4()),
        into_id=into.id,
        from_id=source.id,
        status=DONE,
        moved=moved,
        actor_type=actor.kind,
        actor_id=None if actor.id is None else str(actor.id),
        created_at=now,
    )
    session.add(record)
    suggestions.set_pair_status(session, [into.id, source.id], suggestions.MERGED)
    _announce(session, actor, record, CustomerMerged, _counts(moved))
    return record


def _check_mergeable(session: Session, into: Customer, source: Customer) -> None:
    if source.status != ACTIVE:
        root = profiles.root_of(session, source)
        raise Conflict(
            f"customer {source.id} is already merged into customer {root.id}",
            code="already-merged",
            extra={"into": root.id},
        )
    if into.status != ACTIVE:
        root = profiles.root_of(session, into)
        raise Conflict(
            f"customer {into.id} was merged into customer {root.id}: merge into that one",
            code="merged-profile",
            extra={"into": root.id},
        )


def _move_identities(session: Session, source: int, target: int) -> list[int]:
    """B's identifiers that A does not already hold (those stay on B and still lead to A)."""
    held = {
        (row.type, row.value_index)
        for row in session.execute(
            select(CustomerIdentity.type, CustomerIdentity.value_index).where(
                CustomerIdentity.customer_id == target
            )
        )
    }
    movable = [
        row.id
        for row in session.execute(
            select(CustomerIdentity.id, CustomerIdentity.type, CustomerIdentity.value_index)
            .where(CustomerIdentity.customer_id == source)
            .order_by(CustomerIdentity.id)
        )
        if (row.type, row.value_index) not in held
    ]
    _repoint(session, CustomerIdentity, movable, source, target)
    return movable


def _move_addresses(session: Session, source: int, target: int) -> list[dict[str, Any]]:
    """B's addresses A does not have; they lose their default flags where A has its own."""
    mine = profiles.addresses_of(session, target)
    held = {a.address_index for a in mine}
    has_shipping = any(a.default_shipping for a in mine)
    has_billing = any(a.default_billing for a in mine)
    moved = []
    for address in profiles.addresses_of(session, source):
        if address.address_index in held:
            continue
        moved.append(
            {
                "id": address.id,
                "default_shipping": address.default_shipping,
                "default_billing": address.default_billing,
            }
        )
        address.customer_id = target
        address.default_shipping = address.default_shipping and not has_shipping
        address.default_billing = address.default_billing and not has_billing
    return moved


def _repoint(session: Session, model: Any, ids: list[int], source: int, target: int) -> None:
    if ids:
        session.execute(
            update(model)
            .where(model.id.in_(ids), model.customer_id == source)
            .values(customer_id=target)
            .execution_options(synchronize_session=False)
        )


def _union(into: Customer, source: Customer, field: str) -> list[str]:
    have: list[str] = list(getattr(into, field) or [])
    added = [g for g in (getattr(source, field) or []) if g not in have]
    if added:
        setattr(into, field, have + added)
    return added


def _fill(into: Customer, source: Customer) -> list[str]:
    filled = []
    for field in FILLABLE:
        if getattr(into, field) is None and getattr(source, field) is not None:
            setattr(into, field, getattr(source, field))
            filled.append(field)
    return filled


def _counts(moved: dict[str, Any]) -> dict[str, int]:
    return {key: len(value) for key, value in moved.items()}


def _announce(
    session: Session,
    actor: Principal,
    record: CustomerMerge,
    kind: type[MergeFacts],
    counts: dict[str, int],
) -> None:
    event = kind(into_id=record.into_id, from_id=record.from_id, merge_id=record.id)
    data = event.data()
    for customer_id in (record.into_id, record.from_id):
        profiles.record(session, customer_id, kind.TYPE.replace("customer.", "profile."), data)
    audit(session, actor, kind.TYPE, "customer", record.into_id, {**data, "moved": counts})
    publish(session, event)


def get_merge(session: Session, merge_id: str) -> CustomerMerge:
    return get_or_404(session, CustomerMerge, merge_id, f"merge {merge_id}", fresh=True)


def undo_merge(session: Session, actor: Principal, merge_id: str) -> CustomerMerge:
    """Restore B and move back exactly what the merge moved."""
    record = get_merge(session, merge_id)
    profiles.lock_profiles(session, [record.into_id, record.from_id])
    record = get_merge(session, merge_id)
    if record.status != DONE:
        raise UnprocessableState(f"merge {merge_id} was already undone", code="already-undone")
    into, source = _load(session, record.into_id), _load(session, record.from_id)
    if into.status != ACTIVE:
        raise UnprocessableState(
            f"customer {into.id} was merged into customer {into.merged_into_id} since: "
            "undo that merge first",
            code="merge-not-latest",
        )
    moved = record.moved
    _repoint(session, CustomerIdentity, list(moved["identities"]), into.id, source.id)
    _restore_addresses(session, moved["addresses"], into.id, source.id)
    for field in ("groups", "tags"):
        setattr(into, field, [g for g in getattr(into, field) or [] if g not in moved[field]])
    for field in moved["filled"]:
        if getattr(into, field) == getattr(source, field):
            setattr(into, field, None)
    figures.move_facts(session, into.id, source.id, list(moved["orders"]))
    source.status, source.merged_into_id = ACTIVE, None
    now = utcnow()
    into.updated_at = source.updated_at = now
    record.status, record.undone_at = UNDONE, now
    suggestions.set_pair_status(session, [into.id, source.id], suggestions.OPEN)
    _announce(session, actor, record, CustomerMergeUndone, _counts(moved))
    return record


def _restore_addresses(
    session: Session, moved: list[dict[str, Any]], target: int, source: int
) -> None:
    for item in moved:
        address = session.get(CustomerAddress, item["id"])
        if address is None or address.customer_id != target:
            continue  # deleted (or moved on) since the merge: nothing to bring back
        address.customer_id = source
        address.default_shipping = bool(item["default_shipping"])
        address.default_billing = bool(item["default_billing"])
