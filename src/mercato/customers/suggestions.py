"""Likely duplicate profiles, recorded for staff to merge or dismiss.

Scores (0-100) and reasons:

* 100 ``same name and address``: the same normalised name and the same normalised address
  (blind indexes of both match);
* 90 ``same <identifier>``: both profiles hold the same email, phone, card... but it is
  not verified on both, so it was not enough to attach automatically;
* 77-90 ``similar name in the same area``: names whose token-sort similarity (rapidfuzz)
  is at least 85, with an address in the same country and postal code (or city);
  the score is 0.9 x the similarity.

Comparing names needs their plaintext, so names are only compared within a *block*
(profiles with an address in the same area), found through the area blind index.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from mercato.customers import profiles
from mercato.customers.models import ACTIVE, Customer, CustomerAddress, MergeSuggestion
from mercato.customers.normalize import name_key, name_similarity
from mercato.db import utcnow
from mercato.errors import NotFound, UnprocessableState, ValidationProblem
from mercato.pagination import Page, decode_cursor, page_of

SAME_NAME_AND_ADDRESS = 100
SAME_IDENTIFIER = 90
FUZZY_NAME_MIN = 85
FUZZY_WEIGHT = 0.9
# A block larger than this is a busy postal area: compare with the newest profiles only.
MAX_CANDIDATES = 200

OPEN = "open"
MERGED = "merged"
DISMISSED = "dismissed"


def suggest(session: Session, a: int, b: int, score: int, reason: str) -> None:
    """Record (or strengthen) the suggestion that profiles ``a`` and ``b`` are one person."""
    if a == b:
        return
    low, high = sorted((a, b))
    now = utcnow()
    inserted = session.execute(
        profiles.insert_for(session, MergeSuggestion)
        .values(
            customer_id=low,
            candidate_id=high,
            score=score,
            reasons=[reason],
            status=OPEN,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["customer_id", "candidate_id"])
        .returning(MergeSuggestion.id)
    ).scalar_one_or_none()
    if inserted is not None:
        return
    row = session.scalars(
        select(MergeSuggestion)
        .where(MergeSuggestion.customer_id == low, MergeSuggestion.candidate_id == high)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    if reason not in row.reasons:
        row.reasons = [*row.reasons, reason]
    row.score = max(row.score, score)
    row.updated_at = now


def suggest_for_identities(
    session: Session, customer_id: int, shared: dict[int, list[str]]
) -> None:
    for other, kinds in shared.items():
        for kind in kinds:
            suggest(session, customer_id, other, SAME_IDENTIFIER, f"same {kind}")


def suggest_similar(session: Session, customer: Customer) -> int:
    """Compare the profile with the profiles that have an address in one of its areas."""
    mine = profiles.addresses_of(session, customer.id)
    areas = {a.area_index for a in mine if a.area_index}
    if not areas:
        return 0
    my_addresses = {a.address_index for a in mine}
    rows = session.execute(
        select(CustomerAddress.customer_id, CustomerAddress.address_index)
        .join(Customer, Customer.id == CustomerAddress.customer_id)
        .where(
            CustomerAddress.area_index.in_(areas),
            CustomerAddress.customer_id != customer.id,
            Customer.status == ACTIVE,
        )
        .order_by(CustomerAddress.customer_id.desc())
        .limit(MAX_CANDIDATES)
    ).all()
    same_place: dict[int, bool] = {}
    for other_id, address_index in rows:
        same_place[other_id] = same_place.get(other_id, False) or address_index in my_addresses
    return _score_candidates(session, customer, same_place)


def _score_candidates(session: Session, customer: Customer, same_place: dict[int, bool]) -> int:
    my_name = name_key(customer.first_name, customer.last_name)
    if my_name is None or not same_place:
        return 0
    made = 0
    candidates = session.scalars(select(Customer).where(Customer.id.in_(list(same_place))))
    for other in candidates:
        same_name = other.name_index is not None and other.name_index == customer.name_index
        if same_name and same_place[other.id]:
            suggest(session, customer.id, other.id, SAME_NAME_AND_ADDRESS, "same name and address")
            made += 1
            continue
        similarity = name_similarity(my_name, name_key(other.first_name, other.last_name))
        if similarity >= FUZZY_NAME_MIN:
            score = round(similarity * FUZZY_WEIGHT)
            suggest(session, customer.id, other.id, score, "similar name in the same area")
            made += 1
    return made


def list_suggestions(
    session: Session, *, status: str, customer_id: int | None, cursor: str | None, limit: int
) -> Page[MergeSuggestion]:
    """Suggestions, best score first (then newest)."""
    query = select(MergeSuggestion).where(MergeSuggestion.status == status)
    if status == OPEN:
        # A pair with a merged side is settled (or awaits its root's own suggestions).
        merged = select(Customer.id).where(Customer.status != ACTIVE)
        query = query.where(
            MergeSuggestion.customer_id.not_in(merged), MergeSuggestion.candidate_id.not_in(merged)
        )
    if customer_id is not None:
        query = query.where(
            (MergeSuggestion.customer_id == customer_id)
            | (MergeSuggestion.candidate_id == customer_id)
        )
    after = decode_cursor(cursor)
    if after is not None:
        score, ident = _cursor(after)
        query = query.where(
            (MergeSuggestion.score < score)
            | ((MergeSuggestion.score == score) & (MergeSuggestion.id < ident))
        )
    query = query.order_by(MergeSuggestion.score.desc(), MergeSuggestion.id.desc())
    rows = list(session.scalars(query.limit(limit + 1)))
    return page_of(rows, limit, key=lambda s: [s.score, s.id])


def _cursor(value: object) -> tuple[int, int]:
    if (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        return int(value[0]), int(value[1])
    raise ValidationProblem.field("query.cursor", "not a cursor returned by this API")


def dismiss(session: Session, suggestion_id: int) -> MergeSuggestion:
    row = session.get(MergeSuggestion, suggestion_id)
    if row is None:
        raise NotFound(f"merge suggestion {suggestion_id} not found")
    if row.status != OPEN:
        raise UnprocessableState(
            f"merge suggestion {suggestion_id} is {row.status}", code="suggestion-not-open"
        )
    row.status = DISMISSED
    row.updated_at = utcnow()
    return row


def set_pair_status(session: Session, ids: Sequence[int], status: str) -> None:
    low, high = sorted(ids)
    session.execute(
        update(MergeSuggestion)
        .where(MergeSuggestion.customer_id == low, MergeSuggestion.candidate_id == high)
        .values(status=status, updated_at=utcnow())
    )
