"""Promotions as staff manage them: read, list, create and change (status, schedule, limits).

Every change is audited and published; a changed limit recounts the counters that
enforce it (:mod:`mercato.promotions.limits`) under the promotion row's lock.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.auth.service import audit
from mercato.db import get_or_404, locked_row, utcnow
from mercato.errors import UnprocessableState, ValidationProblem
from mercato.events import publish
from mercato.pagination import Page, decode_cursor, page_of
from mercato.promotions import engine
from mercato.promotions.definitions import (
    action_json,
    build_action,
    build_conditions,
    check_schedule,
    conditions_json,
    money_map,
)
from mercato.promotions.event_types import PromotionCreated, PromotionFacts, PromotionUpdated
from mercato.promotions.limits import budgets_of, recount, set_budget
from mercato.promotions.models import Promotion
from mercato.promotions.references import check_references
from mercato.promotions.schemas import PromotionIn, PromotionPatch, PromotionStatus

_TRANSITIONS: Mapping[PromotionStatus, frozenset[PromotionStatus]] = {
    PromotionStatus.DRAFT: frozenset({PromotionStatus.ACTIVE, PromotionStatus.ARCHIVED}),
    PromotionStatus.ACTIVE: frozenset({PromotionStatus.PAUSED, PromotionStatus.ARCHIVED}),
    PromotionStatus.PAUSED: frozenset({PromotionStatus.ACTIVE, PromotionStatus.ARCHIVED}),
    PromotionStatus.ARCHIVED: frozenset(),
}

_NOT_NULL = ("name", "status", "priority", "stacking", "requires_code", "conditions", "action")
_LIMIT_FIELDS = frozenset({"max_uses", "max_uses_per_customer", "budget"})
# Fields a patch copies onto the row as sent.
_PLAIN_FIELDS = (
    "name",
    "description",
    "priority",
    "requires_code",
    "starts_at",
    "ends_at",
    "max_uses",
    "max_uses_per_customer",
)


def get_promotion(session: Session, promotion_id: int) -> Promotion:
    return get_or_404(session, Promotion, promotion_id, f"promotion {promotion_id}", fresh=True)


def _locked(session: Session, promotion_id: int) -> Promotion:
    return locked_row(session, Promotion, promotion_id, f"promotion {promotion_id}")


def list_promotions(
    session: Session, *, status: PromotionStatus | None, cursor: str | None, limit: int
) -> Page[Promotion]:
    query = select(Promotion).order_by(Promotion.id.desc())
    if status is not None:
        query = query.where(Promotion.status == status.value)
    after = decode_cursor(cursor)
    if after is not None:
        if not isinstance(after, int) or isinstance(after, bool):
            raise ValidationProblem.field("query.cursor", "not a cursor returned by this API")
        query = query.where(Promotion.id < after)
    return page_of(list(session.scalars(query.limit(limit + 1))), limit, key=lambda p: p.id)


def _facts(promotion: Promotion, budget: Mapping[str, Decimal]) -> dict[str, Any]:
    """The promotion as its events state it (every field but ``id`` and ``changed``)."""
    return {
        "name": promotion.name,
        "description": promotion.description,
        "status": promotion.status,
        "priority": promotion.priority,
        "stacking": promotion.stacking,
        "requires_code": promotion.requires_code,
        "conditions": promotion.conditions,
        "action": promotion.action,
        "starts_at": promotion.starts_at,
        "ends_at": promotion.ends_at,
        "budget": {c: str(a) for c, a in sorted(budget.items())},
        "max_uses": promotion.max_uses,
        "max_uses_per_customer": promotion.max_uses_per_customer,
    }


def _snapshot(event: PromotionFacts) -> dict[str, Any]:
    """What the audit log records of the promotion: the event's fields as JSON, without the
    id (the entry's entity) and the names of the fields sent."""
    return {k: v for k, v in event.data().items() if k not in ("id", "changed")}


# --- create -----------------------------------------------------------------------------------


def create_promotion(session: Session, actor: Principal, data: PromotionIn) -> Promotion:
    if data.status not in (PromotionStatus.DRAFT, PromotionStatus.ACTIVE):
        raise ValidationProblem.field("body.status", "a new promotion is draft or active")
    check_schedule(data.starts_at, data.ends_at, ("starts_at", "ends_at"))
    conditions = build_conditions(data.conditions, data.starts_at, data.ends_at)
    action = build_action(data.action)
    budget = money_map(data.budget, "body.budget", positive=True)
    check_references(session, data.conditions, data.action)
    promotion = _new_promotion(data, conditions, action)
    session.add(promotion)
    session.flush()
    set_budget(session, promotion.id, budget)
    event = PromotionCreated(id=promotion.id, **_facts(promotion, budget))
    audit(session, actor, "promotion.created", "promotion", promotion.id, _snapshot(event))
    publish(session, event)
    return promotion


def _new_promotion(
    data: PromotionIn, conditions: engine.Conditions, action: engine.Action
) -> Promotion:
    now = utcnow()
    return Promotion(
        name=data.name,
        description=data.description,
        status=data.status.value,
        priority=data.priority,
        stacking=data.stacking.value,
        requires_code=data.requires_code,
        conditions=conditions_json(conditions),
        action=action_json(action),
        starts_at=data.starts_at,
        ends_at=data.ends_at,
        max_uses=data.max_uses,
        uses=0,
        max_uses_per_customer=data.max_uses_per_customer,
        created_at=now,
        updated_at=now,
    )


# --- update -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Built:
    """The engine forms of what a patch sends (None: not sent)."""

    conditions: engine.Conditions | None
    action: engine.Action | None
    budget: dict[str, Decimal] | None


def _check_transition(promotion: Promotion, target: PromotionStatus) -> None:
    current = PromotionStatus(promotion.status)
    if target is not current and target not in _TRANSITIONS[current]:
        raise UnprocessableState(
            f"promotion {promotion.id} is {current.value} and cannot become {target.value}"
        )


def update_promotion(
    session: Session, actor: Principal, promotion_id: int, patch: PromotionPatch
) -> Promotion:
    """Change the fields sent; a changed limit recounts the counters that enforce it."""
    promotion = _locked(session, promotion_id)
    sent = patch.model_fields_set
    _refuse_nulls(patch, sent)
    if not sent:
        return promotion
    _check_change(promotion, patch, sent)
    built = _build_patch(patch)
    check_references(session, patch.conditions, patch.action)

    _store_patch(session, promotion, patch, sent, built)
    if sent & _LIMIT_FIELDS:
        recount(session, promotion)
    _record_update(session, actor, promotion, sent)
    return promotion


def _refuse_nulls(patch: PromotionPatch, sent: Collection[str]) -> None:
    for name in _NOT_NULL:
        if name in sent and getattr(patch, name) is None:
            raise ValidationProblem.field(f"body.{name}", "may not be null")


def _check_change(promotion: Promotion, patch: PromotionPatch, sent: Collection[str]) -> None:
    """An archived promotion never changes; a status moves only along _TRANSITIONS."""
    if promotion.status == PromotionStatus.ARCHIVED.value:
        raise UnprocessableState(f"promotion {promotion.id} is archived and cannot change")
    if patch.status is not None:
        _check_transition(promotion, patch.status)
    starts_at = patch.starts_at if "starts_at" in sent else promotion.starts_at
    ends_at = patch.ends_at if "ends_at" in sent else promotion.ends_at
    check_schedule(starts_at, ends_at, sent)


def _build_patch(patch: PromotionPatch) -> _Built:
    conditions = (
        None if patch.conditions is None else build_conditions(patch.conditions, None, None)
    )
    action = None if patch.action is None else build_action(patch.action)
    budget = None if patch.budget is None else money_map(patch.budget, "body.budget", positive=True)
    return _Built(conditions, action, budget)


def _store_patch(
    session: Session,
    promotion: Promotion,
    patch: PromotionPatch,
    sent: Collection[str],
    built: _Built,
) -> None:
    _apply_patch(promotion, patch, sent)
    if built.conditions is not None:
        promotion.conditions = conditions_json(built.conditions)
    if built.action is not None:
        promotion.action = action_json(built.action)
    promotion.updated_at = utcnow()
    session.flush()
    if built.budget is not None:
        set_budget(session, promotion.id, built.budget)


def _apply_patch(promotion: Promotion, patch: PromotionPatch, sent: Collection[str]) -> None:
    for name in _PLAIN_FIELDS:
        if name in sent:
            setattr(promotion, name, getattr(patch, name))
    if patch.status is not None:
        promotion.status = patch.status.value
    if patch.stacking is not None:
        promotion.stacking = patch.stacking.value


def _record_update(
    session: Session, actor: Principal, promotion: Promotion, sent: Collection[str]
) -> None:
    current_budget = budgets_of(session, [promotion.id])[promotion.id]
    event = PromotionUpdated(
        id=promotion.id, changed=tuple(sorted(sent)), **_facts(promotion, current_budget)
    )
    snapshot = _snapshot(event)
    changes = {name: snapshot.get(name) for name in sorted(sent)}
    audit(session, actor, "promotion.updated", "promotion", promotion.id, changes)
    publish(session, event)
