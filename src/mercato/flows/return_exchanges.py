"""Exchanges in a return's settlement: the replacement order, its stock and the price
difference.

An exchanged line is replaced by the same number of units of another variant of the same
product (priced by :func:`mercato.returns.service.plan_settlement`); the returned units'
credit is spent on the replacement order, shown there as a discount, so its grand total is
what the customer still pays. The replacement ships like the original lines (same
address, same delivery mode), its stock is held at the channel's locations in priority
order, and shipping is free. A replacement the credit pays for is confirmed at once; a
dearer one waits, its stock held, for the payment of the difference (a difference needing
3-D Secure is not supported: it counts as declined).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.catalog import service as catalog
from mercato.channels import service as channels
from mercato.errors import Problem
from mercato.inventory import service as inventory
from mercato.money import ZERO
from mercato.orders import service as orders
from mercato.orders.models import Order
from mercato.orders.state import OrderStatus
from mercato.payments import service as payments
from mercato.payments.models import Payment
from mercato.returns import amounts
from mercato.returns import service as returns
from mercato.returns.models import Return

HOLD_TTL = timedelta(minutes=15)


@dataclass(frozen=True)
class Replacement:
    """The replacement order of an exchange (None: no exchange), the stock it holds and the
    payment of the price difference, if any."""

    order: Order | None
    hold_ids: list[int]
    payment_ids: list[int]


def replacement_order(
    session: Session,
    actor: Principal,
    ret: Return,
    plan: returns.SettlementPlan,
    tenders: Sequence[payments.TenderRequest],
) -> Replacement:
    """The replacement order (``exchange`` source), its stock holds and payment if any."""
    order = orders.get_order(session, ret.order_id)
    draft = _replacement_draft(session, ret, order, plan)
    new_order = orders.create_order(session, actor, draft)
    ctx = inventory.Context(
        actor, order.channel_id, "order", new_order.number, f"exchange for return {ret.number}"
    )
    channel = channels.context_for_channel(session, order.channel_id)
    status = (
        inventory.ReservationStatus.HELD
        if plan.charge > ZERO
        else inventory.ReservationStatus.ALLOCATED
    )
    held = inventory.hold(
        session,
        ctx,
        [inventory.HoldLine(x.variant_id, x.quantity, x.pickup_location_id) for x in draft.lines],
        candidate_locations=channel.location_order,
        ttl=HOLD_TTL,
        status=status,
    )
    paid: list[int] = []
    if plan.charge > ZERO:
        paid = [
            p.id
            for p in payments.create_payments(
                session,
                reference=new_order.number,
                customer_id=order.customer_id,
                channel_id=order.channel_id,
                currency=order.currency,
                total=plan.charge,
                tenders=tenders,
                field="body.payments",
                channel_type=channel.type,
                order_id=new_order.id,
            )
        ]
    else:
        orders.advance(
            session,
            actor,
            new_order.id,
            OrderStatus.PENDING_PAYMENT,
            [
                (OrderStatus.PLACED, f"exchange for return {ret.number}"),
                (OrderStatus.CONFIRMED, "paid by the returned units"),
            ],
        )
    return Replacement(new_order, [r.id for r in held], paid)


def _replacement_draft(
    session: Session, ret: Return, order: Order, plan: returns.SettlementPlan
) -> orders.OrderDraft:
    originals = {x.id: x for x in orders.order_lines(session, ret.order_id)}
    ids = [x.exchange_variant_id or 0 for x in plan.exchange_lines]
    infos = catalog.variant_infos(session, ids)
    names = catalog.variant_labels(session, infos, order.locale or "en")
    drafts = []
    for line, credit in zip(plan.exchange_lines, plan.credits, strict=True):
        original = originals[line.order_line_id]
        variant = line.exchange_variant_id or 0
        unit = plan.prices[variant].amount
        priced = amounts.replacement_line(
            unit, line.quantity, original.tax_rate, order.tax_included, credit, ret.currency
        )
        drafts.append(
            orders.LineDraft(
                variant_id=variant,
                sku=infos[variant].sku,
                name=names.get(variant, original.name),
                tax_class=original.tax_class,
                quantity=line.quantity,
                unit_price=unit,
                subtotal=priced.subtotal,
                discount=priced.discount,
                tax=priced.tax,
                tax_rate=original.tax_rate,
                total=priced.total,
                delivery_mode=original.delivery_mode,
                pickup_location_id=original.pickup_location_id,
            )
        )
    return _draft(ret, order, drafts, plan)


def _draft(
    ret: Return, order: Order, lines: list[orders.LineDraft], plan: returns.SettlementPlan
) -> orders.OrderDraft:
    shipping = dict(order.shipping_option or {}) or None
    if shipping is not None:
        shipping.update(amount="0", discount="0")
    return orders.OrderDraft(
        channel_id=order.channel_id,
        currency=order.currency,
        source="exchange",
        lines=lines,
        subtotal=sum((x.subtotal for x in lines), ZERO),
        discount_total=sum((x.discount for x in lines), ZERO),
        shipping_total=ZERO,
        tax_total=sum((x.tax for x in lines), ZERO),
        grand_total=sum((x.total for x in lines), ZERO),
        tax_included=order.tax_included,
        customer_id=order.customer_id,
        price_list=order.price_list,
        locale=order.locale,
        email=order.email,
        shipping_address=order.shipping_address,
        billing_address=order.billing_address,
        shipping_option=shipping,
        promotions=[
            {
                "kind": "exchange_credit",
                "name": f"Exchange credit, return {ret.number}",
                "return": ret.number,
                "amount": str(plan.credit_used),
            }
        ],
        note=f"exchange for return {ret.number} of order {order.number}",
    )


def confirm(session: Session, attempt: returns.SettlementAttempt) -> None:
    """Step C, paid: the replacement is placed and confirmed and its holds become
    allocations; the return's money is final."""
    ret = returns.get_return(session, attempt.return_id)
    if ret.exchange_order_id is not None or attempt.exchange_order_id is None:
        return  # confirmed by a concurrent resume of the same attempt
    order_id = attempt.exchange_order_id
    order = orders.advance(
        session,
        attempt.actor,
        order_id,
        OrderStatus.PENDING_PAYMENT,
        [
            (OrderStatus.PLACED, f"exchange for return {attempt.number}"),
            (OrderStatus.CONFIRMED, "price difference paid"),
        ],
    )
    ctx = inventory.Context(attempt.actor, order.channel_id, "order", order.number)
    try:
        inventory.allocate(session, ctx, list(attempt.hold_ids), "order", order.number)
    except Problem:
        # The holds expired while the payment was with the provider: hold again.
        inventory.release(session, ctx, list(attempt.hold_ids))
        inventory.hold(
            session,
            ctx,
            [
                inventory.HoldLine(x.variant_id, x.quantity, x.pickup_location_id)
                for x in orders.order_lines(session, order_id)
            ],
            status=inventory.ReservationStatus.ALLOCATED,
            candidate_locations=channels.context_for_channel(
                session, order.channel_id
            ).location_order,
        )
    returns.exchange_paid(session, attempt, ret, order)


