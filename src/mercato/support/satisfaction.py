"""Satisfaction: the customer's rating of her closed case, and averages over time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import ColumnElement, Date, cast, func, select, update
from sqlalchemy.orm import Session

from mercato.db import utcnow
from mercato.errors import Conflict, UnprocessableState, ValidationProblem
from mercato.events import publish
from mercato.support.case_events import case_event
from mercato.support.event_types import CaseRated
from mercato.support.models import SupportCase
from mercato.support.reading import customer_case
from mercato.support.vocabulary import CaseStatus, ContactChannel, Period


def rate(
    session: Session,
    customer_id: int,
    case_id: int,
    satisfaction: int,
    comment: str | None = None,
    *,
    now: datetime | None = None,
) -> SupportCase:
    """The customer's rating of her closed case, 1 to 5, once."""
    if not 1 <= satisfaction <= 5:
        raise ValidationProblem.field("body.satisfaction", "a whole number from 1 to 5")
    text = None if comment is None else (comment.strip() or None)
    if text is not None and len(text) > 2000:
        raise ValidationProblem.field("body.comment", "at most 2000 characters")
    rated = session.execute(
        update(SupportCase)
        .where(
            SupportCase.id == case_id,
            SupportCase.customer_id == customer_id,
            SupportCase.status == CaseStatus.CLOSED.value,
            SupportCase.satisfaction.is_(None),
        )
        .values(satisfaction=satisfaction, satisfaction_comment=text, rated_at=now or utcnow())
        .returning(SupportCase.id)
        .execution_options(synchronize_session=False)
    ).first()
    case = customer_case(session, customer_id, case_id)
    if rated is None:
        if case.status != CaseStatus.CLOSED.value:
            raise UnprocessableState(
                f"case {case.number} is {case.status}: only a closed case can be rated",
                code="case-not-closed",
            )
        raise Conflict(f"case {case.number} was rated already", code="case-already-rated")
    publish(
        session,
        CaseRated(**case_event(case), satisfaction=satisfaction, commented=text is not None),
    )
    return case


@dataclass(frozen=True)
class SatisfactionRow:
    period_start: date
    channel_id: int | None
    source: str
    ratings: int
    score_total: int

    @property
    def average(self) -> Decimal:
        return (Decimal(self.score_total) / self.ratings).quantize(
            Decimal("0.01"), rounding=ROUND_HALF_UP
        )


def _bucket(session: Session, period: Period) -> ColumnElement[Any]:
    column = SupportCase.rated_at
    if session.get_bind().dialect.name == "postgresql":
        utc = func.timezone("UTC", column)
        return cast(func.date_trunc(period.value, utc), Date)
    # SQLite keeps UTC timestamps as ISO text: date() and its modifiers work on it.
    if period is Period.MONTH:
        return func.date(column, "start of month")
    if period is Period.WEEK:
        return func.date(column, "-6 days", "weekday 1")  # the Monday starting its ISO week
    return func.date(column)


def _rated(
    since: datetime, until: datetime, channel_id: int | None, source: ContactChannel | None
) -> list[ColumnElement[bool]]:
    """SQL: cases rated in [since, until), in the sales and contact channel if given."""
    conditions = [
        SupportCase.satisfaction.is_not(None),
        SupportCase.rated_at >= since,
        SupportCase.rated_at < until,
    ]
    if channel_id is not None:
        conditions.append(SupportCase.channel_id == channel_id)
    if source is not None:
        conditions.append(SupportCase.source == source.value)
    return conditions


def average_satisfaction(
    session: Session,
    *,
    since: datetime,
    until: datetime,
    period: Period = Period.DAY,
    channel_id: int | None = None,
    source: ContactChannel | None = None,
) -> list[SatisfactionRow]:
    """Ratings given in [since, until) per period (UTC), sales channel and contact channel
    (only one sales channel or contact channel if given).

    ``ratings`` and ``score_total`` let callers merge rows exactly (a channel over a month).
    """
    bucket = _bucket(session, period).label("bucket")
    conditions = _rated(since, until, channel_id, source)
    rows = session.execute(
        select(
            bucket,
            SupportCase.channel_id,
            SupportCase.source,
            func.count(),
            func.sum(SupportCase.satisfaction),
        )
        .where(*conditions)
        .group_by(bucket, SupportCase.channel_id, SupportCase.source)
        .order_by(bucket, SupportCase.channel_id.nulls_first(), SupportCase.source)
    ).all()
    return [
        SatisfactionRow(
            period_start=b if isinstance(b, date) else date.fromisoformat(str(b)),
            channel_id=channel_id,
            source=source,
            ratings=int(n),
            score_total=int(total),
        )
        for b, channel_id, source, n, total in rows
    ]
