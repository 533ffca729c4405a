"""Receiving a return: the units arrive at a location that takes returns and are inspected.

One conditional UPDATE moves the return from ``approved`` to ``received`` and ``inspected``
(two concurrent receipts: one wins, the other gets a 409). Each line's refund is then priced
from what the order's lines were paid (see :mod:`mercato.returns.amounts`): its share of
the line, less the restocking fee when the customer's own reason applies, and the shipping
paid when the last units come back for the merchant's fault. Counting the units back on the
order and posting the stock are the receiving flow's (``mercato.flows.returns``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.auth.service import audit
from mercato.errors import FieldError, NotFound, Problem, UnprocessableState, ValidationProblem
from mercato.locations import service as locations
from mercato.money import ZERO, quantize
from mercato.orders import service as orders
from mercato.returns import amounts
from mercato.returns.facts import OrderLineFacts
from mercato.returns.models import Return, ReturnLine
from mercato.returns.policies import EffectivePolicy
from mercato.returns.records import get_return, return_lines
from mercato.returns.state import MERCHANT_FAULT, Condition, Reason, ReturnStatus
from mercato.returns.transitions import move, publish_status

S = ReturnStatus


class LocationRefusesReturns(Problem):
    status = 422
    code = "location-refuses-returns"
    title = "This location cannot receive the return"


@dataclass(frozen=True)
class Inspection:
    return_line_id: int
    condition: Condition
    note: str | None = None


@dataclass(frozen=True)
class Receipt:
    """A return taken in at a location: its lines and what inspection found on each."""

    ret: Return
    lines: list[ReturnLine]
    found: dict[int, Inspection]
    policy: EffectivePolicy
    location_id: int


def _receiving_location(
    session: Session, actor: Principal, location_id: int, policy: EffectivePolicy
) -> str:
    """The code of the location, when it may take this return in."""
    try:
        location = locations.get_location(session, location_id)
    except NotFound as exc:
        raise ValidationProblem.field(
            "body.location_id", f"unknown location {location_id}"
        ) from exc
    actor.require_location(location_id)
    if not (location.can_accept_returns and location.active):
        why = f"{location.code} does not accept returns"
        raise LocationRefusesReturns(why, errors=[FieldError("body.location_id", why)])
    if location.type == "store" and not policy.accept_store_returns:
        why = f"the return policy ({policy.scope}) does not accept returns in stores"
        raise LocationRefusesReturns(
            why, errors=[FieldError("body.location_id", why)], code="store-returns-not-accepted"
        )
    return location.code


def _match_inspections(
    lines: Sequence[ReturnLine], inspections: Sequence[Inspection]
) -> dict[int, Inspection]:
    ids = {x.id for x in lines}
    found: dict[int, Inspection] = {}
    for i, x in enumerate(inspections):
        if x.return_line_id not in ids or x.return_line_id in found:
            why = "twice" if x.return_line_id in found else "not a line of this return"
            raise ValidationProblem.field(f"body.lines[{i}].return_line_id", why)
        found[x.return_line_id] = x
    missing = sorted(ids - set(found))
    if missing:
        raise ValidationProblem.field("body.lines", f"inspect every line (missing {missing})")
    return found


def start_receipt(
    session: Session,
    actor: Principal,
    return_id: int,
    location_id: int,
    inspections: Sequence[Inspection],
    note: str | None = None,
) -> Receipt:
    """The units of an approved return arrived at ``location_id``: the return is received
    and inspected (one conditional step; a concurrent receipt gets a 409)."""
    ret = get_return(session, return_id)
    policy = EffectivePolicy.from_snapshot(ret.policy)
    code = _receiving_location(session, actor, location_id, policy)
    lines = return_lines(session, ret.id)
    found = _match_inspections(lines, inspections)
    if ret.status != S.APPROVED.value:
        raise UnprocessableState(
            f"return {ret.number} is {ret.status}: only an approved return can be received",
            code="illegal-transition" if ret.status != S.INSPECTED.value else "already-received",
            extra={"return_status": ret.status},
        )
    ret = move(
        session,
        actor,
        ret.id,
        S.APPROVED,
        [(S.RECEIVED, note or f"received at {code}"), (S.INSPECTED, "inspected")],
        {"location_id": location_id},
    )
    return Receipt(ret, lines, found, policy, location_id)


def record_inspection(
    session: Session, receipt: Receipt, counted: Mapping[int, OrderLineFacts]
) -> None:
    """Price each line from the order lines that counted its units back (``counted``, by
    order line id), and keep what inspection found."""
    _price(session, receipt.ret, receipt.lines, counted, receipt.policy)
    found = receipt.found
    for line in receipt.lines:
        line.condition = found[line.id].condition.value
        if found[line.id].note:
            line.note = "\n".join(filter(None, [line.note, found[line.id].note]))


def finish_receipt(session: Session, actor: Principal, receipt: Receipt) -> Return:
    ret, lines = receipt.ret, receipt.lines
    session.flush()
    audit(
        session,
        actor,
        "return.received",
        "return",
        ret.id,
        {
            "location_id": receipt.location_id,
            "conditions": {str(x.id): x.condition for x in lines},
        },
    )
    publish_status(session, ret, lines, S.RECEIVED)
    publish_status(session, ret, lines, S.INSPECTED)
    return ret


def _price(
    session: Session,
    ret: Return,
    lines: Sequence[ReturnLine],
    counted: Mapping[int, OrderLineFacts],
    policy: EffectivePolicy,
) -> None:
    """Each line's share of what was paid (the units just counted back), fee and credit."""
    currency = ret.currency
    for line in lines:
        ordered = counted[line.order_line_id]
        first = ordered.returned_quantity - line.quantity
        line.paid = amounts.unit_slice(
            ordered.total, ordered.quantity, first, line.quantity, currency
        )
        # No fee for the merchant's fault, nor for units the customer wants exchanged.
        charged = Reason(line.reason) not in MERCHANT_FAULT and line.exchange_variant_id is None
        fee_rate = policy.restocking_fee_percent if charged else ZERO
        line.restocking_fee = amounts.restocking_fee(line.paid, fee_rate, currency)
        line.amount = line.paid - line.restocking_fee
        line.refund = line.amount
    ret.shipping_refund = _shipping_refund(session, ret, lines)
    ret.refund_total = sum((x.amount or ZERO for x in lines), ZERO) + ret.shipping_refund


def _shipping_refund(session: Session, ret: Return, lines: Sequence[ReturnLine]) -> Decimal:
    """The shipping paid, when this return brings the last units back for the merchant's fault."""
    if not all(Reason(x.reason) in MERCHANT_FAULT for x in lines):
        return quantize(ZERO, ret.currency)
    order = orders.get_order(session, ret.order_id)
    order_lines = orders.order_lines(session, ret.order_id)
    kept = sum(x.quantity - x.cancelled_quantity - x.returned_quantity for x in order_lines)
    if kept > 0:
        return quantize(ZERO, ret.currency)
    return amounts.shipping_paid(order.grand_total, [x.total for x in order_lines], ret.currency)
