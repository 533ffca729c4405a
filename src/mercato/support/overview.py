"""The agent console: everything a phone agent needs about one customer."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from mercato.customers import service as customers
from mercato.customers.models import Customer
from mercato.orders import service as orders
from mercato.orders.models import Order, OrderLine
from mercato.support.models import SupportCase, SupportCaseOrder, SupportMessage
from mercato.support.reading import case_orders, last_messages
from mercato.support.vocabulary import ACTIVE, OVERVIEW_CASES, OVERVIEW_MESSAGES, OVERVIEW_ORDERS


@dataclass
class Overview:
    """Everything a phone agent needs about one customer, read in a fixed number of queries."""

    customer: Customer
    order_count: int
    open_cases: list[SupportCase]
    recent_cases: list[SupportCase]
    last_messages: dict[int, list[SupportMessage]]
    case_orders: dict[int, list[SupportCaseOrder]]
    recent_orders: list[Order]
    order_lines: dict[int, list[OrderLine]] = field(default_factory=dict)


def customer_overview(session: Session, customer_id: int) -> Overview:
    customer = customers.get_customer(session, customer_id)
    open_cases = _open_cases(session, customer_id)
    recent_cases = _recent_cases(session, customer_id)
    ids = [c.id for c in open_cases + recent_cases]
    recent_orders = orders.search(
        session, orders.OrderFilter(customer_id=customer_id), None, OVERVIEW_ORDERS
    ).items
    return Overview(
        customer=customer,
        order_count=orders.count_orders(session, customer_id),
        open_cases=open_cases,
        recent_cases=recent_cases,
        last_messages=last_messages(session, ids, OVERVIEW_MESSAGES, include_internal=True),
        case_orders=case_orders(session, ids),
        recent_orders=recent_orders,
        # At most OVERVIEW_ORDERS small queries: the orders service reads lines per order.
        order_lines={o.id: orders.order_lines(session, o.id) for o in recent_orders},
    )


def _open_cases(session: Session, customer_id: int) -> list[SupportCase]:
    """All the customer's active cases, newest first."""
    return list(
        session.scalars(
            select(SupportCase)
            .where(
                SupportCase.customer_id == customer_id,
                SupportCase.status.in_([s.value for s in ACTIVE]),
            )
            .order_by(SupportCase.id.desc())
        )
    )


def _recent_cases(session: Session, customer_id: int) -> list[SupportCase]:
    """The customer's last few resolved or closed cases, newest first."""
    return list(
        session.scalars(
            select(SupportCase)
            .where(
                SupportCase.customer_id == customer_id,
                SupportCase.status.not_in([s.value for s in ACTIVE]),
            )
            .order_by(SupportCase.id.desc())
            .limit(OVERVIEW_CASES)
        )
    )
