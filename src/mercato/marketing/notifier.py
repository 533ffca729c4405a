"""The notifier: rendered messages wait in an outbox table, a sender delivers them.

Queueing a message is a row in the caller's transaction (it exists iff the business change
committed, like an outbox event). Delivery happens later, outside any request: a sender
claims a batch with one conditional UPDATE (a lease, so several processes can share the
outbox), calls the ``Notifier`` with no transaction open, then records the outcome. Delivery
is at least once: a process that dies between sending and recording sends again after the
lease.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import make_msgid, parseaddr
from enum import StrEnum
from typing import Protocol

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from mercato.db import Database, utcnow
from mercato.errors import ValidationProblem
from mercato.events import publish
from mercato.marketing.event_types import MessageFacts, MessageFailed, MessageSent
from mercato.marketing.models import Message
from mercato.pagination import Page, decode_cursor, page_of
from mercato.settings import Settings

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=2)
MAX_ATTEMPTS = 5
MAX_ERROR_LENGTH = 2000


class MessageChannel(StrEnum):
    EMAIL = "email"
    SMS = "sms"


class MessageStatus(StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"


@dataclass(frozen=True)
class OutgoingMessage:
    """What a notifier needs to deliver one message."""

    id: int
    channel: MessageChannel
    recipient: str
    locale: str
    subject: str
    body_text: str
    body_html: str | None


class Notifier(Protocol):
    """Delivers one message and answers the provider's delivery id.

    Raise ``PermanentDeliveryError`` when retrying cannot help (the address is refused);
    any other exception is retried with back-off.
    """

    def send(self, message: OutgoingMessage) -> str: ...


class PermanentDeliveryError(Exception):
    """The message can never be delivered as it is."""


@dataclass(frozen=True)
class NewMessage:
    customer_id: int | None
    channel: MessageChannel
    recipient: str
    template: str
    locale: str
    subject: str
    body_text: str
    body_html: str | None = None
    purpose: str | None = None
    reference_type: str | None = None
    reference_id: str | None = None
    order_id: int | None = None
    resent_from_id: int | None = None


def queue_message(session: Session, new: NewMessage) -> Message:
    """Add a rendered message to the outbox in the caller's transaction."""
    message = Message(
        customer_id=new.customer_id,
        channel=new.channel.value,
        recipient=new.recipient,
        purpose=new.purpose,
        template=new.template,
        locale=new.locale,
        subject=new.subject[:300],
        body_text=new.body_text,
        body_html=new.body_html,
        status=MessageStatus.QUEUED.value,
        attempts=0,
        reference_type=new.reference_type,
        reference_id=new.reference_id,
        order_id=new.order_id,
        resent_from_id=new.resent_from_id,
        created_at=utcnow(),
    )
    session.add(message)
    session.flush()
    return message


def cancel_queued(session: Session, customer_id: int, purpose: str, reason: str) -> int:
    """Fail the customer's queued messages of a purpose (consent withdrawn before sending)."""
    done = session.execute(
        update(Message)
        .where(
            Message.customer_id == customer_id,
            Message.purpose == purpose,
            Message.status == MessageStatus.QUEUED.value,
        )
        .values(status=MessageStatus.FAILED.value, last_error=reason, claimed_until=None),
        execution_options={"synchronize_session": False},
    )
    return int(getattr(done, "rowcount", 0) or 0)


def get_message(session: Session, message_id: int) -> Message | None:
    return session.get(Message, message_id)


