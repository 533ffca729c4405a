"""Orders sold elsewhere (a marketplace, an ERP) recorded in the one order system.

An imported order is created confirmed with the prices and taxes it was sold at, its buyer
resolved to a profile from the identifiers given (orders, customers), its payment recorded
as taken there (payments), then routed like any order. The same external id in the same
channel answers the existing order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.catalog import service as catalog
from mercato.channels import service as channels
from mercato.customers import service as customers
from mercato.errors import FieldError, ValidationProblem
from mercato.events import publish
from mercato.money import ZERO, check_precision, quantize, validate_currency
from mercato.orders import service as orders
from mercato.orders.event_types import OrderImported
from mercato.orders.models import Order
from mercato.orders.state import OrderStatus
from mercato.payments import service as payments


@dataclass(frozen=True)
class ImportLine:
    sku: str
    quantity: int
    unit_price: Decimal
    discount: Decimal = ZERO
    tax: Decimal = ZERO


@dataclass(frozen=True)
class ImportRequest:
    channel_id: int
    external_id: str
    currency: str
    lines: Sequence[ImportLine]
    shipping_total: Decimal = ZERO
    tax_included: bool = True
    email: str | None = None
    customer_id: int | None = None
    shipping_address: dict[str, Any] | None = None
    paid: bool = True
    locale: str | None = None
    # (type, value, verified) of the buyer, resolved to a profile when customer_id is None.
    identities: Sequence[tuple[str, str, bool]] = ()
    customer_name: str | None = None


def resolve_buyer(
    session: Session,
    channel_id: int,
    customer_id: int | None,
    identities: Sequence[tuple[str, str, bool]],
    name: str | None,
    address: dict[str, Any] | None,
) -> int | None:
    """The customer an order is for: the given id, else the profile its identifiers
    resolve to (created when none matches), else none (a guest)."""
    if customer_id is not None or not identities:
        return customer_id
    resolved = customers.resolve_identity(
        session,
        channel_id=channel_id,
        identities=identities,
        name=name,
        address=address,
        field="body.identities",
        address_field="body.shipping_address",
    )
    return int(resolved.id)


def import_order(session: Session, actor: Principal, data: ImportRequest) -> tuple[Order, bool]:
    """An order sold elsewhere (a marketplace, an ERP): created confirmed with the prices and
    taxes it was sold at, paid there, then routed like any order. The same external id in
    the same channel returns the existing order (``False``: not created)."""
    existing = orders.by_external_id(session, data.channel_id, data.external_id)
    if existing is not None:
        return existing, False
    try:
        currency = validate_currency(data.currency)
    except ValueError as exc:
        raise ValidationProblem.field("body.currency", str(exc)) from exc
    ids = catalog.variant_ids_by_sku(session, [x.sku for x in data.lines])
    infos = catalog.variant_infos(session, ids.values())
    errors: list[FieldError] = []
    drafts = []
    for i, x in enumerate(data.lines):
        if x.sku not in ids:
            errors.append(FieldError(f"body.lines[{i}].sku", f"unknown SKU {x.sku}"))
            continue
        for name in ("unit_price", "discount", "tax"):
            try:
                check_precision(getattr(x, name), currency)
            except ValueError as exc:
                errors.append(FieldError(f"body.lines[{i}].{name}", str(exc)))
        if errors:
            continue
        info = infos[ids[x.sku]]
        subtotal = quantize(x.unit_price * x.quantity, currency)
        total = subtotal - x.discount + (ZERO if data.tax_included else x.tax)
        drafts.append(
            orders.LineDraft(
                variant_id=info.id,
                sku=info.sku,
                name=info.product_name,
                tax_class=info.tax_class,
                quantity=x.quantity,
                unit_price=x.unit_price,
                subtotal=subtotal,
                discount=x.discount,
                tax=x.tax,
                tax_rate=(
                    x.tax / (subtotal - x.discount - (x.tax if data.tax_included else 0))
                ).quantize(Decimal("0.0001"))
                if subtotal - x.discount > x.tax
                else ZERO,
                total=total,
                delivery_mode="ship",
            )
        )
    try:
        check_precision(data.shipping_total, currency)
    except ValueError as exc:
        errors.append(FieldError("body.shipping_total", str(exc)))
    if errors:
        raise ValidationProblem(errors[0]["reason"], errors=errors)
    try:
        # Check-then-insert races with a concurrent import of the same external id: the
        # unique index decides, and the loser answers the winner's order. The savepoint
        # also undoes a profile the loser's resolution created.
        with session.begin_nested():
            order, customer_id = _create_imported(session, actor, data, currency, drafts)
    except IntegrityError:
        existing = orders.by_external_id(session, data.channel_id, data.external_id)
        if existing is None:
            raise
        return existing, False
    if data.paid and order.grand_total > 0:
        payments.record_external_payment(
            session,
            reference=order.number,
            customer_id=customer_id,
            channel_id=data.channel_id,
            currency=currency,
            amount=order.grand_total,
            external_reference=data.external_id,
            order_id=order.id,
        )
    publish(session, OrderImported(**orders.order_facts(order), external_id=data.external_id))
    return order, True


def _create_imported(
    session: Session,
    actor: Principal,
    data: ImportRequest,
    currency: str,
    drafts: Sequence[orders.LineDraft],
) -> tuple[Order, int | None]:
    customer_id = resolve_buyer(
        session,
        data.channel_id,
        data.customer_id,
        data.identities,
        data.customer_name,
        data.shipping_address,
    )
    goods = sum((d.total for d in drafts), ZERO)
    tax = sum((d.tax for d in drafts), ZERO)
    draft = orders.OrderDraft(
        channel_id=data.channel_id,
        currency=currency,
        source="import",
        lines=drafts,
        subtotal=sum((d.subtotal for d in drafts), ZERO),
        discount_total=sum((d.discount for d in drafts), ZERO),
        shipping_total=data.shipping_total,
        tax_total=tax,
        grand_total=goods + data.shipping_total,
        tax_included=data.tax_included,
        customer_id=customer_id,
        external_id=data.external_id,
        locale=data.locale,
        email=data.email,
        shipping_address=data.shipping_address,
        billing_address=data.shipping_address,
        status=OrderStatus.CONFIRMED,
        store_location_id=channels.context_for_channel(session, data.channel_id).store_location_id,
    )
    try:
        order = orders.create_order(session, actor, draft)
    except ValueError as exc:
        raise ValidationProblem.field("body", str(exc)) from exc
    return order, customer_id
