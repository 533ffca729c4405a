"""The return window: it counts from when the order reached its customer (the latest
fulfilment, delivery or pickup event), else from when it was placed."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from mercato.errors import Problem
from mercato.orders import event_types as order_events
from mercato.returns.facts import OrderFacts
from mercato.returns.models import FulfilmentDate
from mercato.returns.policies import EffectivePolicy

# Order events after which the units are with the customer: the window counts from the last.
FULFILMENT_EVENTS: tuple[type[order_events.OrderFacts], ...] = (
    order_events.OrderPartiallyFulfilled,
    order_events.OrderFulfilled,
    order_events.OrderDelivered,
    order_events.OrderPickedUp,
)


class ReturnWindowExpired(Problem):
    status = 422
    code = "return-window-expired"
    title = "The return window has closed"


def record_fulfilment(session: Session, event: order_events.OrderFacts) -> None:
    """Keep the latest fulfilment, delivery or pickup time of an order (event subscriber).

    Delivered at least once and possibly out of order: the upsert keeps the latest time.
    """
    table = FulfilmentDate.__table__
    postgres = session.get_bind().dialect.name == "postgresql"
    stmt = (pg_insert if postgres else sqlite_insert)(FulfilmentDate).values(
        order_id=event.order_id, fulfilled_at=event.envelope.time
    )
    # GREATEST on PostgreSQL, the two-argument scalar MAX on SQLite.
    latest = (func.greatest if postgres else func.max)(
        table.c.fulfilled_at, stmt.excluded.fulfilled_at
    )
    session.execute(
        stmt.on_conflict_do_update(index_elements=["order_id"], set_={"fulfilled_at": latest})
    )


def window_start(session: Session, order: OrderFacts) -> datetime:
    """When the return window opened: the last fulfilment event, else the order date."""
    found = session.get(FulfilmentDate, order.id, populate_existing=True)
    if found is not None:
        return found.fulfilled_at
    return order.placed_at or order.created_at


def check_window(
    session: Session, order: OrderFacts, policy: EffectivePolicy, now: datetime
) -> None:
    deadline = window_start(session, order) + timedelta(days=policy.days_allowed)
    if now > deadline:
        raise ReturnWindowExpired(
            f"order {order.number} could be returned until {deadline.isoformat()} "
            f"({policy.days_allowed} days)",
            extra={
                "deadline": deadline.isoformat(),
                "days_allowed": policy.days_allowed,
                "policy": policy.scope,
            },
        )
