"""Identity resolution: which profile an incoming order or POS sale belongs to.

Rules, for identifiers ``(type, value, verified)`` reported by a channel:

1. A *verified* identifier that matches a *verified* identifier of a profile attaches the
   sale to that profile (its root, if it was merged). When several profiles match that
   way the oldest wins, the others are suggested for merging (score 100), and an
   identifier verified for one of them is added to the winner unverified.
2. Otherwise a new profile is created. An unverified match is never enough to attach:
   somebody typing another person's email must not see that person's history, and a
   registration does not prove an email. Profiles sharing an identifier, or with the
   same or a similar name in the same area, are recorded as merge suggestions.
3. The identifiers, name and address are added to the chosen profile where new.

A verified identifier belongs to one profile (unique index). Two sales resolving the
same new verified identifier at once both try to create it; the loser's savepoint rolls
back on the unique index and it attaches to the winner's profile instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mercato.customers import profiles, suggestions
from mercato.customers.event_types import CustomerCreated
from mercato.customers.models import Customer
from mercato.customers.normalize import IdentityType, normalise_identity, split_name
from mercato.db import utcnow
from mercato.errors import Conflict, FieldError, ValidationProblem
from mercato.events import publish
from mercato.locations.schemas import validate_country

ATTEMPTS = 3


@dataclass(frozen=True)
class Claim:
    kind: IdentityType
    value: str
    verified: bool


def parse_claims(identities: Sequence[tuple[str, str, bool]], field: str) -> list[Claim]:
    """Normalised identifiers, or a 422 naming each bad one (``identities[1].value``)."""
    claims, errors = [], []
    if not identities:
        errors.append(FieldError(field, "at least one identifier is required"))
    for n, (kind, value, verified) in enumerate(identities):
        try:
            parsed = IdentityType(kind)
        except ValueError:
            errors.append(FieldError(f"{field}[{n}].type", f"unknown identifier type {kind!r}"))
            continue
        try:
            claims.append(Claim(parsed, normalise_identity(parsed, str(value)), bool(verified)))
        except ValueError as exc:
            errors.append(FieldError(f"{field}[{n}].value", str(exc)))
    if errors:
        raise ValidationProblem(
            "; ".join(f"{e['field']}: {e['reason']}" for e in errors), errors=errors
        )
    return claims


def check_address(address: Mapping[str, Any] | None, field: str) -> dict[str, Any] | None:
    if address is None:
        return None
    cleaned = profiles.clean_address(address)
    try:
        cleaned["country"] = validate_country(str(cleaned.get("country", "")))
    except ValueError as exc:
        raise ValidationProblem.field(f"{field}.country", str(exc)) from exc
    return cleaned


def resolve_identity(
    session: Session,
    *,
    channel_id: int,
    identities: Sequence[tuple[str, str, bool]],
    name: str | None = None,
    address: Mapping[str, Any] | None = None,
    field: str = "identities",
    address_field: str = "address",
) -> Customer:
    """The (root) profile these identifiers belong to, created when none matches.

    ``field`` and ``address_field`` name the inputs in a 422 (``body.identities``)."""
    claims = parse_claims(identities, field)
    cleaned = check_address(address, address_field)
    for _ in range(ATTEMPTS):
        try:
            with session.begin_nested():
                return _resolve(session, channel_id, claims, name, cleaned)
        except IntegrityError:
            continue  # a concurrent resolution claimed a verified identifier first
    raise Conflict("identifiers are being claimed concurrently; retry", code="identity-race")


def _resolve(
    session: Session,
    channel_id: int,
    claims: list[Claim],
    name: str | None,
    address: dict[str, Any] | None,
) -> Customer:
    owners: list[set[int]] = []  # per claim: roots holding it verified
    for claim in claims:
        roots: set[int] = set()
        if claim.verified:
            for row in profiles.identities_matching(session, claim.kind, claim.value, channel_id):
                root = profiles.root_id(session, row.customer_id) if row.verified else None
                if root is not None:
                    roots.add(root)
        owners.append(roots)
    strong = sorted(set().union(*owners))
    created = not strong
    target = (
        _new_profile(session, channel_id, name) if created else profiles.get(session, strong[0])
    )
    for other in strong[1:]:
        suggestions.suggest(session, target.id, other, 100, "same verified identifier")
    added = [
        profiles.add_identity(
            session,
            target.id,
            claim.kind,
            claim.value,
            # Verified for another profile: it cannot be verified for two (suggested above).
            verified=claim.verified and not (roots - {target.id}),
            channel_id=channel_id,
        )
        for claim, roots in zip(claims, owners, strict=True)
    ]
    session.flush()
    if name and target.first_name is None and target.last_name is None:
        target.first_name, target.last_name = split_name(name)
    if address:
        profiles.add_address(session, target.id, address, channel_id=channel_id)
    suggestions.suggest_for_identities(
        session, target.id, profiles.shared_identities(session, target.id, added)
    )
    if created:
        session.flush()
        suggestions.suggest_similar(session, target)
    return target


def _new_profile(session: Session, channel_id: int, name: str | None) -> Customer:
    first, last = split_name(name) if name else (None, None)
    now = utcnow()
    customer = Customer(
        first_name=first,
        last_name=last,
        registered_channel_id=channel_id,
        groups=[],
        tags=[],
        created_at=now,
        updated_at=now,
    )
    session.add(customer)
    session.flush()
    profiles.record(session, customer.id, "profile.created", {"via": "resolution"}, channel_id)
    publish(
        session,
        CustomerCreated(customer_id=customer.id, channel_id=channel_id, source="resolution"),
    )
    return customer
