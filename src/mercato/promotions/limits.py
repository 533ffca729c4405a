"""What each promotion has used, and the counters that enforce its limits.

``promotion_codes.uses`` is always kept. The promotion's ``uses``, its budgets'
``spent_minor`` and the per-customer usage rows are kept only while their limit is set (so
an unlimited automatic promotion is not one hot row every checkout writes). When staff
change a limit the promotion row is locked ``FOR UPDATE`` and the counters are recounted
from the redemption rows (:func:`recount`); reservations and releases take a
``FOR KEY SHARE`` lock on the same rows first, which never blocks another checkout but
makes a recount wait for them (and them for it), so no redemption is missed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.orm import Session

from mercato.money import from_minor, to_minor
from mercato.promotions.models import (
    Promotion,
    PromotionBudget,
    PromotionCustomerUsage,
    Redemption,
)
from mercato.promotions.schemas import RedemptionStatus

ACTIVE_STATUSES = (RedemptionStatus.RESERVED, RedemptionStatus.CONFIRMED)
ACTIVE_REDEMPTION = tuple(s.value for s in ACTIVE_STATUSES)


def budgets_of(session: Session, promotion_ids: Iterable[int]) -> dict[int, dict[str, Decimal]]:
    """Each promotion's budget limits by currency (one query)."""
    ids = sorted(set(promotion_ids))
    found: dict[int, dict[str, Decimal]] = {i: {} for i in ids}
    if not ids:
        return found
    rows = session.execute(
        select(PromotionBudget.promotion_id, PromotionBudget.currency, PromotionBudget.limit_minor)
        .where(PromotionBudget.promotion_id.in_(ids))
        .order_by(PromotionBudget.currency)
    )
    for promotion_id, currency, limit in rows:
        found[promotion_id][currency] = from_minor(limit, currency)
    return found


@dataclass(frozen=True)
class Usage:
    """Active (reserved or confirmed) redemptions of a promotion and the discount they gave."""

    redemptions: int
    spent: dict[str, Decimal]


def usage_of(session: Session, promotion_ids: Iterable[int]) -> dict[int, Usage]:
    """Usage of each promotion, from its redemption rows (one grouped query)."""
    ids = sorted(set(promotion_ids))
    counts: dict[int, int] = dict.fromkeys(ids, 0)
    spent: dict[int, dict[str, Decimal]] = {i: {} for i in ids}
    if ids:
        rows = session.execute(
            select(
                Redemption.promotion_id,
                Redemption.currency,
                func.count(),
                func.sum(Redemption.amount_minor),
            )
            .where(Redemption.promotion_id.in_(ids), Redemption.status.in_(ACTIVE_REDEMPTION))
            .group_by(Redemption.promotion_id, Redemption.currency)
            .order_by(Redemption.currency)
        )
        for promotion_id, currency, count, total in rows:
            counts[promotion_id] += int(count)
            spent[promotion_id][currency] = from_minor(int(total or 0), currency)
    return {i: Usage(counts[i], spent[i]) for i in ids}


def set_budget(session: Session, promotion_id: int, budget: Mapping[str, Decimal]) -> None:
    rows = {
        b.currency: b
        for b in session.scalars(
            select(PromotionBudget).where(PromotionBudget.promotion_id == promotion_id)
        )
    }
    for currency, row in rows.items():
        if currency not in budget:
            session.delete(row)
    for currency, amount in budget.items():
        if currency in rows:
            rows[currency].limit_minor = to_minor(amount, currency)
        else:
            session.add(
                PromotionBudget(
                    promotion_id=promotion_id,
                    currency=currency,
                    limit_minor=to_minor(amount, currency),
                    spent_minor=0,
                )
            )
    session.flush()


def recount(session: Session, promotion: Promotion) -> None:
    """Set every limit counter of the promotion from its active redemption rows.

    The caller holds the promotion row ``FOR UPDATE``: reservations and releases in flight
    (which hold ``FOR KEY SHARE``) have finished, and new ones wait until this commits.
    """
    active = and_(Redemption.promotion_id == promotion.id, Redemption.status.in_(ACTIVE_REDEMPTION))
    no_sync = {"synchronize_session": False}
    uses = select(func.count()).select_from(Redemption).where(active).scalar_subquery()
    session.execute(
        update(Promotion).where(Promotion.id == promotion.id).values(uses=uses),
        execution_options=no_sync,
    )
    spent = (
        select(func.coalesce(func.sum(Redemption.amount_minor), 0))
        .where(active, Redemption.currency == PromotionBudget.currency)
        .scalar_subquery()
    )
    session.execute(
        update(PromotionBudget)
        .where(PromotionBudget.promotion_id == promotion.id)
        .values(spent_minor=spent),
        execution_options=no_sync,
    )
    session.execute(
        delete(PromotionCustomerUsage).where(PromotionCustomerUsage.promotion_id == promotion.id),
        execution_options=no_sync,
    )
    if promotion.max_uses_per_customer is not None:
        per_customer = (
            select(Redemption.promotion_id, Redemption.customer_id, func.count())
            .where(active, Redemption.customer_id.is_not(None))
            .group_by(Redemption.promotion_id, Redemption.customer_id)
        )
        session.execute(
            insert(PromotionCustomerUsage).from_select(
                ["promotion_id", "customer_id", "uses"], per_customer
            )
        )
    session.expire(promotion, ["uses"])
