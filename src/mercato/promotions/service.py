"""Promotions use cases: definitions, codes, cart evaluation and atomic redemption.

The discount arithmetic lives in :mod:`mercato.promotions.engine`; this module stores
promotions and codes, decides which of them a cart may use, and counts their use.

Limits are enforced where concurrency cannot break them: every counter changes through one
conditional UPDATE (``... WHERE uses < max_uses``, ``... WHERE spent + :amount <= limit``)
or one conditional upsert, in the checkout's own transaction. Reading a counter in Python
and writing it back is never done.

Counters and limit changes. ``promotion_codes.uses`` is always kept. The promotion's
``uses``, its budgets' ``spent_minor`` and the per-customer usage rows are kept only while
their limit is set (so an unlimited automatic promotion is not one hot row every checkout
writes). When staff change a limit the promotion row is locked ``FOR UPDATE`` and the
counters are recounted from the redemption rows; reservations and releases take a
``FOR KEY SHARE`` lock on the same rows first, which never blocks another checkout but
makes a recount wait for them (and them for it), so no redemption is missed.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, delete, false, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.auth.service import audit
from mercato.catalog import service as catalog
from mercato.channels import service as channels
from mercato.customers import service as customers
from mercato.db import locked_row, utcnow
from mercato.errors import Conflict, NotFound, UnprocessableState, ValidationProblem
from mercato.events import publish
from mercato.money import ZERO, check_precision, from_minor, to_minor, validate_currency
from mercato.pagination import Page, decode_cursor, page_of
from mercato.promotions import engine
from mercato.promotions.engine import CodeRejection, PromotionResult, Reason, StackingMode
from mercato.promotions.models import (
    Promotion,
    PromotionBudget,
    PromotionCode,
    PromotionCustomerUsage,
    Redemption,
)
from mercato.promotions.schemas import (
    MAX_CODES_PER_CART,
    ActionIn,
    ActionType,
    BundleComponentIn,
    ConditionsIn,
    ItemSelectorIn,
    PromotionIn,
    PromotionPatch,
    PromotionStatus,
    RedemptionStatus,
)

MAX_AMOUNT = Decimal("1000000000000")
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"  # no 0/O, 1/I/L: codes are read aloud
PERSONAL_CODE_LENGTH = 12
MAX_REFERENCE_LENGTH = 64
_CODE = re.compile(r"[A-Z0-9][A-Z0-9_-]{2,63}")
_PREFIX = re.compile(r"[A-Z0-9][A-Z0-9_-]{0,19}")
_LOOKUP_CHUNK = 500

ACTIVE_STATUSES = (RedemptionStatus.RESERVED, RedemptionStatus.CONFIRMED)
ACTIVE_REDEMPTION = tuple(s.value for s in ACTIVE_STATUSES)

_TRANSITIONS: Mapping[PromotionStatus, frozenset[PromotionStatus]] = {
    PromotionStatus.DRAFT: frozenset({PromotionStatus.ACTIVE, PromotionStatus.ARCHIVED}),
    PromotionStatus.ACTIVE: frozenset({PromotionStatus.PAUSED, PromotionStatus.ARCHIVED}),
    PromotionStatus.PAUSED: frozenset({PromotionStatus.ACTIVE, PromotionStatus.ARCHIVED}),
    PromotionStatus.ARCHIVED: frozenset(),
}

_NOT_NULL = ("name", "status", "priority", "stacking", "requires_code", "conditions", "action")
_LIMIT_FIELDS = frozenset({"max_uses", "max_uses_per_customer", "budget"})


class PromotionUnavailable(Conflict):
    code = "promotion-unavailable"
    title = "A promotion is no longer available"


# --- definitions: API models -> engine objects -> stored JSON -------------------------------


def _currency(code: str, field: str) -> str:
    try:
        return validate_currency(code)
    except ValueError:
        raise ValidationProblem.field(field, f"{code!r} is not an ISO 4217 currency code") from None


def _amount(amount: Decimal, currency: str, field: str, *, positive: bool) -> Decimal:
    if amount < ZERO or (positive and amount == ZERO):
        raise ValidationProblem.field(field, "must be above 0" if positive else "must be 0 or more")
    if amount > MAX_AMOUNT:
        raise ValidationProblem.field(field, f"must be at most {MAX_AMOUNT}")
    try:
        return check_precision(amount, currency)
    except ValueError as exc:
        raise ValidationProblem.field(field, str(exc)) from None


def _money_map(raw: Mapping[str, Decimal], field: str, *, positive: bool) -> dict[str, Decimal]:
    found: dict[str, Decimal] = {}
    for key, amount in raw.items():
        where = f"{field}.{key}"
        currency = _currency(key, where)
        if currency in found:
            raise ValidationProblem.field(where, f"{currency} is listed twice")
        found[currency] = _amount(amount, currency, where, positive=positive)
    return found


def _selector(data: ItemSelectorIn | None, field: str) -> engine.ItemSelector | None:
    if data is None:
        return None
    if not (data.product_ids or data.variant_ids or data.category_ids):
        raise ValidationProblem.field(
            field, "name at least one product, variant or category (omit it for every item)"
        )
    return engine.ItemSelector(
        product_ids=frozenset(data.product_ids),
        variant_ids=frozenset(data.variant_ids),
        category_ids=frozenset(data.category_ids),
    )


def _component(data: BundleComponentIn, field: str) -> engine.BundleComponent:
    if (data.variant_id is None) == (data.product_id is None):
        raise ValidationProblem.field(
            field, "a component names either a variant_id or a product_id"
        )
    return engine.BundleComponent(
        variant_id=data.variant_id, product_id=data.product_id, quantity=data.quantity
    )


# Which ActionIn fields each action type requires and which it may take.
_ACTION_SHAPE: Mapping[ActionType, tuple[frozenset[str], frozenset[str]]] = {
    ActionType.PERCENT_OFF_ITEMS: (frozenset({"percent"}), frozenset({"items"})),
    ActionType.AMOUNT_OFF_ITEMS: (frozenset({"amounts"}), frozenset({"items"})),
    ActionType.PERCENT_OFF_ORDER: (frozenset({"percent"}), frozenset()),
    ActionType.AMOUNT_OFF_ORDER: (frozenset({"amounts"}), frozenset()),
    ActionType.BUY_X_GET_Y: (
        frozenset({"buy_quantity", "get_quantity"}),
        frozenset({"percent", "items", "max_repeats"}),
    ),
    ActionType.SHIPPING: (frozenset(), frozenset({"percent"})),
    ActionType.FIXED_PRICE_BUNDLE: (
        frozenset({"components", "prices"}),
        frozenset({"max_repeats"}),
    ),
}
_ACTION_PARAMS = (
    "percent",
    "amounts",
    "items",
    "buy_quantity",
    "get_quantity",
    "max_repeats",
    "components",
    "prices",
)


def _action_param(name: str, value: Any, field: str) -> Any:
    if name in ("amounts", "prices"):
        found = _money_map(value, field, positive=name == "amounts")
        if not found:
            raise ValidationProblem.field(field, "give an amount for at least one currency")
        return found
    if name == "items":
        return _selector(value, field)
    if name == "components":
        return tuple(_component(c, f"{field}[{i}]") for i, c in enumerate(value))
    return value


def build_action(data: ActionIn, field: str = "body.action") -> engine.Action:
    """The engine action for an API definition, or a 422 naming the offending field."""
    required, optional = _ACTION_SHAPE[data.type]
    sent = {name for name in _ACTION_PARAMS if getattr(data, name) is not None}
    for name in _ACTION_PARAMS:
        if name in required and name not in sent:
            raise ValidationProblem.field(f"{field}.{name}", f"required by {data.type.value}")
        if name in sent and name not in required | optional:
            raise ValidationProblem.field(f"{field}.{name}", f"not used by {data.type.value}")
    kwargs = {
        name: _action_param(name, getattr(data, name), f"{field}.{name}")
        for name in _ACTION_PARAMS
        if name in sent
    }
    try:
        return engine.ACTION_TYPES[data.type.value](**kwargs)
    except ValueError as exc:
        raise ValidationProblem.field(field, str(exc)) from None


def build_conditions(
    data: ConditionsIn,
    starts_at: datetime | None,
    ends_at: datetime | None,
    field: str = "body.conditions",
) -> engine.Conditions:
    currencies = [_currency(c, f"{field}.currencies[{i}]") for i, c in enumerate(data.currencies)]
    for i, group in enumerate(data.customer_groups):
        if not group or len(group) > 64:
            raise ValidationProblem.field(f"{field}.customer_groups[{i}]", "1 to 64 characters")
    try:
        return engine.Conditions(
            channel_ids=frozenset(data.channel_ids),
            currencies=frozenset(currencies),
            customer_ids=frozenset(data.customer_ids),
            customer_groups=frozenset(data.customer_groups),
            first_order_only=data.first_order_only,
            min_subtotal=_money_map(data.min_subtotal, f"{field}.min_subtotal", positive=False),
            required_items=_selector(data.required_items, f"{field}.required_items"),
            min_quantity=data.min_quantity,
            starts_at=starts_at,
            ends_at=ends_at,
        )
    except ValueError as exc:
        raise ValidationProblem.field(field, str(exc)) from None


def _check_schedule(
    starts_at: datetime | None, ends_at: datetime | None, sent: Collection[str]
) -> None:
    for value, name in ((starts_at, "starts_at"), (ends_at, "ends_at")):
        if value is not None and value.utcoffset() is None:
            raise ValidationProblem.field(
                f"body.{name}", "needs a time zone, e.g. 2025-06-01T00:00:00Z"
            )
    if starts_at is not None and ends_at is not None and ends_at <= starts_at:
        if "ends_at" in sent:
            raise ValidationProblem.field("body.ends_at", "must be after starts_at")
        raise ValidationProblem.field("body.starts_at", "must be before ends_at")


def _selector_json(selector: engine.ItemSelector | None) -> dict[str, list[int]] | None:
    if selector is None:
        return None
    return {
        "product_ids": sorted(selector.product_ids),
        "variant_ids": sorted(selector.variant_ids),
        "category_ids": sorted(selector.category_ids),
    }


def _selector_from(data: Mapping[str, Any] | None) -> engine.ItemSelector | None:
    if data is None:
        return None
    return engine.ItemSelector(
        product_ids=frozenset(data.get("product_ids", ())),
        variant_ids=frozenset(data.get("variant_ids", ())),
        category_ids=frozenset(data.get("category_ids", ())),
    )


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, engine.ItemSelector):
        return _selector_json(value)
    if isinstance(value, engine.BundleComponent):
        return {k: v for k, v in dataclasses.asdict(value).items() if v is not None}
    if isinstance(value, tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, Mapping):
        return {k: str(v) for k, v in sorted(value.items())}
    return value


def action_json(action: engine.Action) -> dict[str, Any]:
    """The stored (and answered) form of an engine action."""
    data: dict[str, Any] = {"type": action.action_type}
    for f in dataclasses.fields(action):
        value = getattr(action, f.name)
        if value is not None:
            data[f.name] = _json_value(value)
    return data


def action_from_json(data: Mapping[str, Any]) -> engine.Action:
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key == "type":
            continue
        if key == "percent":
            kwargs[key] = Decimal(value)
        elif key in ("amounts", "prices"):
            kwargs[key] = {c: Decimal(v) for c, v in value.items()}
        elif key == "items":
            kwargs[key] = _selector_from(value)
        elif key == "components":
            kwargs[key] = tuple(engine.BundleComponent(**c) for c in value)
        else:
            kwargs[key] = value
    return engine.ACTION_TYPES[data["type"]](**kwargs)


def conditions_json(conditions: engine.Conditions) -> dict[str, Any]:
    """The stored form of the conditions; the schedule lives in its own columns."""
    return {
        "channel_ids": sorted(conditions.channel_ids),
        "currencies": sorted(conditions.currencies),
        "customer_ids": sorted(conditions.customer_ids),
        "customer_groups": sorted(conditions.customer_groups),
        "first_order_only": conditions.first_order_only,
        "min_subtotal": _json_value(conditions.min_subtotal),
        "required_items": _selector_json(conditions.required_items),
        "min_quantity": conditions.min_quantity,
    }


def conditions_from_json(
    data: Mapping[str, Any], starts_at: datetime | None, ends_at: datetime | None
) -> engine.Conditions:
    return engine.Conditions(
        channel_ids=frozenset(data.get("channel_ids", ())),
        currencies=frozenset(data.get("currencies", ())),
        customer_ids=frozenset(data.get("customer_ids", ())),
        customer_groups=frozenset(data.get("customer_groups", ())),
        first_order_only=bool(data.get("first_order_only", False)),
        min_subtotal={c: Decimal(v) for c, v in data.get("min_subtotal", {}).items()},
        required_items=_selector_from(data.get("required_items")),
        min_quantity=int(data.get("min_quantity", 1)),
        starts_at=starts_at,
        ends_at=ends_at,
    )


def engine_promotion(promotion: Promotion) -> engine.Promotion:
    """The engine's view of a stored promotion."""
    return engine.Promotion(
        id=promotion.id,
        name=promotion.name,
        action=action_from_json(promotion.action),
        priority=promotion.priority,
        stacking=StackingMode(promotion.stacking),
        requires_code=promotion.requires_code,
        conditions=conditions_from_json(
            promotion.conditions, promotion.starts_at, promotion.ends_at
        ),
    )


