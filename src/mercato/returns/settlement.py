"""Settlement attempts: the returns domain's record of paying a return out.

Each attempt is a ``return_settlements`` row written before any outside call, with the
keys a resume reuses (the refund's request key, the replacement order, its holds and the
payment of the difference). The return's ``settlement`` moves with it: ``pending`` while an
attempt is open (one conditional UPDATE claims it, so two settles cannot both start one),
``done`` or ``failed`` when it closes. The calls to payments, orders and stock around these
records are the settlement flow's (``mercato.flows.returns``).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.auth.service import audit
from mercato.db import utcnow
from mercato.errors import UnprocessableState
from mercato.money import ZERO, quantize
from mercato.payments import service as payments
from mercato.returns.facts import OrderFacts
from mercato.returns.models import Return, ReturnLine, ReturnSettlement
from mercato.returns.records import get_return, return_lines, settlements, timeline
from mercato.returns.settlement_plan import SettlementPlan
from mercato.returns.state import RefundMethod, ReturnStatus, Settlement
from mercato.returns.transitions import move, publish_status
from mercato.returns.views import return_json

S = ReturnStatus


@dataclass(frozen=True)
class Outcome:
    """What the settle endpoint answers (stored for Idempotency-Key replays)."""

    status_code: int
    body: dict[str, Any]


@dataclass(frozen=True)
class SettlementAttempt:
    """One try at paying a return out, as recorded before any outside call."""

    id: int
    return_id: int
    number: str
    order_number: str
    customer_id: int | None
    currency: str
    method: RefundMethod
    amount: Decimal
    exchange_order_id: int | None
    charge_payment_ids: tuple[int, ...]
    hold_ids: tuple[int, ...]
    exchange_pending: bool  # the replacement waits for the payment of the difference
    request_key: str
    actor: Principal


def _actor_of(row: ReturnSettlement) -> Principal:
    """The principal that started an attempt: resuming it reuses its payment request keys."""
    return Principal(
        kind=row.actor_type,
        id=None if row.actor_id is None else int(row.actor_id),
        label=row.actor_label,
    )


def attempt_of(ret: Return, row: ReturnSettlement) -> SettlementAttempt:
    return SettlementAttempt(
        id=row.id,
        return_id=ret.id,
        number=ret.number,
        order_number=ret.order_number,
        customer_id=ret.customer_id,
        currency=ret.currency,
        method=RefundMethod(row.method),
        amount=row.amount,
        exchange_order_id=row.exchange_order_id,
        charge_payment_ids=tuple(row.charge_payment_ids or ()),
        hold_ids=tuple(row.hold_ids or ()),
        exchange_pending=bool(row.charge_payment_ids) and ret.exchange_order_id is None,
        request_key=row.request_key,
        actor=_actor_of(row),
    )


def pending_attempt(session: Session, ret: Return) -> SettlementAttempt | None:
    """The attempt a crash or a concurrent settle left unfinished, to resume."""
    row = session.scalar(
        select(ReturnSettlement)
        .where(ReturnSettlement.return_id == ret.id, ReturnSettlement.status == "pending")
        .order_by(ReturnSettlement.id.desc())
        .limit(1)
        .execution_options(populate_existing=True)
    )
    return None if row is None else attempt_of(ret, row)


def check_settleable(ret: Return) -> None:
    if ret.status != S.INSPECTED.value:
        raise UnprocessableState(
            f"return {ret.number} is {ret.status}: only an inspected return is paid out",
            code="already-settled"
            if ret.status in (S.REFUNDED, S.CLOSED)
            else "illegal-transition",
            extra={"return_status": ret.status},
        )


def claim_settlement(session: Session, return_id: int) -> bool:
    """Take an inspected return for a new attempt (settlement none or failed -> pending);
    False when a concurrent settle took it first."""
    claimed = session.execute(
        update(Return)
        .where(
            Return.id == return_id,
            Return.status == S.INSPECTED.value,
            Return.settlement.in_([Settlement.NONE.value, Settlement.FAILED.value]),
        )
        .values(settlement=Settlement.PENDING.value, updated_at=utcnow())
        .returning(Return.id)
    ).one_or_none()
    return claimed is not None


def start_attempt(
    session: Session,
    actor: Principal,
    ret: Return,
    plan: SettlementPlan,
    exchange_order: OrderFacts | None,
    hold_ids: list[int],
    charge_payment_ids: list[int],
) -> SettlementAttempt:
    """Record the attempt with everything a resume needs: the amounts planned, the
    replacement order, its holds and the payment of the difference, and the refund's key."""
    row = ReturnSettlement(
        return_id=ret.id,
        request_key=f"return-{ret.number}-{secrets.token_hex(6)}",
        method=plan.method.value,
        status="pending",
        amount=plan.refund,
        refunded=ZERO,
        charge=plan.charge,
        exchange_order_id=None if exchange_order is None else exchange_order.id,
        charge_payment_ids=charge_payment_ids,
        hold_ids=hold_ids,
        line_amounts={str(k): str(v) for k, v in plan.line_refunds.items()},
        actor_type=actor.kind,
        actor_id=None if actor.id is None else str(actor.id),
        actor_label=actor.label,
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    audit(
        session,
        actor,
        "return.settlement_started",
        "return",
        ret.id,
        {
            "method": plan.method.value,
            "refund": str(plan.refund),
            "charge": str(plan.charge),
            "exchange_order": None if exchange_order is None else exchange_order.number,
        },
    )
    return attempt_of(ret, row)


def exchange_done(
    session: Session,
    ret: Return,
    lines: Sequence[ReturnLine],
    line_refunds: Mapping[int, Decimal],
    refund: Decimal,
    charge: Decimal,
    order: OrderFacts | None,
) -> None:
    """The replacement is paid for: the return's money is now final."""
    assert order is not None
    ret.exchange_order_id = order.id
    ret.exchange_order_number = order.number
    ret.exchange_charge = charge
    ret.refund_total = refund
    for line in lines:
        if line.id in line_refunds:
            line.refund = line_refunds[line.id]
    session.flush()


def exchange_paid(
    session: Session, attempt: SettlementAttempt, ret: Return, order: OrderFacts
) -> None:
    """The price difference was paid: the return's money is final as the attempt planned it."""
    row = settlement_row(session, attempt.id)
    refunds = {int(k): Decimal(v) for k, v in (row.line_amounts or {}).items()}
    exchange_done(
        session, ret, return_lines(session, ret.id), refunds, row.amount, row.charge, order
    )


def settlement_row(session: Session, attempt_id: int) -> ReturnSettlement:
    row = session.get(ReturnSettlement, attempt_id, populate_existing=True)
    assert row is not None
    return row


def finish_attempt(
    session: Session,
    attempt: SettlementAttempt,
    status: str,
    refunded: Decimal,
    refund_ids: Sequence[int],
    failure: tuple[str, str] | None = None,
) -> bool:
    """Close a pending attempt (compare-and-set) and move the return's settlement with it.

    False when the attempt was closed already (a concurrent resume recorded it first).
    """
    done = session.execute(
        update(ReturnSettlement)
        .where(ReturnSettlement.id == attempt.id, ReturnSettlement.status == "pending")
        .values(
            status=status,
            refunded=refunded,
            refund_ids=list(refund_ids),
            failure_code=failure[0] if failure else None,
            failure_message=failure[1][:2000] if failure else None,
            completed_at=utcnow(),
        )
        .returning(ReturnSettlement.id)
    ).one_or_none()
    if done is None:
        return False
    session.execute(
        update(Return)
        .where(Return.id == attempt.return_id)
        .values(
            refunded_total=Return.refunded_total + refunded,
            settlement=(Settlement.DONE if status == "succeeded" else Settlement.FAILED).value,
            updated_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )
    return True


def keep_pending_refunds(
    session: Session, attempt: SettlementAttempt, refund_ids: Sequence[int]
) -> None:
    """The provider could not be reached: the attempt stays pending with its refunds."""
    settlement_row(session, attempt.id).refund_ids = list(refund_ids)


def mark_settled(session: Session, attempt: SettlementAttempt) -> None:
    """The money went back: the return is refunded, or closed when nothing was due."""
    ret = get_return(session, attempt.return_id)
    target = S.REFUNDED if ret.refunded_total > ZERO else S.CLOSED
    why = (
        {
            RefundMethod.ORIGINAL_PAYMENT: "refunded to the original payment",
            RefundMethod.STORE_CREDIT: "refunded as store credit",
        }[attempt.method]
        if target is S.REFUNDED
        else "nothing to refund"
    )
    moved = move(
        session,
        attempt.actor,
        ret.id,
        S.INSPECTED,
        [(target, why)],
        {"refund_method": attempt.method.value},
    )
    audit(
        session,
        attempt.actor,
        f"return.{target.value}",
        "return",
        ret.id,
        {"refunded": str(ret.refunded_total), "method": attempt.method.value},
    )
    publish_status(session, moved, return_lines(session, ret.id), target)


def settle_answer(session: Session, attempt: SettlementAttempt, failed: bool) -> Outcome:
    """The settle endpoint's answer once the attempt is recorded: the return, or the refusal."""
    ret = get_return(session, attempt.return_id)
    if not failed:
        return Outcome(200, return_body(session, ret))
    problem = payments.PaymentDeclined(
        "the payment provider refused the refund; the return stays inspected: settle "
        "again, or refund as store credit",
        extra={
            "return_number": ret.number,
            "refunded": str(quantize(ret.refunded_total, ret.currency)),
        },
    )
    return Outcome(problem.status, problem.body())


def return_body(session: Session, ret: Return) -> dict[str, Any]:
    return return_json(
        ret, return_lines(session, ret.id), timeline(session, ret.id), settlements(session, ret.id)
    )