def decline(
    session: Session, attempt: returns.SettlementAttempt, charged: Sequence[Payment]
) -> returns.Outcome:
    """Step C, declined (the compensation of step A): the replacement fails and releases its
    holds, and the return waits for another settle; nothing was refunded."""
    problem = payments.PaymentDeclined(
        "the payment of the price difference was declined; nothing was refunded, settle again "
        "with another payment or refund instead",
        extra={
            "payments": {p.id: p.status for p in charged},
            "return_number": attempt.number,
            **payments.decline_details(charged),
        },
    )
    if attempt.exchange_order_id is not None:
        try:
            order = orders.advance(
                session,
                attempt.actor,
                attempt.exchange_order_id,
                OrderStatus.PENDING_PAYMENT,
                [(OrderStatus.PAYMENT_FAILED, "price difference declined")],
            )
        except Problem:
            order = None  # declined already by a concurrent resume of the same attempt
        if order is not None:
            ctx = inventory.Context(
                attempt.actor, order.channel_id, "order", order.number, "exchange payment declined"
            )
            inventory.release(session, ctx, list(attempt.hold_ids))
    returns.finish_attempt(
        session,
        attempt,
        "failed",
        ZERO,
        [],
        ("payment-declined", "the price difference was declined"),
    )
    return returns.Outcome(problem.status, problem.body())
