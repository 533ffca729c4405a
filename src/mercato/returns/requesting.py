"""Requesting a return: order lines, units and a reason, checked against the order's policy.

The request is checked against the policy that applies to the order (:mod:`policies`), its
window (:mod:`window`), its non-returnable categories (a product's category or any
ancestor) and the units delivered and not yet returned or promised to another open return.
An exchanged line names another sellable variant of the same product with a price in the
order's price list and currency.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.auth.service import audit
from mercato.catalog import service as catalog
from mercato.db import utcnow
from mercato.errors import FieldError, NotFound, Problem, ValidationProblem
from mercato.loyalty import service as loyalty
from mercato.money import ZERO
from mercato.orders import service as orders
from mercato.pricing import service as pricing
from mercato.returns.facts import OrderFacts, OrderLineFacts
from mercato.returns.models import Return, ReturnLine
from mercato.returns.policies import EffectivePolicy, order_country, policy_for
from mercato.returns.records import new_return_number
from mercato.returns.state import OPEN, Reason, RefundMethod, ReturnStatus, Settlement
from mercato.returns.transitions import publish_status, record_transitions
from mercato.returns.window import check_window

S = ReturnStatus


class ReturnNotAllowed(Problem):
    status = 422
    code = "not-returnable"
    title = "These units cannot be returned"


class ExceedsReturnable(Problem):
    status = 422
    code = "return-exceeds-returnable"
    title = "More units than can be returned"


@dataclass(frozen=True)
class LineRequest:
    order_line_id: int
    quantity: int
    reason: Reason
    note: str | None = None
    exchange_variant_id: int | None = None


@dataclass(frozen=True)
class ReturnRequest:
    lines: Sequence[LineRequest]
    note: str | None = None
    refund_method: RefundMethod = RefundMethod.ORIGINAL_PAYMENT


def order_for_customer(session: Session, customer_id: int, number: str) -> OrderFacts:
    """The customer's own order; anyone else's is answered as if it did not exist."""
    try:
        order = orders.get_by_number(session, number)
    except NotFound:
        order = None
    if order is None or order.customer_id != customer_id:
        raise NotFound(f"order {number} not found")
    return order


def order_to_return(session: Session, order_id: int | None, order_number: str | None) -> OrderFacts:
    """The order staff name for a return, by id or else by number."""
    if order_id is not None:
        return orders.get_order(session, order_id)
    return orders.get_by_number(session, order_number or "")


def _open_quantities(session: Session, order_id: int) -> dict[int, int]:
    """Units of each order line promised to returns not yet received."""
    rows = session.execute(
        select(ReturnLine.order_line_id, func.sum(ReturnLine.quantity))
        .join(Return, Return.id == ReturnLine.return_id)
        .where(Return.order_id == order_id, Return.status.in_([s.value for s in OPEN]))
        .group_by(ReturnLine.order_line_id)
    ).all()
    return {int(line_id): int(units) for line_id, units in rows}


def _check_quantities(
    session: Session,
    order: OrderFacts,
    lines: Mapping[int, OrderLineFacts],
    wanted: Sequence[LineRequest],
) -> None:
    errors: list[FieldError] = []
    missing: list[FieldError] = []
    seen: set[int] = set()
    returnable = orders.returnable_quantities(session, order.id)
    promised = _open_quantities(session, order.id)
    for i, x in enumerate(wanted):
        at = f"body.lines[{i}]"
        line = lines.get(x.order_line_id)
        if line is None or x.order_line_id in seen:
            why = "twice in one return" if line else f"not a line of order {order.number}"
            missing.append(FieldError(f"{at}.order_line_id", why))
            continue
        seen.add(x.order_line_id)
        left = returnable.get(line.id, 0) - promised.get(line.id, 0)
        if x.quantity > line.quantity:
            errors.append(FieldError(f"{at}.quantity", f"only {line.quantity} bought"))
        elif x.quantity > left:
            errors.append(
                FieldError(
                    f"{at}.quantity",
                    f"only {max(left, 0)} delivered and not yet returned or on an open return",
                )
            )
    if missing:
        raise ValidationProblem(missing[0]["reason"], errors=missing)
    if errors:
        raise ExceedsReturnable(f"{errors[0]['field']}: {errors[0]['reason']}", errors=errors)


def _check_categories(
    order_lines: Mapping[int, OrderLineFacts],
    wanted: Sequence[LineRequest],
    infos: Mapping[int, catalog.VariantInfo],
    policy: EffectivePolicy,
) -> None:
    blocked = set(policy.non_returnable_category_ids)
    errors = []
    for i, x in enumerate(wanted):
        info = infos.get(order_lines[x.order_line_id].variant_id)
        if info is not None and blocked & info.category_ids:
            errors.append(
                FieldError(
                    f"body.lines[{i}].order_line_id",
                    f"{info.sku} is in a category that cannot be returned ({policy.scope})",
                )
            )
    if errors:
        raise ReturnNotAllowed(errors[0]["reason"], errors=errors)


def _check_exchanges(
    session: Session,
    order: OrderFacts,
    order_lines: Mapping[int, OrderLineFacts],
    wanted: Sequence[LineRequest],
    infos: Mapping[int, catalog.VariantInfo],
) -> None:
    exchanged = [(i, x) for i, x in enumerate(wanted) if x.exchange_variant_id is not None]
    if not exchanged:
        return
    prices = replacement_prices(session, order, [x.exchange_variant_id or 0 for _, x in exchanged])
    errors = []
    for i, x in exchanged:
        at = f"body.lines[{i}].exchange_variant_id"
        old = infos.get(order_lines[x.order_line_id].variant_id)
        new = infos.get(x.exchange_variant_id or 0)
        if new is None or not new.sellable:
            errors.append(FieldError(at, "unknown or not sellable variant"))
        elif old is not None and new.id == old.id:
            errors.append(FieldError(at, "the same variant: return it or choose another one"))
        elif old is not None and new.product_id != old.product_id:
            errors.append(FieldError(at, "an exchange is for another variant of the same product"))
        elif new.id not in prices:
            errors.append(FieldError(at, "no price in the order's price list and currency"))
    if errors:
        raise ValidationProblem(f"{errors[0]['field']}: {errors[0]['reason']}", errors=errors)


def replacement_prices(
    session: Session, order: OrderFacts, variant_ids: Sequence[int]
) -> dict[int, pricing.ResolvedPrice]:
    if order.price_list is None:
        return {}
    return pricing.resolve_prices(
        session,
        variant_ids,
        price_list=order.price_list,
        currency=order.currency,
        country=(order.shipping_address or {}).get("country"),
        customer_groups=loyalty.pricing_groups(session, order.customer_id),
    )


def request_return(
    session: Session,
    actor: Principal,
    order: OrderFacts,
    request: ReturnRequest,
    *,
    origin_channel_id: int | None = None,
) -> Return:
    """Open a return for units of ``order``; approved at once when the policy says so."""
    now = utcnow()
    policy = policy_for(session, order.channel_id, order_country(session, order))
    check_window(session, order, policy, now)
    order_lines = {x.id: x for x in orders.order_lines(session, order.id)}
    _check_quantities(session, order, order_lines, request.lines)
    variant_ids = [order_lines[x.order_line_id].variant_id for x in request.lines]
    variant_ids += [x.exchange_variant_id for x in request.lines if x.exchange_variant_id]
    infos = catalog.variant_infos(session, variant_ids)
    _check_categories(order_lines, request.lines, infos, policy)
    _check_exchanges(session, order, order_lines, request.lines, infos)
    if request.refund_method is RefundMethod.STORE_CREDIT and order.customer_id is None:
        raise ValidationProblem.field("body.refund_method", "store credit needs a customer account")
    ret = _insert(session, order, request, policy, origin_channel_id, now)
    lines = _insert_lines(session, ret, order_lines, request.lines)
    steps = [(S.REQUESTED, "requested")]
    if policy.auto_approve:
        steps.append((S.APPROVED, f"approved by the return policy ({policy.scope})"))
    record_transitions(session, actor, ret.id, None, steps, now)
    if actor.kind == "staff":
        audit(
            session,
            actor,
            "return.requested",
            "return",
            ret.id,
            {
                "order": order.number,
                "lines": {str(x.order_line_id): x.quantity for x in request.lines},
            },
        )
    for status, _ in steps:
        publish_status(session, ret, lines, status)
    return ret


def _insert(
    session: Session,
    order: OrderFacts,
    request: ReturnRequest,
    policy: EffectivePolicy,
    origin_channel_id: int | None,
    now: datetime,
) -> Return:
    ret = Return(
        number=new_return_number(),
        order_id=order.id,
        order_number=order.number,
        channel_id=order.channel_id,
        origin_channel_id=origin_channel_id,
        customer_id=order.customer_id,
        currency=order.currency,
        status=(S.APPROVED if policy.auto_approve else S.REQUESTED).value,
        refund_method=request.refund_method.value,
        policy=policy.snapshot(),
        shipping_refund=ZERO,
        refunded_total=ZERO,
        exchange_charge=ZERO,
        settlement=Settlement.NONE.value,
        note=request.note,
        created_at=now,
        updated_at=now,
    )
    session.add(ret)
    session.flush()
    return ret


def _insert_lines(
    session: Session,
    ret: Return,
    order_lines: Mapping[int, OrderLineFacts],
    wanted: Sequence[LineRequest],
) -> list[ReturnLine]:
    rows = [
        {
            "return_id": ret.id,
            "line_no": n,
            "order_line_id": x.order_line_id,
            "variant_id": order_lines[x.order_line_id].variant_id,
            "sku": order_lines[x.order_line_id].sku,
            "name": order_lines[x.order_line_id].name,
            "quantity": x.quantity,
            "reason": x.reason.value,
            "note": x.note,
            "exchange_variant_id": x.exchange_variant_id,
        }
        for n, x in enumerate(wanted, start=1)
    ]
    made = session.scalars(
        insert(ReturnLine)
        .values(rows)
        .returning(ReturnLine)
        .execution_options(populate_existing=True)
    ).all()
    return sorted(made, key=lambda x: x.line_no)
