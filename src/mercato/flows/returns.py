"""Returns across domains: receiving (orders count the units back, stock takes them in) and
settling (refunds split across tenders, store credit, exchanges).

**Receiving** (:func:`receive`) runs in the caller's transaction: the returns domain
receives and inspects the return, the order's lines count the units back
(``orders.record_returned``, itself conditional), each line's refund is priced, and stock is
posted at the receiving location: ``restock`` is a ``return`` movement; ``damaged`` is a
``return`` movement followed by a ``damage`` movement, so the ledger shows the unit coming
back and being written off; ``to_vendor`` units never enter the stock ledger.

**Settling** (:func:`settle`) is split around every payment provider call, as checkout
is; no transaction is open during a call:

A. claim the return (``settlement`` none/failed -> pending, conditional), price the
   exchange, create the replacement order with its stock holds and, if it costs more than
   the returned units' credit, a pending payment for the difference; record the attempt
   (:mod:`mercato.flows.return_exchanges`);
B. ask the provider to authorise the difference (exchanges that cost more only);
C. record the answer: the replacement order is placed and confirmed, or fails and releases
   its holds (the compensation: the return stays ``inspected``, nothing is refunded, 402,
   and what was authorised is voided);
D. refund the money through ``payments.refund_reference`` (split over the order's tenders
   by the payments domain: money tenders first, then gift cards and store credit); a
   refusal before anything was written fails the attempt (the compensation);
E. record the result: the return is ``refunded`` (``closed`` when nothing was due) and
   ``return.refunded`` is published (loyalty reverses points on it); a refusal leaves it
   ``inspected`` with a failed attempt, ready for another.

A crash between the steps leaves a ``pending`` attempt; the next :func:`settle` of that
return resumes it with the same keys (the payment of the difference has its authorisation
key, the refund its request key), so nothing is charged or refunded twice. Refunds as
store credit are written in step E itself. Store roles settle only returns received at
their own locations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from mercato import idempotency
from mercato.auth.principal import Principal
from mercato.db import Database
from mercato.errors import Conflict, Problem, ValidationProblem
from mercato.flows import return_exchanges as exchanges
from mercato.inventory import service as inventory
from mercato.money import ZERO
from mercato.orders import service as orders
from mercato.payments import service as payments
from mercato.payments.models import PaymentStatus, Refund
from mercato.returns import service as returns
from mercato.returns.models import Return, ReturnLine
from mercato.returns.state import Condition, RefundMethod

PAID = frozenset(
    {
        PaymentStatus.AUTHORIZED.value,
        PaymentStatus.CAPTURED.value,
        PaymentStatus.PARTIALLY_CAPTURED.value,
    }
)


# --- receiving -----------------------------------------------------------------------------


def receive(
    session: Session,
    actor: Principal,
    return_id: int,
    location_id: int,
    inspections: Sequence[returns.Inspection],
    note: str | None = None,
) -> Return:
    """The units arrived at ``location_id`` and were inspected: price them, post the stock."""
    receipt = returns.start_receipt(session, actor, return_id, location_id, inspections, note)
    ret = receipt.ret
    counted = orders.record_returned(
        session,
        actor,
        ret.order_id,
        {x.order_line_id: x.quantity for x in receipt.lines},
        reference=ret.number,
    )
    returns.record_inspection(session, receipt, {x.id: x for x in counted})
    _restock(session, actor, ret, location_id, receipt.lines)
    return returns.finish_receipt(session, actor, receipt)


def _restock(
    session: Session, actor: Principal, ret: Return, location_id: int, lines: Sequence[ReturnLine]
) -> None:
    ctx = inventory.Context(actor, ret.channel_id, "return", ret.number, f"return {ret.number}")
    back = [
        inventory.AdjustmentLine(x.variant_id, x.quantity, inventory.Reason.RETURN)
        for x in lines
        if x.condition in (Condition.RESTOCK.value, Condition.DAMAGED.value)
    ]
    if back:
        inventory.adjust(session, ctx, location_id, back)
    damaged = [
        inventory.AdjustmentLine(x.variant_id, -x.quantity, inventory.Reason.DAMAGE)
        for x in lines
        if x.condition == Condition.DAMAGED.value
    ]
    if damaged:
        written_off = replace(ctx, note=f"return {ret.number}: damaged on receipt")
        inventory.adjust(session, written_off, location_id, damaged)


# --- settling: refund, store credit, exchange ----------------------------------------------


@dataclass(frozen=True)
class _Idem:
    scope: str
    key: str
    fingerprint: str


def settle(
    database: Database,
    actor: Principal,
    return_id: int,
    request: returns.SettleRequest,
    *,
    key: str | None = None,
    payload: Any = None,
    request_id: str | None = None,
) -> returns.Outcome:
    """Pay an inspected return out (see the module notes); must run with no transaction open."""
    idem = None
    if key is not None:
        scope = idempotency.scope_for(f"returns.settle.{return_id}", actor)
        idem = _Idem(scope, key, idempotency.request_fingerprint(payload))
        stored = _stored_answer(database, idem)
        if stored is not None:
            return stored
    attempt = _begin(database, actor, return_id, request, request_id)
    if attempt.exchange_pending:
        declined = _charge_difference(database, attempt, idem, request_id)
        if declined is not None:
            return declined
    refunds = None
    if attempt.method is RefundMethod.ORIGINAL_PAYMENT and attempt.amount > ZERO:
        refunds = _refund_original(database, attempt, request_id)
    return _complete(database, attempt, refunds, idem, request_id)


def _stored_answer(database: Database, idem: _Idem) -> returns.Outcome | None:
    with database.read() as session:
        record = idempotency.record_for(session, idem.scope, idem.key)
        if record is None:
            return None
        if record.request_hash != idem.fingerprint:
            raise ValidationProblem(
                "this Idempotency-Key was used with a different request body",
                code="idempotency-key-reused",
            )
        if record.status_code == idempotency.IN_PROGRESS:
            return None
        return returns.Outcome(record.status_code, dict(record.response or {}))


def _remember(session: Session, idem: _Idem | None, outcome: returns.Outcome) -> None:
    """Store the answer with the effect; a concurrent duplicate that stored first wins."""
    if idem is not None and idempotency.try_claim(session, idem.scope, idem.key, idem.fingerprint):
        idempotency.finish(session, idem.scope, idem.key, outcome.status_code, outcome.body)


def _begin(
    database: Database,
    actor: Principal,
    return_id: int,
    request: returns.SettleRequest,
    request_id: str | None,
) -> returns.SettlementAttempt:
    """Step A: resume the pending attempt, or claim the return and start a new one."""
    with database.transaction() as session:
        session.info["request_id"] = request_id
        ret = returns.get_return(session, return_id)
        returns.require_here(actor, ret)
        resumed = returns.pending_attempt(session, ret)
        if resumed is not None:
            return resumed
        returns.check_settleable(ret)
        lines = returns.return_lines(session, ret.id)
        plan = returns.plan_settlement(session, ret, lines, request)
        returns.check_plan(session, ret, plan, request)
        if not returns.claim_settlement(session, ret.id):
            # A concurrent settle got there first: continue its attempt (same keys).
            ret = returns.get_return(session, return_id)
            again = returns.pending_attempt(session, ret)
            if again is None:
                returns.check_settleable(ret)
                raise Conflict(
                    f"return {ret.number} changed meanwhile; retry", code="return-state-changed"
                )
            return again
        return _start(session, actor, returns.get_return(session, ret.id), lines, plan, request)


def _start(
    session: Session,
    actor: Principal,
    ret: Return,
    lines: Sequence[ReturnLine],
    plan: returns.SettlementPlan,
    request: returns.SettleRequest,
) -> returns.SettlementAttempt:
    """The rest of step A: the replacement order, its holds and payment, the attempt row."""
    exchange = exchanges.Replacement(None, [], [])
    if plan.exchange_lines:
        exchange = exchanges.replacement_order(session, actor, ret, plan, request.tenders)
        if plan.charge == ZERO:
            returns.exchange_done(
                session, ret, lines, plan.line_refunds, plan.refund, ZERO, exchange.order
            )
    return returns.start_attempt(
        session, actor, ret, plan, exchange.order, exchange.hold_ids, exchange.payment_ids
    )


def _charge_difference(
    database: Database,
    attempt: returns.SettlementAttempt,
    idem: _Idem | None,
    request_id: str | None,
) -> returns.Outcome | None:
    """Steps B and C: authorise the difference, then confirm the replacement or undo it."""
    outcomes = payments.authorize_pending(database, list(attempt.charge_payment_ids))
    to_void: list[int] = []
    declined: returns.Outcome | None = None
    with database.transaction() as session:
        session.info["request_id"] = request_id
        if outcomes:
            payments.record_outcomes(session, outcomes)
        charged = payments.get_payments(session, list(attempt.charge_payment_ids))
        statuses = {p.id: p.status for p in charged}
        if all(s in PAID for s in statuses.values()):
            exchanges.confirm(session, attempt)
        else:
            declined = exchanges.decline(session, attempt, charged)
            _remember(session, idem, declined)
            to_void = [pid for pid, s in statuses.items() if s not in ("declined", "failed")]
    if to_void:
        payments.void_payments(database, to_void, actor=attempt.actor, request_id=request_id)
    return declined


def _refund_original(
    database: Database, attempt: returns.SettlementAttempt, request_id: str | None
) -> list[Refund]:
    """Step D: the refund, split over the order's tenders by the payments domain."""
    try:
        return payments.refund_reference(
            database,
            attempt.order_number,
            attempt.amount,
            reason=f"return {attempt.number}",
            actor=attempt.actor,
            request_key=attempt.request_key,
            request_id=request_id,
        )
    except Conflict:
        raise  # a concurrent settle of this return holds the refund: it will finish it
    except Problem as exc:
        # Refused before anything was written (the payments changed since step A).
        with database.transaction() as session:
            session.info["request_id"] = request_id
            returns.finish_attempt(session, attempt, "failed", ZERO, [], (exc.code, exc.detail))
        if isinstance(exc, ValidationProblem):
            raise returns.RefundExceedsCaptured(exc.detail) from exc
        raise


