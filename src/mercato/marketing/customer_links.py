"""Consents and messages follow a customer merge; what marketing exports and erases.

**Merge policy for consent.** Both profiles are one person, so their decisions form one
history: B's consent records move to A and, records being in the order they were made,
the person's latest decision for each purpose and channel is the one that counts. A
withdrawal made on either profile after a grant on the other therefore wins; an older
withdrawal does not cancel a newer grant. Undo moves exactly B's records back.

**Offer claims** (when a rule last gave the person an offer) follow too: the merged profile
keeps, per rule, the later of the two claims, so a rule's "once per period" holds for the
person and not once per profile. Undo puts B's claims back and gives A back its own, unless
A got a newer offer since.

**Erasure** keeps the consent history (proof of what the person agreed to, holding no
personal data beyond the customer id) and empties the messages' address and content.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mercato.customers.timeline import TimelineEntry
from mercato.db import utcnow
from mercato.marketing.models import ConsentRecord, Message, OfferClaim, RunResult
from mercato.marketing.notifier import MessageStatus
from mercato.merges import CustomerMerged, CustomerMergeUndone, MergeMove, merge_ids
from mercato.personal_data import DomainPrivacy, Subject, record

ERASED = "[erased]"
MERGED_MODELS: tuple[Any, ...] = (ConsentRecord, Message)


_CLAIMS = OfferClaim.__tablename__


def _claim_state(claim: OfferClaim | None) -> dict[str, Any] | None:
    if claim is None:
        return None
    return {"issued_at": claim.issued_at.isoformat(), "run_id": claim.run_id}


def claims_merged(session: Session, event: CustomerMerged) -> None:
    """B's offer claims become A's, the later one winning per rule; logged for undo."""
    merge_id, from_id, into_id = merge_ids(event)
    if session.get(MergeMove, (merge_id, _CLAIMS)) is not None:
        return
    moved: list[dict[str, Any]] = []
    theirs = session.scalars(
        select(OfferClaim)
        .where(OfferClaim.customer_id == from_id)
        .order_by(OfferClaim.rule_id)
        .with_for_update()
    ).all()
    for claim in theirs:
        ours = session.get(OfferClaim, (claim.rule_id, into_id), with_for_update=True)
        moved.append(
            {"rule_id": claim.rule_id, "from": _claim_state(claim), "into": _claim_state(ours)}
        )
        if ours is None:
            session.add(
                OfferClaim(
                    rule_id=claim.rule_id,
                    customer_id=into_id,
                    issued_at=claim.issued_at,
                    run_id=claim.run_id,
                )
            )
        elif claim.issued_at > ours.issued_at:
            ours.issued_at, ours.run_id = claim.issued_at, claim.run_id
        session.delete(claim)
    session.add(
        MergeMove(
            merge_id=merge_id, table_name=_CLAIMS, from_id=from_id, into_id=into_id, row_ids=moved
        )
    )
    session.flush()


def claims_merge_undone(session: Session, event: CustomerMergeUndone) -> None:
    merge_id, _, _ = merge_ids(event)
    log = session.get(MergeMove, (merge_id, _CLAIMS), with_for_update=True)
    if log is None or log.restored_at is not None:
        return
    for entry in log.row_ids:
        rule_id, theirs, before = int(entry["rule_id"]), entry["from"], entry["into"]
        ours = session.get(OfferClaim, (rule_id, log.into_id), with_for_update=True)
        # A's claim is A's own again unless an offer was issued to A after the merge.
        winner = theirs if before is None or theirs["issued_at"] > before["issued_at"] else before
        if ours is not None and ours.issued_at.isoformat() == winner["issued_at"]:
            if before is None:
                session.delete(ours)
            else:
                ours.issued_at = datetime.fromisoformat(before["issued_at"])
                ours.run_id = int(before["run_id"])
        if session.get(OfferClaim, (rule_id, log.from_id)) is None:
            session.add(
                OfferClaim(
                    rule_id=rule_id,
                    customer_id=log.from_id,
                    issued_at=datetime.fromisoformat(theirs["issued_at"]),
                    run_id=int(theirs["run_id"]),
                )
            )
    log.restored_at = utcnow()
    session.flush()


def email_entries(
    session: Session, customer_id: int, since: datetime | None, limit: int
) -> list[TimelineEntry]:
    """Messages sent to the customer (the template, never the address or content)."""
    query = select(Message).where(
        Message.customer_id == customer_id, Message.status == MessageStatus.SENT.value
    )
    if since is not None:
        query = query.where(Message.sent_at >= since)
    rows = session.scalars(query.order_by(Message.sent_at.desc()).limit(limit))
    return [
        TimelineEntry(
            at=m.sent_at or m.created_at,
            kind="email" if m.channel == "email" else m.channel,
            channel_id=None,
            summary=f"{m.channel.upper() if m.channel == 'sms' else 'Email'} sent: {m.template}"
            f" ({m.locale})",
            ref_type="message",
            ref_id=str(m.id),
            data={"template": m.template, "purpose": m.purpose, "locale": m.locale},
        )
        for m in rows
    ]


def consent_entries(
    session: Session, customer_id: int, since: datetime | None, limit: int
) -> list[TimelineEntry]:
    query = select(ConsentRecord).where(ConsentRecord.customer_id == customer_id)
    if since is not None:
        query = query.where(ConsentRecord.recorded_at >= since)
    rows = session.scalars(query.order_by(ConsentRecord.recorded_at.desc()).limit(limit))
    return [
        TimelineEntry(
            at=c.recorded_at,
            kind="consent",
            channel_id=c.source_channel_id,
            summary=f"Consent to {c.purpose} {'given' if c.granted else 'withdrawn'}"
            f" (wording {c.wording_version}, {c.source})",
            ref_type="consent",
            ref_id=str(c.id),
            data={"purpose": c.purpose, "granted": c.granted, "channel_id": c.channel_id},
        )
        for c in rows
    ]


def _messages(session: Session, subject: Subject) -> list[Message]:
    guests = _guest_message_ids(session, subject)
    mine = Message.customer_id.in_(subject.customer_ids)
    query = select(Message).where(mine | Message.id.in_(guests) if guests else mine)
    return list(session.scalars(query.order_by(Message.id)))


def _guest_message_ids(session: Session, subject: Subject) -> list[int]:
    """Service messages sent to a guest (no profile) at one of the person's emails or
    phones. Recipients have no keyed hash, so guest messages are decrypted batch by batch:
    a privacy request is rare and must be complete."""
    contacts = subject.contacts.emails | subject.contacts.phones
    if not contacts:
        return []
    found: list[int] = []
    last = 0
    while True:
        rows = session.execute(
            select(Message.id, Message.recipient)
            .where(Message.customer_id.is_(None), Message.id > last)
            .order_by(Message.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            return found
        found += [int(r.id) for r in rows if (r.recipient or "").strip().lower() in contacts]
        last = int(rows[-1].id)


_BATCH = 500


def _collect(session: Session, subject: Subject) -> None:
    for message in _messages(session, subject):
        if message.channel == "email":
            subject.identifiers.add_email(message.recipient)
        else:
            subject.identifiers.add_phone(message.recipient)


def _export(session: Session, subject: Subject) -> dict[str, Any]:
    ids = subject.customer_ids
    consents = session.scalars(
        select(ConsentRecord).where(ConsentRecord.customer_id.in_(ids)).order_by(ConsentRecord.id)
    )
    results = session.scalars(
        select(RunResult).where(RunResult.customer_id.in_(ids)).order_by(RunResult.run_id)
    )
    return {
        "consents": [record(c) for c in consents],
        "messages": [record(m, exclude={"claimed_until"}) for m in _messages(session, subject)],
        "offer_selections": [record(r) for r in results],
    }


def _erase(session: Session, subject: Subject) -> int:
    messages = _messages(session, subject)
    for message in messages:
        message.recipient = subject.reference
        message.subject = ERASED
        message.body_text = ERASED
        message.body_html = None
        if message.status == MessageStatus.QUEUED.value:
            message.status = MessageStatus.FAILED.value
            message.last_error = "the recipient's data was erased"
    return len(messages)


PRIVACY = DomainPrivacy("marketing", export=_export, erase=_erase, collect=_collect)
