"""Checks of the ids a promotion names in other domains (channels, customers, catalog).

Ids that name nothing would silently make a promotion never apply, so they are a 422.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from mercato.catalog import service as catalog
from mercato.channels import service as channels
from mercato.customers import service as customers
from mercato.errors import NotFound, ValidationProblem
from mercato.promotions.schemas import ActionIn, ConditionsIn, ItemSelectorIn


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


def require_customer(session: Session, customer_id: int, field: str) -> None:
    try:
        customers.get_customer(session, customer_id)
    except NotFound:
        raise ValidationProblem.field(field, f"unknown customer {customer_id}") from None


def check_references(
    session: Session, conditions: ConditionsIn | None, action: ActionIn | None
) -> None:
    """Ids that name nothing would silently make a promotion never apply."""
    if conditions is not None:
        _check_condition_refs(session, conditions)
    if action is not None:
        _check_action_refs(session, action)


def _check_condition_refs(session: Session, conditions: ConditionsIn) -> None:
    if conditions.channel_ids:
        known = {c.id for c in channels.list_channels(session)}
        missing = sorted(set(conditions.channel_ids) - known)
        if missing:
            raise ValidationProblem.field(
                "body.conditions.channel_ids", f"unknown channel ids {missing}"
            )
    for customer_id in sorted(set(conditions.customer_ids)):
        require_customer(session, customer_id, "body.conditions.customer_ids")
    _check_selector_refs(session, conditions.required_items, "body.conditions.required_items")


def _check_action_refs(session: Session, action: ActionIn) -> None:
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