def _complete(
    database: Database,
    attempt: returns.SettlementAttempt,
    refunds: Sequence[Refund] | None,
    idem: _Idem | None,
    request_id: str | None,
) -> returns.Outcome:
    """Step E: record what went back; the return is refunded or closed when all did."""
    done = list(refunds or ())
    with database.transaction() as session:
        session.info["request_id"] = request_id
        if any(r.status == "pending" for r in done):
            # The provider could not be reached: a later settle resumes with the same key.
            returns.keep_pending_refunds(session, attempt, [r.id for r in done])
            ret = returns.get_return(session, attempt.return_id)
            return returns.Outcome(202, returns.return_body(session, ret))
        failed = any(r.status == "failed" for r in done)
        back = attempt.amount if refunds is None else _succeeded(done)
        failure = ("refund-declined", "the payment provider refused the refund")
        status = "failed" if failed else "succeeded"
        ids = [r.id for r in done]
        if returns.finish_attempt(session, attempt, status, back, ids, failure if failed else None):
            _credit(session, attempt)
            if not failed:
                returns.mark_settled(session, attempt)
        outcome = returns.settle_answer(session, attempt, failed)
        _remember(session, idem, outcome)
        return outcome


def _succeeded(refunds: Sequence[Refund]) -> Decimal:
    return sum((r.amount for r in refunds if r.status == "succeeded"), ZERO)


def _credit(session: Session, attempt: returns.SettlementAttempt) -> None:
    """A refund as store credit: Mercato is its own provider, so it is written right here."""
    if attempt.method is RefundMethod.STORE_CREDIT and attempt.amount > ZERO:
        assert attempt.customer_id is not None
        payments.credit_store(
            session,
            attempt.customer_id,
            attempt.currency,
            attempt.amount,
            f"refund of return {attempt.number}",
            attempt.number,
            actor=attempt.actor,
        )
