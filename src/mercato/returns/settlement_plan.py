"""What settling a return pays and charges: the refund, and for an exchange the credit the
returned units give towards the replacement and the price difference.

An exchanged line is replaced by the same number of units of another variant of the same
product, at its current price in the order's price list and currency, with the order's tax
rate for that line; the returned units' share (no restocking fee) is a credit spent on the
replacement (see :func:`mercato.returns.amounts.plan_settlement`). A cheaper replacement
refunds the rest; a dearer one needs a tender in the settle request. An exchange cannot
start after part of the return was refunded as money.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy.orm import Session

from mercato.errors import Problem, UnprocessableState, ValidationProblem
from mercato.money import ZERO, quantize
from mercato.orders import service as orders
from mercato.payments import service as payments
from mercato.pricing import service as pricing
from mercato.returns import amounts
from mercato.returns.models import Return, ReturnLine
from mercato.returns.requesting import replacement_prices
from mercato.returns.state import RefundMethod


class RefundExceedsCaptured(Problem):
    status = 422
    code = "refund-exceeds-captured"
    title = "The payments cannot refund this much"


@dataclass(frozen=True)
class SettleRequest:
    method: RefundMethod | None = None
    tenders: Sequence[payments.TenderRequest] = ()
    exchange: bool = True


@dataclass(frozen=True)
class SettlementPlan:
    method: RefundMethod
    refund: Decimal
    charge: Decimal
    line_refunds: dict[int, Decimal]
    exchange_lines: list[ReturnLine]
    prices: dict[int, pricing.ResolvedPrice]
    credits: list[Decimal]
    credit_used: Decimal


def plan_settlement(
    session: Session, ret: Return, lines: Sequence[ReturnLine], request: SettleRequest
) -> SettlementPlan:
    """The refund due and, when the return exchanges units and nothing was refunded yet,
    the replacement's prices, the credit it gets and the difference to charge."""
    method = request.method or RefundMethod(ret.refund_method)
    exchange_lines = [x for x in lines if x.exchange_variant_id is not None]
    exchanging = (
        request.exchange
        and bool(exchange_lines)
        and ret.exchange_order_id is None
        and ret.refunded_total == ZERO
    )
    due = (ret.refund_total or ZERO) - ret.refunded_total
    if not exchanging:
        return SettlementPlan(
            method, due, ZERO, {x.id: x.refund or ZERO for x in lines}, [], {}, [], ZERO
        )
    order = orders.get_order(session, ret.order_id)
    prices = replacement_prices(
        session, order, [x.exchange_variant_id or 0 for x in lines if x.exchange_variant_id]
    )
    missing = [x.sku for x in exchange_lines if (x.exchange_variant_id or 0) not in prices]
    if missing:
        raise UnprocessableState(
            f"the replacement for {', '.join(missing)} has no price any more; settle with "
            '"exchange": false to refund instead',
            code="exchange-unavailable",
        )
    rates = {x.id: x.tax_rate for x in orders.order_lines(session, ret.order_id)}
    values = [
        amounts.gross_value(
            prices[x.exchange_variant_id or 0].amount,
            x.quantity,
            rates[x.order_line_id],
            order.tax_included,
            ret.currency,
        )
        for x in exchange_lines
    ]
    split = amounts.plan_settlement(
        {x.id: x.amount or ZERO for x in lines if x.exchange_variant_id is None},
        {x.id: x.amount or ZERO for x in exchange_lines},
        values,
        ret.shipping_refund,
        ret.currency,
    )
    return SettlementPlan(
        method,
        split.refund,
        split.charge,
        split.line_refunds,
        exchange_lines,
        prices,
        split.credits,
        split.credit_used,
    )


def check_plan(session: Session, ret: Return, plan: SettlementPlan, request: SettleRequest) -> None:
    """Everything that would make a step after A fail for the request's own sake: 4xx now."""
    money = f"{quantize(plan.charge, ret.currency)} {ret.currency}"
    if plan.charge > ZERO and not request.tenders:
        raise ValidationProblem.field(
            "body.payments", f"the replacement costs {money} more: add a payment for it"
        )
    if plan.charge == ZERO and request.tenders:
        raise ValidationProblem.field("body.payments", "there is no price difference to pay")
    if plan.refund <= ZERO:
        return
    if plan.method is RefundMethod.STORE_CREDIT and ret.customer_id is None:
        raise ValidationProblem.field("body.method", "store credit needs a customer account")
    if plan.method is RefundMethod.ORIGINAL_PAYMENT:
        totals = payments.totals_for_reference(session, ret.order_number)
        refundable = ZERO if totals is None else totals.refundable
        if plan.refund > refundable:
            raise RefundExceedsCaptured(
                f"the refund of {quantize(plan.refund, ret.currency)} {ret.currency} exceeds "
                f"what the payments of order {ret.order_number} can refund "
                f"({quantize(refundable, ret.currency)} {ret.currency} captured and not yet "
                "refunded): capture the payment first, or refund as store credit",
                extra={
                    "refund": str(quantize(plan.refund, ret.currency)),
                    "refundable": str(quantize(refundable, ret.currency)),
                },
            )