def list_messages(
    session: Session,
    *,
    customer_id: int | None = None,
    status: MessageStatus | None = None,
    reference_type: str | None = None,
    reference_id: str | None = None,
    order_id: int | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[Message]:
    query = select(Message).order_by(Message.id.desc())
    if customer_id is not None:
        query = query.where(Message.customer_id == customer_id)
    if status is not None:
        query = query.where(Message.status == status.value)
    if reference_type is not None:
        query = query.where(Message.reference_type == reference_type)
    if reference_id is not None:
        query = query.where(Message.reference_id == reference_id)
    if order_id is not None:
        query = query.where(Message.order_id == order_id)
    after = decode_cursor(cursor)
    if after is not None:
        if not isinstance(after, int) or isinstance(after, bool):
            raise ValidationProblem.field("query.cursor", "not a cursor returned by this API")
        query = query.where(Message.id < after)
    return page_of(list(session.scalars(query.limit(limit + 1))), limit, key=lambda m: m.id)


# --- delivery -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryReport:
    sent: int = 0
    failed: int = 0
    retrying: int = 0


def _claim(
    database: Database, channels: list[str], limit: int, now: datetime
) -> list[OutgoingMessage]:
    free = or_(Message.claimed_until.is_(None), Message.claimed_until < now)
    with database.transaction() as session:
        candidates = session.scalars(
            select(Message.id)
            .where(Message.status == MessageStatus.QUEUED.value, Message.channel.in_(channels))
            .where(free)
            .order_by(Message.id)
            .limit(limit)
        ).all()
        if not candidates:
            return []
        # The conditional UPDATE is the claim: a competing sender gets 0 rows for these ids.
        rows = session.execute(
            update(Message)
            .where(Message.id.in_(candidates), Message.status == MessageStatus.QUEUED.value, free)
            .values(claimed_until=now + LEASE)
            .returning(
                Message.id,
                Message.channel,
                Message.recipient,
                Message.locale,
                Message.subject,
                Message.body_text,
                Message.body_html,
            )
        ).all()
    claimed = [
        OutgoingMessage(id_, MessageChannel(ch), rcpt, loc, subj, text, html)
        for id_, ch, rcpt, loc, subj, text, html in rows
    ]
    return sorted(claimed, key=lambda m: m.id)


def _event(session: Session, message_id: int, kind: type[MessageFacts]) -> None:
    row = session.get(Message, message_id)
    if row is None:
        return
    publish(
        session,
        kind(
            message_id=row.id,
            customer_id=row.customer_id,
            channel=row.channel,
            template=row.template,
            status=row.status,
            reference_type=row.reference_type,
            reference_id=row.reference_id,
        ),
    )


def _record_sent(database: Database, message_id: int, delivery_id: str) -> None:
    with database.transaction() as session:
        session.execute(
            update(Message)
            .where(Message.id == message_id)
            .values(
                status=MessageStatus.SENT.value,
                delivery_id=delivery_id[:300],
                sent_at=utcnow(),
                claimed_until=None,
                attempts=Message.attempts + 1,
            )
        )
        _event(session, message_id, MessageSent)


def _record_failure(database: Database, message_id: int, error: str, permanent: bool) -> bool:
    """True when the message is given up (failed), False when it will be retried."""
    with database.transaction() as session:
        row = session.get(Message, message_id, populate_existing=True)
        if row is None:
            return True
        give_up = permanent or row.attempts + 1 >= MAX_ATTEMPTS
        # Back off: the next claim waits longer after each failed attempt.
        retry_at = utcnow() + timedelta(seconds=30 * 2**row.attempts)
        session.execute(
            update(Message)
            .where(Message.id == message_id)
            .values(
                attempts=Message.attempts + 1,
                last_error=error[:MAX_ERROR_LENGTH],
                status=MessageStatus.FAILED.value if give_up else MessageStatus.QUEUED.value,
                claimed_until=None if give_up else retry_at,
            )
        )
        if give_up:
            _event(session, message_id, MessageFailed)
        return give_up


def deliver_queued(
    database: Database, notifiers: Mapping[MessageChannel, Notifier], *, limit: int = 50
) -> DeliveryReport:
    """Send one batch of queued messages for the channels that have a notifier."""
    if not notifiers:
        return DeliveryReport()
    claimed = _claim(database, [c.value for c in notifiers], limit, utcnow())
    sent = failed = retrying = 0
    for message in claimed:
        notifier = notifiers[message.channel]
        try:
            delivery_id = notifier.send(message)
        except PermanentDeliveryError as exc:
            _record_failure(database, message.id, str(exc) or repr(exc), permanent=True)
            failed += 1
        except Exception as exc:  # a provider hiccup must not stop the rest of the batch
            log.warning("message %s not delivered: %r", message.id, exc)
            if _record_failure(database, message.id, repr(exc), permanent=False):
                failed += 1
            else:
                retrying += 1
        else:
            _record_sent(database, message.id, delivery_id)
            sent += 1
    return DeliveryReport(sent, failed, retrying)


# --- SMTP -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int = 587
    username: str | None = None
    password: str | None = None
    sender: str = "Mercato <no-reply@mercato.example>"
    starttls: bool = True
    use_ssl: bool = False
    timeout_seconds: float = 10.0

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpConfig | None:
        if not settings.smtp_host:
            return None
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username,
            password=settings.smtp_password,
            sender=settings.smtp_sender,
            starttls=settings.smtp_starttls,
            use_ssl=settings.smtp_ssl,
            timeout_seconds=settings.smtp_timeout_seconds,
        )


class SmtpNotifier:
    """Sends email messages through an SMTP server (one connection per message)."""

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config

    def build(self, message: OutgoingMessage) -> EmailMessage:
        email = EmailMessage()
        email["From"] = self.config.sender
        email["To"] = message.recipient
        email["Subject"] = message.subject
        domain = parseaddr(self.config.sender)[1].rpartition("@")[2] or None
        email["Message-ID"] = make_msgid(f"mercato.{message.id}", domain=domain)
        email.set_content(message.body_text)
        if message.body_html:
            email.add_alternative(message.body_html, subtype="html")
        # After the content: setting content clears the Content-* headers.
        email["Content-Language"] = message.locale
        return email

    def _connect(self) -> smtplib.SMTP:
        cfg = self.config
        if cfg.use_ssl:
            return smtplib.SMTP_SSL(
                cfg.host,
                cfg.port,
                timeout=cfg.timeout_seconds,
                context=ssl.create_default_context(),
            )
        smtp = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout_seconds)
        if cfg.starttls:
            smtp.starttls(context=ssl.create_default_context())
        return smtp

    def send(self, message: OutgoingMessage) -> str:
        if message.channel is not MessageChannel.EMAIL:
            raise PermanentDeliveryError(f"SMTP cannot send {message.channel} messages")
        email = self.build(message)
        with self._connect() as smtp:
            if self.config.username:
                smtp.login(self.config.username, self.config.password or "")
            try:
                smtp.send_message(email)
            except smtplib.SMTPRecipientsRefused as exc:
                raise PermanentDeliveryError(f"recipient refused: {exc.recipients}") from exc
            except smtplib.SMTPResponseException as exc:
                if 500 <= exc.smtp_code < 600:
                    raise PermanentDeliveryError(f"{exc.smtp_code} {exc.smtp_error!r}") from exc
                raise
        return str(email["Message-ID"])


def configured_notifiers(settings: Settings) -> dict[MessageChannel, Notifier]:
    """The senders the settings configure; none means messages stay queued in the outbox."""
    found: dict[MessageChannel, Notifier] = {}
    smtp = SmtpConfig.from_settings(settings)
    if smtp is not None:
        found[MessageChannel.EMAIL] = SmtpNotifier(smtp)
    return found
