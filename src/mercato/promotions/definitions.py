"""Promotion definitions: API models -> engine objects -> stored JSON, and back.

Validation of what staff send (a 422 naming the offending field), the stored form of
actions and conditions, and the engine's view of a stored promotion.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from mercato.errors import ValidationProblem
from mercato.money import ZERO, check_precision, validate_currency
from mercato.promotions import engine
from mercato.promotions.engine import StackingMode
from mercato.promotions.models import Promotion
from mercato.promotions.schemas import (
    ActionIn,
    ActionType,
    BundleComponentIn,
    ConditionsIn,
    ItemSelectorIn,
)

MAX_AMOUNT = Decimal("1000000000000")


def checked_currency(code: str, field: str) -> str:
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


def money_map(raw: Mapping[str, Decimal], field: str, *, positive: bool) -> dict[str, Decimal]:
    found: dict[str, Decimal] = {}
    for key, amount in raw.items():
        where = f"{field}.{key}"
        currency = checked_currency(key, where)
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
        found = money_map(value, field, positive=name == "amounts")
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
    currencies = [
        checked_currency(c, f"{field}.currencies[{i}]") for i, c in enumerate(data.currencies)
    ]
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
            min_subtotal=money_map(data.min_subtotal, f"{field}.min_subtotal", positive=False),
            required_items=_selector(data.required_items, f"{field}.required_items"),
            min_quantity=data.min_quantity,
            starts_at=starts_at,
            ends_at=ends_at,
        )
    except ValueError as exc:
        raise ValidationProblem.field(field, str(exc)) from None


def check_schedule(
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
