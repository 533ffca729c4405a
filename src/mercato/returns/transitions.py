"""A return's status changes: each one conditional, recorded on its timeline and published
as ``return.<status>``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.auth.service import audit
from mercato.db import utcnow
from mercato.errors import UnprocessableState
from mercato.events import publish
from mercato.money import quantize
from mercato.returns.event_types import STATUS_EVENTS, ReturnedLine, ReturnFacts
from mercato.returns.models import Return, ReturnLine, ReturnTransition
from mercato.returns.records import get_return, return_lines
from mercato.returns.state import TRANSITIONS, ReturnStatus, Settlement

S = ReturnStatus


def record_transitions(
    session: Session,
    actor: Principal,
    return_id: int,
    current: ReturnStatus | None,
    steps: Sequence[tuple[ReturnStatus, str | None]],
    at: datetime,
) -> None:
    rows = []
    previous = current
    for target, reason in steps:
        rows.append(
            {
                "return_id": return_id,
                "from_status": None if previous is None else previous.value,
                "to_status": target.value,
                "actor_type": actor.kind,
                "actor_id": None if actor.id is None else str(actor.id),
                "reason": reason,
                "at": at,
            }
        )
        previous = target
    session.execute(insert(ReturnTransition), rows)


def move(
    session: Session,
    actor: Principal,
    return_id: int,
    current: ReturnStatus,
    steps: Sequence[tuple[ReturnStatus, str | None]],
    values: Mapping[str, Any] | None = None,
    *,
    guard: Sequence[Any] = (),
) -> Return:
    """Take legal steps with one conditional UPDATE from ``current``: concurrent changes of
    the same return cannot both win; the loser gets a 409 and nothing changes."""
    position = current
    for target, _ in steps:
        if target not in TRANSITIONS[position]:
            raise UnprocessableState(
                f"return {return_id} cannot go from {position} to {target}",
                code="illegal-transition",
                extra={"from": position.value, "to": target.value},
            )
        position = target
    now = utcnow()
    ret = session.scalars(
        update(Return)
        .where(Return.id == return_id, Return.status == current.value, *guard)
        .values({"status": position.value, "updated_at": now, **(values or {})})
        .returning(Return)
        .execution_options(populate_existing=True, synchronize_session=False)
    ).one_or_none()
    if ret is None:
        found = get_return(session, return_id)
        raise UnprocessableState(
            f"return {found.number} is {found.status}, not {current}; reload it",
            code="return-state-changed",
            extra={"return_status": found.status, "to": position.value},
        )
    record_transitions(session, actor, return_id, current, steps, now)
    return ret


def _step(
    session: Session, actor: Principal, ret: Return, target: ReturnStatus, reason: str | None
) -> Return:
    current = ReturnStatus(ret.status)
    if target not in TRANSITIONS[current]:
        raise UnprocessableState(
            f"return {ret.number} is {current}: it cannot be {target}",
            code="illegal-transition",
            extra={"from": current.value, "to": target.value},
        )
    moved = move(session, actor, ret.id, current, [(target, reason)])
    audit(session, actor, f"return.{target.value}", "return", ret.id, {"reason": reason})
    publish_status(session, moved, return_lines(session, ret.id), target)
    return moved


def approve(session: Session, actor: Principal, return_id: int, reason: str | None) -> Return:
    return _step(session, actor, get_return(session, return_id), S.APPROVED, reason)


def reject(session: Session, actor: Principal, return_id: int, reason: str) -> Return:
    return _step(session, actor, get_return(session, return_id), S.REJECTED, reason)


def cancel(session: Session, actor: Principal, ret: Return, reason: str | None) -> Return:
    """Withdraw a return before anything arrived (the customer or staff)."""
    return _step(session, actor, ret, S.CANCELLED, reason)


def close(session: Session, actor: Principal, return_id: int, reason: str) -> Return:
    """End an inspected return without paying anything (more) out: a staff decision."""
    ret = get_return(session, return_id)
    require_here(actor, ret)
    if ret.status != S.INSPECTED.value:
        return _step(session, actor, ret, S.CLOSED, reason)  # answers the illegal transition
    moved = move(
        session,
        actor,
        ret.id,
        S.INSPECTED,
        [(S.CLOSED, reason)],
        {"settlement": Settlement.DONE.value},
        guard=[Return.settlement != Settlement.PENDING.value],
    )
    audit(session, actor, "return.closed", "return", ret.id, {"reason": reason})
    publish_status(session, moved, return_lines(session, ret.id), S.CLOSED)
    return moved


def require_here(actor: Principal, ret: Return) -> None:
    """Store roles finish only the returns that arrived at their own locations."""
    if ret.location_id is not None:
        actor.require_location(ret.location_id)


# --- events -------------------------------------------------------------------------------------


def status_event(ret: Return, lines: Sequence[ReturnLine], status: ReturnStatus) -> ReturnFacts:
    """``return.<status>``: the return, and per line the variant, units and money (a
    line's refund once the return is refunded or closed, before that its credit)."""

    def amount(line: ReturnLine) -> Decimal | None:
        value = line.refund if status in (S.REFUNDED, S.CLOSED) else line.amount
        return None if value is None else quantize(value, ret.currency)

    return STATUS_EVENTS[status](
        return_id=ret.id,
        number=ret.number,
        order_id=ret.order_id,
        order_number=ret.order_number,
        channel_id=ret.channel_id,
        customer_id=ret.customer_id,
        currency=ret.currency,
        status=status.value,
        location_id=ret.location_id,
        refund_method=ret.refund_method,
        refunded_total=quantize(ret.refunded_total, ret.currency),
        shipping_refund=quantize(ret.shipping_refund, ret.currency),
        exchange_order_id=ret.exchange_order_id,
        lines=tuple(
            ReturnedLine(
                return_line_id=x.id,
                order_line_id=x.order_line_id,
                variant_id=x.variant_id,
                quantity=x.quantity,
                reason=x.reason,
                condition=x.condition,
                amount=amount(x),
            )
            for x in lines
        ),
    )


def publish_status(
    session: Session, ret: Return, lines: Sequence[ReturnLine], status: ReturnStatus
) -> None:
    publish(session, status_event(ret, lines, status))
