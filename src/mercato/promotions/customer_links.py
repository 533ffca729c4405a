"""Promotions follow a customer merge; what promotions export and erase about a person.

When B is merged into A, B's personal codes become A's (A may use them, B's id no longer
can) and B's redemptions move to A, so a once-per-customer promotion B already used counts
as used by A. The per-customer usage counters of both profiles are then recounted from
their active redemptions (the same rule as a limit change), never added: a redemption
counts once whichever profile it was made under. Undo moves exactly B's codes and
redemptions back and recounts again.

**Export** lists the person's personal codes and redemptions. **Erasure** keeps them:
they hold no personal data beyond the customer id (amounts and order references are
accounting records), and the erased profile can no longer sign in to use a code.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from mercato.merges import (
    CustomerMerged,
    CustomerMergeUndone,
    merge_ids,
    move_rows,
    moved_rows,
    restore_rows,
    table_of,
)
from mercato.personal_data import DomainPrivacy, Subject, record
from mercato.promotions.models import (
    Promotion,
    PromotionCode,
    PromotionCustomerUsage,
    Redemption,
)
from mercato.promotions.service import ACTIVE_REDEMPTION

_MOVED: tuple[Any, ...] = (PromotionCode, Redemption)



def on_merged(session: Session, event: CustomerMerged) -> None:
    merge_id, from_id, into_id = merge_ids(event)
    for model in _MOVED:
        move_rows(session, table_of(model), merge_id, from_id, into_id)
    _recount(session, _promotions_of(session, merge_id), (from_id, into_id))


def on_merge_undone(session: Session, event: CustomerMergeUndone) -> None:
    merge_id, from_id, into_id = merge_ids(event)
    for model in _MOVED:
        restore_rows(session, table_of(model), merge_id)
    _recount(session, _promotions_of(session, merge_id), (from_id, into_id))


def _promotions_of(session: Session, merge_id: str) -> list[int]:
    """Promotions whose per-customer count the merge's redemptions change."""
    ids = moved_rows(session, merge_id, table_of(Redemption))
    if not ids:
        return []
    return sorted(
        session.scalars(select(Redemption.promotion_id).where(Redemption.id.in_(ids)).distinct())
    )


def _recount(session: Session, promotion_ids: list[int], customer_ids: Iterable[int]) -> None:
    """Per-customer usage of these profiles, recounted from their active redemptions.

    The promotion rows are locked ``FOR UPDATE`` in id order, as a limit change does:
    reservations in flight (``FOR KEY SHARE``) finish first and new ones wait.
    """
    if not promotion_ids:
        return
    customers = sorted(set(customer_ids))
    limited = list(
        session.scalars(
            select(Promotion.id)
            .where(Promotion.id.in_(promotion_ids), Promotion.max_uses_per_customer.is_not(None))
            .order_by(Promotion.id)
            .with_for_update()
        )
    )
    if not limited:
        return
    session.execute(
        delete(PromotionCustomerUsage).where(
            PromotionCustomerUsage.promotion_id.in_(limited),
            PromotionCustomerUsage.customer_id.in_(customers),
        ),
        execution_options={"synchronize_session": False},
    )
    counts = (
        select(Redemption.promotion_id, Redemption.customer_id, func.count())
        .where(
            Redemption.promotion_id.in_(limited),
            Redemption.customer_id.in_(customers),
            Redemption.status.in_(ACTIVE_REDEMPTION),
        )
        .group_by(Redemption.promotion_id, Redemption.customer_id)
    )
    session.execute(
        insert(PromotionCustomerUsage).from_select(["promotion_id", "customer_id", "uses"], counts)
    )


def _export(session: Session, subject: Subject) -> dict[str, Any]:
    ids = list(subject.customer_ids)
    codes = session.scalars(
        select(PromotionCode).where(PromotionCode.customer_id.in_(ids)).order_by(PromotionCode.id)
    )
    redemptions = session.scalars(
        select(Redemption).where(Redemption.customer_id.in_(ids)).order_by(Redemption.id)
    )
    usage = session.scalars(
        select(PromotionCustomerUsage)
        .where(PromotionCustomerUsage.customer_id.in_(ids))
        .order_by(PromotionCustomerUsage.promotion_id, PromotionCustomerUsage.customer_id)
    )
    return {
        "personal_codes": [record(c) for c in codes],
        "redemptions": [record(r) for r in redemptions],
        "usage": [record(u) for u in usage],
    }


PRIVACY = DomainPrivacy("promotions", export=_export)