# --- references to other domains ------------------------------------------------------------


def _check_selector_refs(session: Session, selector: ItemSelectorIn | None, field: str) -> None:
    if selector is None:
        return
    if selector.category_ids:
        catalog.require_categories(session, selector.category_ids, field=f"{field}.category_ids")
    if selector.variant_ids:
        known = catalog.variant_infos(session, selector.variant_ids)
        missing = sorted(set(selector.variant_ids) - set(known))
        if missing:
            raise ValidationProblem.field(f"{field}.variant_ids", f"unknown variant ids {missing}")
    for product_id in sorted(set(selector.product_ids)):
        _require_product(session, product_id, f"{field}.product_ids")


def _require_product(session: Session, product_id: int, field: str) -> None:
    try:
        catalog.get_product(session, product_id)
    except NotFound:
        raise ValidationProblem.field(field, f"unknown product {product_id}") from None


def _require_customer(session: Session, customer_id: int, field: str) -> None:
    try:
        customers.get_customer(session, customer_id)
    except NotFound:
        raise ValidationProblem.field(field, f"unknown customer {customer_id}") from None


def _check_references(
    session: Session, conditions: ConditionsIn | None, action: ActionIn | None
) -> None:
    """Ids that name nothing would silently make a promotion never apply."""
    if conditions is not None:
        if conditions.channel_ids:
            known = {c.id for c in channels.list_channels(session)}
            missing = sorted(set(conditions.channel_ids) - known)
            if missing:
                raise ValidationProblem.field(
                    "body.conditions.channel_ids", f"unknown channel ids {missing}"
                )
        for customer_id in sorted(set(conditions.customer_ids)):
            _require_customer(session, customer_id, "body.conditions.customer_ids")
        _check_selector_refs(session, conditions.required_items, "body.conditions.required_items")
    if action is not None:
        _check_selector_refs(session, action.items, "body.action.items")
        for i, component in enumerate(action.components or []):
            where = f"body.action.components[{i}]"
            if component.variant_id is not None and not catalog.variant_infos(
                session, [component.variant_id]
            ):
                raise ValidationProblem.field(
                    f"{where}.variant_id", f"unknown variant {component.variant_id}"
                )
            if component.product_id is not None:
                _require_product(session, component.product_id, f"{where}.product_id")


