"""Reading returns: one return, its lines, timeline and settlement attempts, and lists."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from mercato.db import get_or_404
from mercato.errors import NotFound, ValidationProblem
from mercato.pagination import Page, decode_cursor, page_of
from mercato.returns.models import Return, ReturnLine, ReturnSettlement, ReturnTransition

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_return_number() -> str:
    body = "".join(secrets.choice(_ALPHABET) for _ in range(8))
    return f"R{body[:4]}-{body[4:]}"


def get_return(session: Session, return_id: int) -> Return:
    return get_or_404(session, Return, return_id, f"return {return_id}", fresh=True)


def get_by_number(session: Session, number: str) -> Return:
    ret = session.scalar(
        select(Return).where(Return.number == number).execution_options(populate_existing=True)
    )
    if ret is None:
        raise NotFound(f"return {number} not found")
    return ret


def return_lines(session: Session, return_id: int) -> list[ReturnLine]:
    return list(
        session.scalars(
            select(ReturnLine)
            .where(ReturnLine.return_id == return_id)
            .order_by(ReturnLine.line_no)
            .execution_options(populate_existing=True)
        )
    )


def timeline(session: Session, return_id: int) -> list[ReturnTransition]:
    return list(
        session.scalars(
            select(ReturnTransition)
            .where(ReturnTransition.return_id == return_id)
            .order_by(ReturnTransition.id)
        )
    )


def settlements(session: Session, return_id: int) -> list[ReturnSettlement]:
    return list(
        session.scalars(
            select(ReturnSettlement)
            .where(ReturnSettlement.return_id == return_id)
            .order_by(ReturnSettlement.id)
            .execution_options(populate_existing=True)
        )
    )


def customer_return(session: Session, customer_id: int, number: str) -> Return:
    ret = get_by_number(session, number)
    if ret.customer_id != customer_id:
        raise NotFound(f"return {number} not found")
    return ret


# --- listing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReturnFilter:
    order_id: int | None = None
    customer_id: int | None = None
    status: str | None = None
    location_id: int | None = None
    channel_id: int | None = None


def search(session: Session, flt: ReturnFilter, cursor: str | None, limit: int) -> Page[Return]:
    query = select(Return).order_by(Return.id.desc())
    for name in ("order_id", "customer_id", "status", "location_id", "channel_id"):
        value = getattr(flt, name)
        if value is not None:
            query = query.where(getattr(Return, name) == value)
    after = decode_cursor(cursor)
    if after is not None:
        if not isinstance(after, int):
            raise ValidationProblem.field("query.cursor", "not a cursor returned by this API")
        query = query.where(Return.id < after)
    return page_of(list(session.scalars(query.limit(limit + 1))), limit, key=lambda r: r.id)
