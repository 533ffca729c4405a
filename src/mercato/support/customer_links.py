"""Support cases follow a customer merge; what support exports and erases about a person
(the profile's cases, and those a guest opened with one of the person's emails).

Erasure keeps each case's number, dates, status, SLA figures and satisfaction score (the
service-level and satisfaction KPIs stay true) and replaces everything the person or an
agent wrote: the subject, every message, the rating comment, the guest email.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from mercato.customers.timeline import TimelineEntry
from mercato.personal_data import DomainPrivacy, Subject, record
from mercato.support.models import SupportCase, SupportCaseOrder, SupportMessage

ERASED = "[erased]"



_WHO = {"inbound": "Message from the customer", "outbound": "Reply to the customer"}


def timeline_entries(
    session: Session, customer_id: int, since: datetime | None, limit: int
) -> list[TimelineEntry]:
    """Each message of the customer's cases (internal notes stay with the case); what was
    written is not repeated here: the timeline is readable without personal-data rights."""
    query = (
        select(SupportMessage, SupportCase.number, SupportCase.channel_id, SupportCase.id)
        .join(SupportCase, SupportCase.id == SupportMessage.case_id)
        .where(SupportCase.customer_id == customer_id, SupportMessage.direction != "internal")
    )
    if since is not None:
        query = query.where(SupportMessage.created_at >= since)
    rows = session.execute(query.order_by(SupportMessage.created_at.desc()).limit(limit))
    return [
        TimelineEntry(
            at=message.created_at,
            kind="support_message",
            channel_id=channel_id,
            summary=(
                f"{_WHO.get(message.direction, 'Message')} on case {number} ({message.channel})"
            ),
            ref_type="support_case",
            ref_id=str(case_id),
            data={"case": number, "direction": message.direction, "via": message.channel},
        )
        for message, number, channel_id, case_id in rows
    ]


def _cases(session: Session, subject: Subject) -> list[SupportCase]:
    guest = _guest_case_ids(session, subject.contacts.emails)
    mine = or_(SupportCase.customer_id.in_(subject.customer_ids), SupportCase.id.in_(guest))
    return list(session.scalars(select(SupportCase).where(mine).order_by(SupportCase.id)))


def _guest_case_ids(session: Session, emails: frozenset[str]) -> list[int]:
    """Cases a guest opened with one of these emails (decrypted batch by batch: guest
    emails have no keyed hash, and a privacy request must be complete)."""
    if not emails:
        return []
    found: list[int] = []
    last = 0
    while True:
        rows = session.execute(
            select(SupportCase.id, SupportCase.email)
            .where(
                SupportCase.customer_id.is_(None),
                SupportCase.email.is_not(None),
                SupportCase.id > last,
            )
            .order_by(SupportCase.id)
            .limit(500)
        ).all()
        if not rows:
            return found
        found += [int(r.id) for r in rows if (r.email or "").strip().lower() in emails]
        last = int(rows[-1].id)


def _collect(session: Session, subject: Subject) -> None:
    for case in _cases(session, subject):
        subject.identifiers.add_email(case.email)


def _export(session: Session, subject: Subject) -> list[dict[str, Any]]:
    cases = _cases(session, subject)
    ids = [c.id for c in cases]
    if not ids:
        return []
    messages: dict[int, list[dict[str, Any]]] = {}
    for message in session.scalars(
        select(SupportMessage)
        .where(SupportMessage.case_id.in_(ids), SupportMessage.direction != "internal")
        .order_by(SupportMessage.id)
    ):
        messages.setdefault(message.case_id, []).append(record(message, exclude={"author_id"}))
    orders: dict[int, list[str]] = {}
    for link in session.scalars(select(SupportCaseOrder).where(SupportCaseOrder.case_id.in_(ids))):
        orders.setdefault(link.case_id, []).append(link.order_number)
    return [
        {
            **record(case, exclude={"assignee_id"}),
            "messages": messages.get(case.id, []),
            "orders": orders.get(case.id, []),
        }
        for case in cases
    ]


def _erase(session: Session, subject: Subject) -> int:
    cases = _cases(session, subject)
    ids = [c.id for c in cases]
    for case in cases:
        case.subject = ERASED
        case.satisfaction_comment = None
        if case.email is not None:
            case.email = subject.reference
    for message in session.scalars(select(SupportMessage).where(SupportMessage.case_id.in_(ids))):
        message.body = ERASED
        message.attachments = []
        if message.author_type in ("customer", "guest"):
            message.author_name = None
    return len(cases)


PRIVACY = DomainPrivacy("support", export=_export, erase=_erase, collect=_collect)
