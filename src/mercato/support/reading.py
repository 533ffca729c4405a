"""Reading cases, their threads and linked orders; searching cases."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, exists, func, not_, select, type_coerce
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from mercato.db import locked_row, utcnow
from mercato.errors import NotFound, ValidationProblem
from mercato.pagination import Page, decode_cursor, page_of
from mercato.support.models import SupportCase, SupportCaseOrder, SupportMessage
from mercato.support.sla import overdue_condition
from mercato.support.vocabulary import CaseStatus, ContactChannel, Direction, Priority


def get_case(session: Session, case_id: int) -> SupportCase:
    case = session.scalar(
        select(SupportCase)
        .where(SupportCase.id == case_id)
        .execution_options(populate_existing=True)
    )
    if case is None:
        raise NotFound(f"support case {case_id} not found")
    return case


def get_by_number(session: Session, number: str) -> SupportCase:
    case = session.scalar(select(SupportCase).where(SupportCase.number == number.strip().upper()))
    if case is None:
        raise NotFound(f"support case {number} not found")
    return case


def customer_case(session: Session, customer_id: int, case_id: int) -> SupportCase:
    """The customer's own case; another customer's case is as unknown as a missing one."""
    case = get_case(session, case_id)
    if case.customer_id != customer_id:
        raise NotFound(f"support case {case_id} not found")
    return case


def lock_case(session: Session, case_id: int) -> SupportCase:
    return locked_row(session, SupportCase, case_id, f"support case {case_id}")


def messages(session: Session, case_id: int, *, include_internal: bool) -> list[SupportMessage]:
    query = select(SupportMessage).where(SupportMessage.case_id == case_id)
    if not include_internal:
        query = query.where(SupportMessage.direction != Direction.INTERNAL.value)
    return list(session.scalars(query.order_by(SupportMessage.id)))


def last_messages(
    session: Session, case_ids: Sequence[int], per_case: int, *, include_internal: bool
) -> dict[int, list[SupportMessage]]:
    """The newest ``per_case`` messages of each case (oldest first), in one query."""
    if not case_ids:
        return {}
    rank = (
        func.row_number()
        .over(partition_by=SupportMessage.case_id, order_by=SupportMessage.id.desc())
        .label("rank")
    )
    inner = select(SupportMessage.id, rank).where(SupportMessage.case_id.in_(case_ids))
    if not include_internal:
        inner = inner.where(SupportMessage.direction != Direction.INTERNAL.value)
    ranked = inner.subquery()
    rows = session.scalars(
        select(SupportMessage)
        .join(ranked, ranked.c.id == SupportMessage.id)
        .where(ranked.c.rank <= per_case)
        .order_by(SupportMessage.case_id, SupportMessage.id)
    )
    found: dict[int, list[SupportMessage]] = defaultdict(list)
    for message in rows:
        found[message.case_id].append(message)
    return dict(found)


def case_orders(session: Session, case_ids: Sequence[int]) -> dict[int, list[SupportCaseOrder]]:
    if not case_ids:
        return {}
    found: dict[int, list[SupportCaseOrder]] = defaultdict(list)
    rows = session.scalars(
        select(SupportCaseOrder)
        .where(SupportCaseOrder.case_id.in_(case_ids))
        .order_by(SupportCaseOrder.case_id, SupportCaseOrder.created_at, SupportCaseOrder.order_id)
    )
    for row in rows:
        found[row.case_id].append(row)
    return dict(found)


def cases_for_order(session: Session, order_id: int) -> list[SupportCase]:
    """Support cases about an order (for the order's own views)."""
    return list(
        session.scalars(
            select(SupportCase)
            .join(SupportCaseOrder, SupportCaseOrder.case_id == SupportCase.id)
            .where(SupportCaseOrder.order_id == order_id)
            .order_by(SupportCase.id.desc())
        )
    )


# --- search ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseFilter:
    statuses: Sequence[CaseStatus] = ()
    priority: Priority | None = None
    assignee_id: int | None = None
    unassigned: bool = False
    customer_id: int | None = None
    channel_id: int | None = None
    source: ContactChannel | None = None
    order_id: int | None = None
    tag: str | None = None
    overdue: bool | None = None


def _has_tag(session: Session, tag: str) -> ColumnElement[bool]:
    if session.get_bind().dialect.name == "postgresql":
        return type_coerce(SupportCase.tags, JSONB).contains([tag])
    each = func.json_each(SupportCase.tags).table_valued("value")
    return exists().select_from(each).where(each.c.value == tag)


def _filters(session: Session, flt: CaseFilter, now: datetime) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if flt.statuses:
        conditions.append(SupportCase.status.in_([s.value for s in flt.statuses]))
    exact: list[tuple[Any, Any]] = [
        (SupportCase.priority, flt.priority.value if flt.priority else None),
        (SupportCase.assignee_id, flt.assignee_id),
        (SupportCase.customer_id, flt.customer_id),
        (SupportCase.channel_id, flt.channel_id),
        (SupportCase.source, flt.source.value if flt.source else None),
    ]
    conditions.extend(column == value for column, value in exact if value is not None)
    if flt.unassigned:
        conditions.append(SupportCase.assignee_id.is_(None))
    if flt.order_id is not None:
        conditions.append(
            SupportCase.id.in_(
                select(SupportCaseOrder.case_id).where(SupportCaseOrder.order_id == flt.order_id)
            )
        )
    if flt.tag:
        conditions.append(_has_tag(session, flt.tag.strip().lower()))
    if flt.overdue is not None:
        overdue = overdue_condition(now)
        conditions.append(overdue if flt.overdue else not_(overdue))
    return conditions


def _after_id(cursor: str | None) -> int | None:
    after = decode_cursor(cursor)
    if after is not None and (not isinstance(after, int) or isinstance(after, bool)):
        raise ValidationProblem.field("query.cursor", "not a cursor returned by this API")
    return after


def search_cases(
    session: Session,
    flt: CaseFilter,
    cursor: str | None,
    limit: int,
    *,
    now: datetime | None = None,
) -> Page[SupportCase]:
    """Newest first."""
    query = select(SupportCase).where(*_filters(session, flt, now or utcnow()))
    after = _after_id(cursor)
    if after is not None:
        query = query.where(SupportCase.id < after)
    rows = session.scalars(query.order_by(SupportCase.id.desc()).limit(limit + 1))
    return page_of(list(rows), limit, key=lambda c: c.id)


def customer_cases(
    session: Session, customer_id: int, cursor: str | None, limit: int
) -> Page[SupportCase]:
    return search_cases(session, CaseFilter(customer_id=customer_id), cursor, limit)
