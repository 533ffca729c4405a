"""Atomic redemptions: checkout counts the promotions and codes it uses against their limits.

Limits are enforced where concurrency cannot break them: every counter changes through one
conditional UPDATE (``... WHERE uses < max_uses``, ``... WHERE spent + :amount <= limit``)
or one conditional upsert, in the checkout's own transaction. Reading a counter in Python
and writing it back is never done. Reservations and releases lock the promotions' rows
``FOR KEY SHARE`` first (see :mod:`mercato.promotions.limits`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from mercato.db import utcnow
from mercato.errors import Conflict, ValidationProblem
from mercato.events import publish
from mercato.money import to_minor
from mercato.pagination import Page, decode_cursor, page_of
from mercato.promotions import engine
from mercato.promotions.engine import PromotionResult, Reason
from mercato.promotions.event_types import (
    PromotionRedeemed,
    RedeemedDiscount,
    RedemptionsReleased,
)
from mercato.promotions.limits import ACTIVE_REDEMPTION, ACTIVE_STATUSES
from mercato.promotions.models import (
    Promotion,
    PromotionBudget,
    PromotionCode,
    PromotionCustomerUsage,
    Redemption,
)
from mercato.promotions.schemas import PromotionStatus, RedemptionStatus

MAX_REFERENCE_LENGTH = 64


class PromotionUnavailable(Conflict):
    code = "promotion-unavailable"
    title = "A promotion is no longer available"


@dataclass(frozen=True)
class _Locked:
    status: str
    starts_at: datetime | None
    ends_at: datetime | None
    max_uses: int | None
    max_uses_per_customer: int | None


def _key_share(session: Session, promotion_ids: Iterable[int]) -> dict[int, _Locked]:
    """The promotions' limits, locked FOR KEY SHARE: checkouts never wait on each other,
    but a limit change (FOR UPDATE) waits for them and they for it."""
    rows = session.execute(
        select(
            Promotion.id,
            Promotion.status,
            Promotion.starts_at,
            Promotion.ends_at,
            Promotion.max_uses,
            Promotion.max_uses_per_customer,
        )
        .where(Promotion.id.in_(sorted(set(promotion_ids))))
        .with_for_update(read=True, key_share=True)
    )
    return {
        pid: _Locked(status, starts, ends, max_uses, per_customer)
        for pid, status, starts, ends, max_uses, per_customer in rows
    }


def _budgeted(session: Session, promotion_ids: Iterable[int], currency: str) -> set[int]:
    """Promotions with a budget in ``currency``. A statement of its own, after the lock:
    PostgreSQL re-reads a row it waited for, but not the rows joined to it, so a budget
    created by the limit change just waited for would be missed by a join."""
    return set(
        session.scalars(
            select(PromotionBudget.promotion_id).where(
                PromotionBudget.promotion_id.in_(sorted(set(promotion_ids))),
                PromotionBudget.currency == currency,
            )
        )
    )


def _unavailable(
    applied: engine.AppliedPromotion, reason: Reason, why: str
) -> PromotionUnavailable:
    what = f"code {applied.code}" if applied.code else f"promotion {applied.promotion_id}"
    return PromotionUnavailable(
        f"{what}: {why}",
        extra={"promotion_id": applied.promotion_id, "code": applied.code, "reason": reason.value},
    )


def _check_state(applied: engine.AppliedPromotion, state: _Locked | None, now: datetime) -> _Locked:
    if state is None or state.status != PromotionStatus.ACTIVE.value:
        raise _unavailable(applied, Reason.INACTIVE, "the promotion is no longer active")
    if state.starts_at is not None and now < state.starts_at:
        raise _unavailable(applied, Reason.NOT_STARTED, "the promotion has not started")
    if state.ends_at is not None and now >= state.ends_at:
        raise _unavailable(applied, Reason.EXPIRED, "the promotion has ended")
    return state


def _codes_by_value(session: Session, codes: Sequence[str]) -> dict[str, PromotionCode]:
    wanted = [c for c in codes if len(c) <= 64]
    if not wanted:
        return {}
    return {
        row.code: row
        for row in session.scalars(
            select(PromotionCode)
            .where(PromotionCode.code.in_(wanted))
            .execution_options(populate_existing=True)
        )
    }


def _claim_code(
    session: Session,
    applied: engine.AppliedPromotion,
    customer_id: int | None,
    now: datetime,
) -> int:
    """Use the code once, if it is still usable by this customer: one conditional UPDATE."""
    assert applied.code is not None
    code_id = session.scalar(
        update(PromotionCode)
        .where(
            PromotionCode.code == applied.code,
            PromotionCode.promotion_id == applied.promotion_id,
            PromotionCode.disabled_at.is_(None),
            or_(PromotionCode.customer_id.is_(None), PromotionCode.customer_id == customer_id),
            or_(PromotionCode.expires_at.is_(None), PromotionCode.expires_at > now),
            or_(PromotionCode.max_uses.is_(None), PromotionCode.uses < PromotionCode.max_uses),
        )
        .values(uses=PromotionCode.uses + 1)
        .returning(PromotionCode.id),
        execution_options={"synchronize_session": False},
    )
    if code_id is not None:
        return int(code_id)
    # Why not: read the code only on this (rare) path.
    code = _codes_by_value(session, [applied.code]).get(applied.code)
    if code is None or code.promotion_id != applied.promotion_id:
        raise _unavailable(applied, Reason.UNKNOWN_CODE, "unknown code")
    if code.customer_id is not None and code.customer_id != customer_id:
        raise _unavailable(applied, Reason.NOT_YOUR_CODE, "a personal code of another customer")
    raise _unavailable(
        applied, Reason.USAGE_LIMIT_REACHED, "the code is used up, expired or disabled"
    )


def _claim_total(session: Session, applied: engine.AppliedPromotion) -> None:
    done = session.execute(
        update(Promotion)
        .where(Promotion.id == applied.promotion_id, Promotion.uses < Promotion.max_uses)
        .values(uses=Promotion.uses + 1),
        execution_options={"synchronize_session": False},
    )
    if not getattr(done, "rowcount", 0):
        raise _unavailable(applied, Reason.USAGE_LIMIT_REACHED, "the promotion is used up")


def _claim_customer(
    session: Session, applied: engine.AppliedPromotion, customer_id: int | None, limit: int
) -> None:
    if customer_id is None:
        raise _unavailable(applied, Reason.SIGN_IN_REQUIRED, "limited per customer")
    dialect = session.get_bind().dialect.name
    maker = pg_insert if dialect == "postgresql" else sqlite_insert
    first_use = maker(PromotionCustomerUsage).values(
        promotion_id=applied.promotion_id, customer_id=customer_id, uses=1
    )
    # One statement: a first use inserts, later ones increment only while below the limit,
    # and two racing first uses serialise on the primary key.
    stmt = first_use.on_conflict_do_update(
        index_elements=["promotion_id", "customer_id"],
        set_={"uses": PromotionCustomerUsage.uses + 1},
        where=PromotionCustomerUsage.uses < limit,
    ).returning(PromotionCustomerUsage.uses)
    if session.execute(stmt).first() is None:
        raise _unavailable(
            applied, Reason.CUSTOMER_LIMIT_REACHED, "the customer has used it up already"
        )


def _claim_budget(
    session: Session, applied: engine.AppliedPromotion, amount: int, currency: str
) -> None:
    done = session.execute(
        update(PromotionBudget)
        .where(
            PromotionBudget.promotion_id == applied.promotion_id,
            PromotionBudget.currency == currency,
            PromotionBudget.spent_minor + amount <= PromotionBudget.limit_minor,
        )
        .values(spent_minor=PromotionBudget.spent_minor + amount),
        execution_options={"synchronize_session": False},
    )
    if not getattr(done, "rowcount", 0):
        raise _unavailable(applied, Reason.BUDGET_EXHAUSTED, "the promotion's budget is spent")


def _check_reference(reference: str) -> None:
    if not reference or len(reference) > MAX_REFERENCE_LENGTH:
        raise ValueError(f"reference must be 1 to {MAX_REFERENCE_LENGTH} characters")


def reserve_redemptions(
    session: Session,
    result: PromotionResult,
    *,
    reference: str,
    customer_id: int | None,
    currency: str,
    new_reference: bool = False,
) -> list[Redemption]:
    """Count every applied promotion and code of ``result`` against its limits, atomically.

    ``new_reference=True`` tells that ``reference`` was created in this transaction (a new
    order), so it cannot have redemptions yet and the check for them is skipped.

    Runs in checkout's transaction. Each limit is one conditional UPDATE (or upsert); if any
    is reached a 409 ``promotion-unavailable`` names the code or promotion and nothing of
    this call remains (a savepoint), so checkout can re-evaluate or roll back.
    """
    if result.currency != currency:
        raise ValueError(f"the result is in {result.currency}, not {currency}")
    _check_reference(reference)
    applied = sorted(result.applied, key=lambda a: a.promotion_id)
    if not applied:
        return []
    claim = _Claim(reference, customer_id, currency, utcnow())
    with session.begin_nested():
        if not new_reference:
            _refuse_existing(session, reference)
        ids = [a.promotion_id for a in applied]
        states = _key_share(session, ids)
        budgeted = _budgeted(session, ids, currency)
        # Promotion order is the lock order, so two checkouts never deadlock.
        rows = [
            _claim(session, claim, a, states.get(a.promotion_id), a.promotion_id in budgeted)
            for a in applied
        ]
        session.add_all(rows)
        session.flush()
    return rows


@dataclass(frozen=True)
class _Claim:
    """Who uses the promotions of one checkout, for what, in which currency, when."""

    reference: str
    customer_id: int | None
    currency: str
    now: datetime


def _refuse_existing(session: Session, reference: str) -> None:
    if session.scalar(
        select(Redemption.id)
        .where(Redemption.reference == reference, Redemption.status.in_(ACTIVE_REDEMPTION))
        .limit(1)
    ):
        raise Conflict(
            f"redemptions for {reference} exist; release them first",
            code="redemptions-exist",
        )


def _claim(
    session: Session,
    claim: _Claim,
    applied: engine.AppliedPromotion,
    state: _Locked | None,
    budgeted: bool,
) -> Redemption:
    """Count one applied promotion against each of its limits; its reserved redemption."""
    checked = _check_state(applied, state, claim.now)
    code_id = _claim_code(session, applied, claim.customer_id, claim.now) if applied.code else None
    if checked.max_uses is not None:
        _claim_total(session, applied)
    if checked.max_uses_per_customer is not None:
        _claim_customer(session, applied, claim.customer_id, checked.max_uses_per_customer)
    amount = to_minor(applied.amount, claim.currency)
    if budgeted:
        _claim_budget(session, applied, amount, claim.currency)
    return Redemption(
        promotion_id=applied.promotion_id,
        code_id=code_id,
        code=applied.code,
        customer_id=claim.customer_id,
        reference=claim.reference,
        amount_minor=amount,
        currency=claim.currency,
        status=RedemptionStatus.RESERVED.value,
        created_at=claim.now,
    )


def _transition(
    session: Session,
    reference: str,
    sources: Collection[RedemptionStatus],
    target: RedemptionStatus,
    stamp: str,
) -> list[Redemption]:
    """Redemptions of ``reference`` moved from ``sources`` to ``target`` by one conditional
    UPDATE: of two racing calls only one gets the rows."""
    _check_reference(reference)
    rows = session.scalars(
        update(Redemption)
        .where(
            Redemption.reference == reference,
            Redemption.status.in_([s.value for s in sources]),
        )
        .values({"status": target.value, stamp: utcnow()})
        .returning(Redemption),
        execution_options={"synchronize_session": False, "populate_existing": True},
    )
    return sorted(rows, key=lambda r: r.id)


def _discounts(rows: Sequence[Redemption]) -> tuple[RedeemedDiscount, ...]:
    return tuple(
        RedeemedDiscount(
            id=r.id,
            promotion_id=r.promotion_id,
            code=r.code,
            customer_id=r.customer_id,
            amount=r.amount,
            currency=r.currency,
        )
        for r in rows
    )


def release_redemptions(session: Session, reference: str) -> list[Redemption]:
    """Give back what ``reference`` used, reserved or confirmed (payment failed, order
    cancelled before fulfilment): counters, code uses and budget, exactly once; a second
    call releases nothing. After fulfilment nothing calls it: a returned order does not
    make a one-time code usable again."""
    released = _transition(
        session, reference, ACTIVE_STATUSES, RedemptionStatus.RELEASED, "released_at"
    )
    if not released:
        return []
    limits = _key_share(session, (r.promotion_id for r in released))
    for r in sorted(released, key=lambda r: (r.promotion_id, r.id)):
        _give_back(session, r, limits[r.promotion_id])
    publish(session, RedemptionsReleased(reference=reference, redemptions=_discounts(released)))
    return released


def _give_back(session: Session, r: Redemption, state: _Locked) -> None:
    no_sync = {"synchronize_session": False}
    if r.code_id is not None:
        session.execute(
            update(PromotionCode)
            .where(PromotionCode.id == r.code_id, PromotionCode.uses > 0)
            .values(uses=PromotionCode.uses - 1),
            execution_options=no_sync,
        )
    if state.max_uses is not None:
        session.execute(
            update(Promotion)
            .where(Promotion.id == r.promotion_id, Promotion.uses > 0)
            .values(uses=Promotion.uses - 1),
            execution_options=no_sync,
        )
    if state.max_uses_per_customer is not None and r.customer_id is not None:
        session.execute(
            update(PromotionCustomerUsage)
            .where(
                PromotionCustomerUsage.promotion_id == r.promotion_id,
                PromotionCustomerUsage.customer_id == r.customer_id,
                PromotionCustomerUsage.uses > 0,
            )
            .values(uses=PromotionCustomerUsage.uses - 1),
            execution_options=no_sync,
        )
    session.execute(
        update(PromotionBudget)
        .where(
            PromotionBudget.promotion_id == r.promotion_id,
            PromotionBudget.currency == r.currency,
            PromotionBudget.spent_minor >= r.amount_minor,
        )
        .values(spent_minor=PromotionBudget.spent_minor - r.amount_minor),
        execution_options=no_sync,
    )


def confirm_redemptions(session: Session, reference: str) -> list[Redemption]:
    """Mark the reserved redemptions of ``reference`` final: the order is placed and paid.
    Released ones stay released."""
    confirmed = _transition(
        session,
        reference,
        (RedemptionStatus.RESERVED,),
        RedemptionStatus.CONFIRMED,
        "confirmed_at",
    )
    if confirmed:
        publish(session, PromotionRedeemed(reference=reference, redemptions=_discounts(confirmed)))
    return confirmed


def list_redemptions(
    session: Session,
    *,
    promotion_id: int | None = None,
    reference: str | None = None,
    customer_id: int | None = None,
    status: RedemptionStatus | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[Redemption]:
    query = select(Redemption).order_by(Redemption.id.desc())
    if promotion_id is not None:
        query = query.where(Redemption.promotion_id == promotion_id)
    if reference is not None:
        query = query.where(Redemption.reference == reference)
    if customer_id is not None:
        query = query.where(Redemption.customer_id == customer_id)
    if status is not None:
        query = query.where(Redemption.status == status.value)
    after = decode_cursor(cursor)
    if after is not None:
        if not isinstance(after, int) or isinstance(after, bool):
            raise ValidationProblem.field("query.cursor", "not a cursor returned by this API")
        query = query.where(Redemption.id < after)
    return page_of(list(session.scalars(query.limit(limit + 1))), limit, key=lambda r: r.id)