# --- promotions -----------------------------------------------------------------------------


def get_promotion(session: Session, promotion_id: int) -> Promotion:
    promotion = session.get(Promotion, promotion_id, populate_existing=True)
    if promotion is None:
        raise NotFound(f"promotion {promotion_id} not found")
    return promotion


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


def _snapshot(promotion: Promotion, budget: Mapping[str, Decimal]) -> dict[str, Any]:
    return {
        "name": promotion.name,
        "description": promotion.description,
        "status": promotion.status,
        "priority": promotion.priority,
        "stacking": promotion.stacking,
        "requires_code": promotion.requires_code,
        "conditions": promotion.conditions,
        "action": promotion.action,
        "starts_at": promotion.starts_at.isoformat() if promotion.starts_at else None,
        "ends_at": promotion.ends_at.isoformat() if promotion.ends_at else None,
        "budget": {c: str(a) for c, a in sorted(budget.items())},
        "max_uses": promotion.max_uses,
        "max_uses_per_customer": promotion.max_uses_per_customer,
    }


def _set_budget(session: Session, promotion_id: int, budget: Mapping[str, Decimal]) -> None:
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


def create_promotion(session: Session, actor: Principal, data: PromotionIn) -> Promotion:
    if data.status not in (PromotionStatus.DRAFT, PromotionStatus.ACTIVE):
        raise ValidationProblem.field("body.status", "a new promotion is draft or active")
    _check_schedule(data.starts_at, data.ends_at, ("starts_at", "ends_at"))
    conditions = build_conditions(data.conditions, data.starts_at, data.ends_at)
    action = build_action(data.action)
    budget = _money_map(data.budget, "body.budget", positive=True)
    _check_references(session, data.conditions, data.action)
    now = utcnow()
    promotion = Promotion(
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
    session.add(promotion)
    session.flush()
    _set_budget(session, promotion.id, budget)
    snapshot = _snapshot(promotion, budget)
    audit(session, actor, "promotion.created", "promotion", promotion.id, snapshot)
    publish(
        session,
        "promotion.created",
        {"id": promotion.id, **snapshot},
        aggregate_type="promotion",
        aggregate_id=promotion.id,
    )
    return promotion


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
    for name in _NOT_NULL:
        if name in sent and getattr(patch, name) is None:
            raise ValidationProblem.field(f"body.{name}", "may not be null")
    if not sent:
        return promotion
    if promotion.status == PromotionStatus.ARCHIVED.value:
        raise UnprocessableState(f"promotion {promotion_id} is archived and cannot change")
    if patch.status is not None:
        _check_transition(promotion, patch.status)
    starts_at = patch.starts_at if "starts_at" in sent else promotion.starts_at
    ends_at = patch.ends_at if "ends_at" in sent else promotion.ends_at
    _check_schedule(starts_at, ends_at, sent)
    conditions = (
        None if patch.conditions is None else build_conditions(patch.conditions, None, None)
    )
    action = None if patch.action is None else build_action(patch.action)
    budget = (
        None if patch.budget is None else _money_map(patch.budget, "body.budget", positive=True)
    )
    _check_references(session, patch.conditions, patch.action)

    _apply_patch(promotion, patch, sent)
    if conditions is not None:
        promotion.conditions = conditions_json(conditions)
    if action is not None:
        promotion.action = action_json(action)
    promotion.updated_at = utcnow()
    session.flush()
    if budget is not None:
        _set_budget(session, promotion.id, budget)
    if sent & _LIMIT_FIELDS:
        _recount(session, promotion)
    current_budget = budgets_of(session, [promotion.id])[promotion.id]
    snapshot = _snapshot(promotion, current_budget)
    changes = {name: snapshot.get(name) for name in sorted(sent)}
    audit(session, actor, "promotion.updated", "promotion", promotion.id, changes)
    publish(
        session,
        "promotion.updated",
        {"id": promotion.id, "changed": sorted(sent), **snapshot},
        aggregate_type="promotion",
        aggregate_id=promotion.id,
    )
    return promotion


def _apply_patch(promotion: Promotion, patch: PromotionPatch, sent: Collection[str]) -> None:
    plain = (
        "name",
        "description",
        "priority",
        "requires_code",
        "starts_at",
        "ends_at",
        "max_uses",
        "max_uses_per_customer",
    )
    for name in plain:
        if name in sent:
            setattr(promotion, name, getattr(patch, name))
    if patch.status is not None:
        promotion.status = patch.status.value
    if patch.stacking is not None:
        promotion.stacking = patch.stacking.value


def _recount(session: Session, promotion: Promotion) -> None:
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


# --- codes ----------------------------------------------------------------------------------


def normalise_code(raw: str) -> str:
    """Codes are compared upper-case without surrounding spaces (``summer10 `` = SUMMER10)."""
    return raw.strip().upper()


def _check_expiry(expires_at: datetime | None, field: str) -> None:
    if expires_at is None:
        return
    if expires_at.utcoffset() is None:
        raise ValidationProblem.field(field, "needs a time zone, e.g. 2025-06-01T00:00:00Z")
    if expires_at <= utcnow():
        raise ValidationProblem.field(field, "must be in the future")


def _require_open(promotion: Promotion) -> None:
    if promotion.status == PromotionStatus.ARCHIVED.value:
        raise UnprocessableState(f"promotion {promotion.id} is archived")


def _taken(session: Session, codes: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(codes), _LOOKUP_CHUNK):
        chunk = codes[start : start + _LOOKUP_CHUNK]
        found.update(
            session.scalars(select(PromotionCode.code).where(PromotionCode.code.in_(chunk)))
        )
    return found


def _fresh_codes(session: Session, count: int, prefix: str, length: int) -> list[str]:
    """``count`` random codes no promotion uses yet (drawn with ``secrets``)."""
    codes: dict[str, None] = {}  # insertion-ordered set
    for _ in range(10):
        new: list[str] = []
        while len(codes) < count:
            code = prefix + "".join(secrets.choice(CODE_ALPHABET) for _ in range(length))
            if code not in codes:
                codes[code] = None
                new.append(code)
        for code in _taken(session, new):
            del codes[code]
        if len(codes) == count:
            return list(codes)
    raise Conflict("could not draw enough unused codes; use longer codes", code="code-space-full")


def _insert_codes(session: Session, rows: list[dict[str, Any]]) -> None:
    try:
        with session.begin_nested():
            session.execute(insert(PromotionCode), rows)
    except IntegrityError as exc:
        raise Conflict("a code was taken meanwhile; retry", code="duplicate-code") from exc


def _code_row(session: Session, code: str) -> PromotionCode:
    row = session.scalar(
        select(PromotionCode)
        .where(PromotionCode.code == code)
        .execution_options(populate_existing=True)
    )
    if row is None:
        raise NotFound(f"code {code} not found")
    return row


def code_by_value(session: Session, code: str) -> PromotionCode:
    """The code row for a code as a shopper or staff typed it."""
    return _code_row(session, normalise_code(code))


def create_code(
    session: Session,
    actor: Principal,
    promotion_id: int,
    code: str,
    *,
    max_uses: int | None = None,
    expires_at: datetime | None = None,
) -> PromotionCode:
    """A merchant-chosen code (normalised upper-case, unique across all promotions)."""
    promotion = get_promotion(session, promotion_id)
    _require_open(promotion)
    value = normalise_code(code)
    if not _CODE.fullmatch(value):
        raise ValidationProblem.field(
            "body.code", "3 to 64 characters: letters A-Z, digits, '-' or '_'"
        )
    _check_expiry(expires_at, "body.expires_at")
    if _taken(session, [value]):
        raise Conflict(f"code {value} is already in use", code="duplicate-code")
    _insert_codes(
        session,
        [
            {
                "promotion_id": promotion_id,
                "code": value,
                "max_uses": max_uses,
                "uses": 0,
                "expires_at": expires_at,
                "created_at": utcnow(),
            }
        ],
    )
    row = _code_row(session, value)
    audit(
        session,
        actor,
        "promotion_code.created",
        "promotion_code",
        row.id,
        {
            "promotion_id": promotion_id,
            "code": value,
            "max_uses": max_uses,
            "expires_at": expires_at.isoformat() if expires_at else None,
        },
    )
    return row


@dataclass(frozen=True)
class GeneratedCodes:
    batch: str
    codes: list[str]


def generate_codes(
    session: Session,
    actor: Principal,
    promotion_id: int,
    count: int,
    *,
    prefix: str | None = None,
    length: int = 10,
    max_uses: int | None = 1,
    expires_at: datetime | None = None,
) -> GeneratedCodes:
    """``count`` unique random codes, ``prefix`` + ``length`` characters of CODE_ALPHABET."""
    promotion = get_promotion(session, promotion_id)
    _require_open(promotion)
    head = normalise_code(prefix or "")
    if head and not _PREFIX.fullmatch(head):
        raise ValidationProblem.field(
            "body.prefix", "1 to 20 characters: letters A-Z, digits, '-' or '_'"
        )
    # A sparse code space keeps codes unguessable and collisions rare.
    if len(CODE_ALPHABET) ** length < count * 1_000_000:
        raise ValidationProblem.field("body.length", f"too short for {count} unguessable codes")
    _check_expiry(expires_at, "body.expires_at")
    batch = str(uuid.uuid4())
    codes = _fresh_codes(session, count, head, length)
    now = utcnow()
    _insert_codes(
        session,
        [
            {
                "promotion_id": promotion_id,
                "code": code,
                "max_uses": max_uses,
                "uses": 0,
                "expires_at": expires_at,
                "batch": batch,
                "created_at": now,
            }
            for code in codes
        ],
    )
    audit(
        session,
        actor,
        "promotion_codes.generated",
        "promotion",
        promotion_id,
        {"batch": batch, "count": count, "prefix": head or None, "max_uses": max_uses},
    )
    return GeneratedCodes(batch, codes)


def issue_personal_code(
    session: Session,
    actor: Principal,
    promotion_id: int,
    customer_id: int,
    expires_at: datetime | None,
) -> str:
    """A one-time code only ``customer_id`` can use, once, in any channel."""
    promotion = get_promotion(session, promotion_id)
    _require_open(promotion)
    if not promotion.requires_code:
        raise UnprocessableState(
            f"promotion {promotion_id} applies without a code; personal codes need a "
            "promotion that requires one"
        )
    _require_customer(session, customer_id, "body.customer_id")
    _check_expiry(expires_at, "body.expires_at")
    code = _fresh_codes(session, 1, "", PERSONAL_CODE_LENGTH)[0]
    _insert_codes(
        session,
        [
            {
                "promotion_id": promotion_id,
                "code": code,
                "max_uses": 1,
                "uses": 0,
                "expires_at": expires_at,
                "customer_id": customer_id,
                "created_at": utcnow(),
            }
        ],
    )
    row = _code_row(session, code)
    data = {
        "promotion_id": promotion_id,
        "code_id": row.id,
        "customer_id": customer_id,
        "expires_at": expires_at.isoformat() if expires_at else None,
    }
    audit(session, actor, "promotion_code.personal_issued", "promotion_code", row.id, data)
    publish(
        session,
        "promotion.personal_code_issued",
        data,
        aggregate_type="promotion",
        aggregate_id=promotion_id,
    )
    return code


def issue_personal_offer(
    session: Session,
    actor: Principal,
    template_promotion_id: int,
    customer_id: int,
    valid_days: int,
) -> str:
    """A personal code for ``customer_id`` from an active code-only "template" promotion,
    valid for ``valid_days`` (never past the template's own end)."""
    if not 1 <= valid_days <= 366:
        raise ValidationProblem.field("body.valid_days", "1 to 366 days")
    template = get_promotion(session, template_promotion_id)
    if template.status != PromotionStatus.ACTIVE.value:
        raise UnprocessableState(
            f"promotion {template_promotion_id} is {template.status}, not active"
        )
    now = utcnow()
    if template.ends_at is not None and template.ends_at <= now:
        raise UnprocessableState(f"promotion {template_promotion_id} has ended")
    expires_at = now + timedelta(days=valid_days)
    if template.ends_at is not None:
        expires_at = min(expires_at, template.ends_at)
    return issue_personal_code(session, actor, template_promotion_id, customer_id, expires_at)


def get_code(session: Session, promotion_id: int, code_id: int) -> PromotionCode:
    row = session.get(PromotionCode, code_id, populate_existing=True)
    if row is None or row.promotion_id != promotion_id:
        raise NotFound(f"code {code_id} of promotion {promotion_id} not found")
    return row


def list_codes(
    session: Session,
    promotion_id: int,
    *,
    batch: str | None = None,
    customer_id: int | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[PromotionCode]:
    get_promotion(session, promotion_id)
    query = (
        select(PromotionCode)
        .where(PromotionCode.promotion_id == promotion_id)
        .order_by(PromotionCode.id)
    )
    if batch is not None:
        query = query.where(PromotionCode.batch == batch)
    if customer_id is not None:
        query = query.where(PromotionCode.customer_id == customer_id)
    after = decode_cursor(cursor)
    if after is not None:
        if not isinstance(after, int) or isinstance(after, bool):
            raise ValidationProblem.field("query.cursor", "not a cursor returned by this API")
        query = query.where(PromotionCode.id > after)
    return page_of(list(session.scalars(query.limit(limit + 1))), limit, key=lambda c: c.id)


def disable_code(
    session: Session, actor: Principal, promotion_id: int, code_id: int
) -> PromotionCode:
    """Stop a code from applying (redemptions already reserved keep it)."""
    get_code(session, promotion_id, code_id)
    done = session.execute(
        update(PromotionCode)
        .where(PromotionCode.id == code_id, PromotionCode.disabled_at.is_(None))
        .values(disabled_at=utcnow()),
        execution_options={"synchronize_session": False},
    )
    if getattr(done, "rowcount", 0):
        audit(
            session,
            actor,
            "promotion_code.disabled",
            "promotion_code",
            code_id,
            {"promotion_id": promotion_id},
        )
    return get_code(session, promotion_id, code_id)


# --- cart evaluation ------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class CartEvaluationContext:
    """Everything about a cart except its lines; ``codes`` as the shopper typed them."""

    currency: str
    channel_id: int
    now: datetime
    customer_id: int | None = None
    customer_groups: frozenset[str] = frozenset()
    first_order: bool = False
    shipping: Decimal = ZERO
    codes: Sequence[str] = ()


@dataclass(frozen=True)
class CartLineInput:
    """A cart line as carts know it; :func:`cart_lines` adds product and categories."""

    line_id: str
    variant_id: int
    quantity: int
    unit_price: Decimal
    discountable: bool = True


def check_cart(
    currency: str, shipping: Decimal, items: Sequence[CartLineInput], field: str = "body"
) -> str:
    """The cart's currency (upper-case), or a 422 naming the field that does not fit it."""
    code = _currency(currency, f"{field}.currency")
    try:
        check_precision(shipping, code)
    except ValueError as exc:
        raise ValidationProblem.field(f"{field}.shipping", str(exc)) from None
    seen: set[str] = set()
    for i, item in enumerate(items):
        if item.line_id in seen:
            raise ValidationProblem.field(f"{field}.lines[{i}].line_id", "listed twice")
        seen.add(item.line_id)
        try:
            check_precision(item.unit_price, code)
        except ValueError as exc:
            raise ValidationProblem.field(f"{field}.lines[{i}].unit_price", str(exc)) from None
    return code


def cart_lines(
    session: Session, items: Sequence[CartLineInput], field: str = "body.lines"
) -> list[engine.CartLine]:
    """Engine lines with each variant's product and categories (and their ancestors)."""
    infos = catalog.variant_infos(session, [item.variant_id for item in items])
    lines = []
    for i, item in enumerate(items):
        info = infos.get(item.variant_id)
        if info is None:
            raise ValidationProblem.field(
                f"{field}[{i}].variant_id", f"unknown variant {item.variant_id}"
            )
        lines.append(
            engine.CartLine(
                line_id=item.line_id,
                variant_id=item.variant_id,
                product_id=info.product_id,
                category_ids=info.category_ids,
                quantity=item.quantity,
                unit_price=item.unit_price,
                discountable=item.discountable,
            )
        )
    return lines


@dataclass(frozen=True)
class _Candidate:
    """A promotion loaded for a cart, with the counters its limits are checked against."""

    row: Promotion
    customer_uses: int
    budget_left: int | None  # minor units; None: no budget in this currency

    def blocked(self, customer_id: int | None) -> Reason | None:
        """Why the promotion cannot apply to any cart of this customer, or None."""
        row = self.row
        if row.status != PromotionStatus.ACTIVE.value:
            return Reason.INACTIVE
        if row.max_uses is not None and row.uses >= row.max_uses:
            return Reason.USAGE_LIMIT_REACHED
        if row.max_uses_per_customer is not None:
            if customer_id is None:
                return Reason.SIGN_IN_REQUIRED
            if self.customer_uses >= row.max_uses_per_customer:
                return Reason.CUSTOMER_LIMIT_REACHED
        if self.budget_left is not None and self.budget_left <= 0:
            return Reason.BUDGET_EXHAUSTED
        return None


def _normalised_codes(codes: Sequence[str]) -> list[str]:
    found = list(dict.fromkeys(c for c in (normalise_code(raw) for raw in codes) if c))
    if len(found) > MAX_CODES_PER_CART:
        raise ValidationProblem.field("body.codes", f"at most {MAX_CODES_PER_CART} codes")
    return found


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


def _load_candidates(
    session: Session, context: CartEvaluationContext, codes: Sequence[str]
) -> tuple[dict[int, _Candidate], dict[str, PromotionCode]]:
    """Active automatic promotions running now, plus the promotions of the applied codes
    whatever their state (so a code gets a reason), with their counters and the code rows
    themselves: one query."""
    now = context.now
    automatic = and_(
        Promotion.status == PromotionStatus.ACTIVE.value,
        Promotion.requires_code.is_(False),
        or_(Promotion.starts_at.is_(None), Promotion.starts_at <= now),
        or_(Promotion.ends_at.is_(None), Promotion.ends_at > now),
    )
    wanted = [c for c in codes if len(c) <= 64]
    # A guest has no usage row: the join condition is then simply false.
    own_usage = (
        PromotionCustomerUsage.customer_id == context.customer_id
        if context.customer_id is not None
        else false()
    )
    query = (
        select(
            Promotion,
            PromotionBudget.limit_minor,
            PromotionBudget.spent_minor,
            PromotionCustomerUsage.uses,
            PromotionCode,
        )
        .outerjoin(
            PromotionBudget,
            and_(
                PromotionBudget.promotion_id == Promotion.id,
                PromotionBudget.currency == context.currency,
            ),
        )
        .outerjoin(
            PromotionCustomerUsage,
            and_(PromotionCustomerUsage.promotion_id == Promotion.id, own_usage),
        )
        .outerjoin(
            PromotionCode,
            and_(PromotionCode.promotion_id == Promotion.id, PromotionCode.code.in_(wanted))
            if wanted
            else false(),
        )
        .where(or_(automatic, PromotionCode.id.is_not(None)) if wanted else automatic)
        .execution_options(populate_existing=True)
    )
    found: dict[int, _Candidate] = {}
    code_rows: dict[str, PromotionCode] = {}
    for promotion, limit, spent, customer_uses, code in session.execute(query):
        found.setdefault(
            promotion.id,
            _Candidate(promotion, customer_uses or 0, None if limit is None else limit - spent),
        )
        if code is not None:
            code_rows[code.code] = code
    return found, code_rows


def _code_problem(
    code: PromotionCode | None,
    candidates: Mapping[int, _Candidate],
    blocked: Mapping[int, Reason],
    context: CartEvaluationContext,
) -> Reason | None:
    if code is None or code.promotion_id not in candidates:
        return Reason.UNKNOWN_CODE
    # Ownership first: nothing about another customer's code is revealed.
    if code.customer_id is not None and code.customer_id != context.customer_id:
        return Reason.SIGN_IN_REQUIRED if context.customer_id is None else Reason.NOT_YOUR_CODE
    if code.disabled_at is not None:
        return Reason.INACTIVE
    if code.expires_at is not None and code.expires_at <= context.now:
        return Reason.EXPIRED
    if code.max_uses is not None and code.uses >= code.max_uses:
        return Reason.USAGE_LIMIT_REACHED
    return blocked.get(code.promotion_id)


def evaluate(
    session: Session, *, lines: Sequence[engine.CartLine], context: CartEvaluationContext
) -> PromotionResult:
    """The discounts of a cart: its automatic promotions and the promotions of its codes.

    One query however many promotions and codes exist. Every code that gives no discount
    has one reason in ``rejected_codes``. A promotion whose limits are reached does not
    apply; one whose remaining budget is below the discount it would give does not apply
    either (the cart is evaluated again without it).
    """
    codes = _normalised_codes(context.codes)
    candidates, code_rows = _load_candidates(session, context, codes)
    blocked = {
        pid: reason
        for pid, candidate in candidates.items()
        if (reason := candidate.blocked(context.customer_id)) is not None
    }
    rejected: dict[str, CodeRejection] = {}
    usable: dict[str, int] = {}
    for code in codes:
        row = code_rows.get(code)
        reason = _code_problem(row, candidates, blocked, context)
        if reason is not None:
            rejected[code] = CodeRejection(code, row.promotion_id if row else None, reason)
        elif row is not None:
            usable[code] = row.promotion_id
    open_ = {pid: c for pid, c in candidates.items() if pid not in blocked}
    return _apply_within_budgets(lines, context, open_, usable, rejected)


def _apply_within_budgets(
    lines: Sequence[engine.CartLine],
    context: CartEvaluationContext,
    candidates: dict[int, _Candidate],
    usable: dict[str, int],
    rejected: dict[str, CodeRejection],
) -> PromotionResult:
    promotions = {pid: engine_promotion(c.row) for pid, c in candidates.items()}
    while True:
        result = engine.apply_promotions(
            lines,
            promotions.values(),
            engine.CartContext(
                currency=context.currency,
                channel_id=context.channel_id,
                now=context.now,
                customer_id=context.customer_id,
                customer_groups=context.customer_groups,
                first_order=context.first_order,
                codes=usable,
                shipping=context.shipping,
            ),
        )
        over = {
            a.promotion_id
            for a in result.applied
            if (left := candidates[a.promotion_id].budget_left) is not None
            and to_minor(a.amount, result.currency) > left
        }
        if not over:
            break
        for pid in over:
            del promotions[pid]
        for code, pid in list(usable.items()):
            if pid in over:
                rejected[code] = CodeRejection(code, pid, Reason.BUDGET_EXHAUSTED)
                del usable[code]
    merged = {r.code: r for r in result.rejected_codes} | rejected
    return dataclasses.replace(
        result, rejected_codes=tuple(merged[code] for code in sorted(merged))
    )


# --- redemptions ----------------------------------------------------------------------------


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
    now = utcnow()
    with session.begin_nested():
        if not new_reference and session.scalar(
            select(Redemption.id)
            .where(Redemption.reference == reference, Redemption.status.in_(ACTIVE_REDEMPTION))
            .limit(1)
        ):
            raise Conflict(
                f"redemptions for {reference} exist; release them first",
                code="redemptions-exist",
            )
        ids = [a.promotion_id for a in applied]
        states = _key_share(session, ids)
        budgeted = _budgeted(session, ids, currency)
        rows = []
        # Promotion order is the lock order, so two checkouts never deadlock.
        for a in applied:
            state = _check_state(a, states.get(a.promotion_id), now)
            code_id = _claim_code(session, a, customer_id, now) if a.code else None
            if state.max_uses is not None:
                _claim_total(session, a)
            if state.max_uses_per_customer is not None:
                _claim_customer(session, a, customer_id, state.max_uses_per_customer)
            amount = to_minor(a.amount, currency)
            if a.promotion_id in budgeted:
                _claim_budget(session, a, amount, currency)
            rows.append(
                Redemption(
                    promotion_id=a.promotion_id,
                    code_id=code_id,
                    code=a.code,
                    customer_id=customer_id,
                    reference=reference,
                    amount_minor=amount,
                    currency=currency,
                    status=RedemptionStatus.RESERVED.value,
                    created_at=now,
                )
            )
        session.add_all(rows)
        session.flush()
    return rows


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


def _redemptions_event(reference: str, rows: Sequence[Redemption]) -> dict[str, Any]:
    return {
        "reference": reference,
        "redemptions": [
            {
                "id": r.id,
                "promotion_id": r.promotion_id,
                "code": r.code,
                "customer_id": r.customer_id,
                "amount": str(r.amount),
                "currency": r.currency,
            }
            for r in rows
        ],
    }


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
    publish(
        session,
        "promotion.redemptions_released",
        _redemptions_event(reference, released),
        aggregate_type="redemption",
        aggregate_id=reference,
    )
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
        publish(
            session,
            "promotion.redeemed",
            _redemptions_event(reference, confirmed),
            aggregate_type="redemption",
            aggregate_id=reference,
        )
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
