"""The notifier's outbox: delivery outcomes, retries with back-off, one delivery per message
with concurrent senders, the SMTP sender against a local SMTP server, the staff listing."""

from __future__ import annotations

import email
import socketserver
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import default as default_policy

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from mercato.db import Database
from mercato.events import Dispatcher
from mercato.marketing import events as marketing_events
from mercato.marketing import notifier
from mercato.marketing.models import Message
from mercato.marketing.notifier import (
    MessageChannel,
    NewMessage,
    OutgoingMessage,
    PermanentDeliveryError,
    SmtpConfig,
    SmtpNotifier,
)
from mercato.settings import Settings
from tests.conftest import assert_problem
from tests.helpers import outbox


def queue(db: Database, recipient: str, **fields: object) -> int:
    values: dict[str, object] = {
        "customer_id": 7,
        "channel": MessageChannel.EMAIL,
        "recipient": recipient,
        "template": "personal_offer",
        "locale": "ja",
        "subject": "お客様だけの特別オファー",
        "body_text": "コード: ABC123\n",
        "body_html": "<p>コード: <strong>ABC123</strong></p>",
        "purpose": "marketing_email",
    }
    values.update(fields)
    with db.transaction() as session:
        return notifier.queue_message(session, NewMessage(**values)).id  # type: ignore[arg-type]


@dataclass
class FakeNotifier:
    """Delivers to ok@..., bounces bounce@... for good, fails flaky@... for now."""

    sent: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, message: OutgoingMessage) -> str:
        if message.recipient.startswith("bounce@"):
            raise PermanentDeliveryError("mailbox unknown")
        if message.recipient.startswith("flaky@"):
            raise ConnectionError("connection reset")
        with self.lock:
            self.sent.append(message.id)
        return f"fake-{message.id}"


def state(db: Database, message_id: int) -> tuple[str, int, str | None, str | None]:
    with db.read() as session:
        row = notifier.get_message(session, message_id)
        assert row is not None
        return row.status, row.attempts, row.delivery_id, row.last_error


def release_backoff(db: Database) -> None:
    """Make retries due now (instead of waiting out the back-off)."""
    with db.transaction() as session:
        session.execute(update(Message).values(claimed_until=None))


def test_delivery_outcomes_and_retries(db: Database) -> None:
    ok, bounce, flaky = (queue(db, f"{who}@example.jp") for who in ("ok", "bounce", "flaky"))
    sms = queue(db, "+818012345678", channel=MessageChannel.SMS, body_html=None)
    fake = FakeNotifier()
    senders = {MessageChannel.EMAIL: fake}

    report = notifier.deliver_queued(db, senders)
    assert (report.sent, report.failed, report.retrying) == (1, 1, 1)
    assert state(db, ok) == ("sent", 1, f"fake-{ok}", None)
    assert state(db, bounce) == ("failed", 1, None, "mailbox unknown")
    assert state(db, flaky)[:2] == ("queued", 1)
    assert state(db, sms) == ("queued", 0, None, None)  # no SMS sender configured
    assert [e.data["message_id"] for e in outbox(db, "marketing.message_sent")] == [ok]
    assert [e.data["message_id"] for e in outbox(db, "marketing.message_failed")] == [bounce]

    # Backing off: an immediate second pass leaves the flaky message alone.
    assert notifier.deliver_queued(db, senders) == notifier.DeliveryReport()
    for attempt in range(2, notifier.MAX_ATTEMPTS + 1):
        release_backoff(db)
        notifier.deliver_queued(db, senders)
        assert state(db, flaky)[:2] == (
            "failed" if attempt == notifier.MAX_ATTEMPTS else "queued",
            attempt,
        )
    assert "connection reset" in (state(db, flaky)[3] or "")
    assert fake.sent == [ok]


def test_concurrent_senders_deliver_each_message_once(db: Database) -> None:
    ids = [queue(db, "ok@example.jp", customer_id=n) for n in range(30)]
    fake = FakeNotifier()

    def drain(_: int) -> int:
        sent = 0
        while True:
            report = notifier.deliver_queued(db, {MessageChannel.EMAIL: fake}, limit=4)
            if report == notifier.DeliveryReport():
                return sent
            sent += report.sent

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert sum(pool.map(drain, range(4))) == len(ids)
    assert sorted(fake.sent) == ids
    assert {state(db, i)[0] for i in ids} == {"sent"}


# --- SMTP -----------------------------------------------------------------------------------


class _SmtpHandler(socketserver.StreamRequestHandler):
    """Just enough SMTP for smtplib: EHLO, MAIL, RCPT (refuses refused@...), DATA, QUIT."""

    server: _SmtpServer

    def reply(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self) -> None:
        self.reply("220 localhost fake SMTP")
        while line := self.rfile.readline():
            verb = line[:4].upper()
            if verb == b"EHLO":
                self.reply("250-localhost")
                self.reply("250 8BITMIME")
            elif verb in (b"HELO", b"MAIL", b"RSET", b"NOOP"):
                self.reply("250 OK")
            elif verb == b"RCPT":
                self.reply("550 no such user" if b"refused@" in line else "250 OK")
            elif verb == b"DATA":
                self.reply("354 go ahead")
                self.server.received.append(self._data())
                self.reply("250 OK queued")
            elif verb == b"QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("502 not implemented")

    def _data(self) -> bytes:
        lines: list[bytes] = []
        while (line := self.rfile.readline()) != b".\r\n":
            lines.append(line[1:] if line.startswith(b"..") else line)
        return b"".join(lines)


class _SmtpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    received: list[bytes]


@pytest.fixture
def smtp_server() -> Iterator[_SmtpServer]:
    server = _SmtpServer(("127.0.0.1", 0), _SmtpHandler)
    server.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.slow
def test_smtp_sender_delivers_text_and_html(db: Database, smtp_server: _SmtpServer) -> None:
    host, port = smtp_server.server_address[:2]
    config = SmtpConfig(
        host=str(host), port=int(port), starttls=False, sender="Shop <offers@shop.example>"
    )
    good = queue(db, "aiko@example.jp")
    refused = queue(db, "refused@example.jp")

    report = notifier.deliver_queued(db, {MessageChannel.EMAIL: SmtpNotifier(config)})
    assert (report.sent, report.failed) == (1, 1)
    [raw] = smtp_server.received
    received = email.message_from_bytes(raw, policy=default_policy)
    assert isinstance(received, EmailMessage)
    assert received["Subject"] == "お客様だけの特別オファー"
    assert (received["To"], received["From"]) == ("aiko@example.jp", "Shop <offers@shop.example>")
    assert received["Content-Language"] == "ja"
    text = received.get_body(("plain",))
    html = received.get_body(("html",))
    assert text is not None and html is not None
    assert text.get_content().splitlines() == ["コード: ABC123"]
    assert "<strong>ABC123</strong>" in html.get_content()
    status, _, delivery_id, _ = state(db, good)
    assert status == "sent" and delivery_id == received["Message-ID"]
    assert str(delivery_id).endswith("@shop.example>")
    status, _, _, error = state(db, refused)
    assert status == "failed" and "recipient refused" in (error or "")


def test_senders_come_from_the_settings(db: Database) -> None:
    assert notifier.configured_notifiers(Settings(smtp_host=None)) == {}
    configured = notifier.configured_notifiers(Settings(smtp_host="mail.example", smtp_port=2525))
    sender = configured[MessageChannel.EMAIL]
    assert isinstance(sender, SmtpNotifier)
    assert (sender.config.host, sender.config.port) == ("mail.example", 2525)

    # Registered with the dispatcher, delivery runs as a periodic job.
    dispatcher = Dispatcher(db)
    fake = FakeNotifier()
    marketing_events.register(dispatcher, {MessageChannel.EMAIL: fake})
    message = queue(db, "ok@example.jp")
    dispatcher.run_periodic(force=True)
    assert fake.sent == [message] and state(db, message)[0] == "sent"
    # Without senders nothing is registered: messages wait in the outbox.
    idle = Dispatcher(db)
    marketing_events.register(idle, {})
    assert idle._periodic == []


@pytest.mark.slow
def test_staff_list_messages_personal_data_only_with_pii_permission(
    db: Database,
    client: TestClient,
    owner_headers: dict[str, str],
    make_staff: Callable[..., dict[str, str]],
) -> None:
    first = queue(db, "aiko@example.jp", customer_id=1)
    second = queue(db, "ben@example.jp", customer_id=2, reference_type="run", reference_id="9")
    notifier.deliver_queued(db, {MessageChannel.EMAIL: FakeNotifier()}, limit=1)

    listed = client.get("/v1/marketing/messages", headers=owner_headers)
    assert listed.status_code == 200, listed.text
    assert [m["id"] for m in listed.json()["items"]] == [second, first]
    queued = client.get("/v1/marketing/messages?status=queued", headers=owner_headers).json()
    assert [(m["id"], m["recipient"]) for m in queued["items"]] == [(second, "ben@example.jp")]
    mine = client.get("/v1/marketing/messages?customer_id=1", headers=owner_headers).json()
    assert [(m["id"], m["status"]) for m in mine["items"]] == [(first, "sent")]
    by_run = client.get(
        "/v1/marketing/messages?reference_type=run&reference_id=9", headers=owner_headers
    ).json()
    assert [m["id"] for m in by_run["items"]] == [second]
    paged = client.get("/v1/marketing/messages?limit=1", headers=owner_headers).json()
    rest = client.get(
        f"/v1/marketing/messages?limit=1&cursor={paged['next_cursor']}", headers=owner_headers
    ).json()
    assert [m["id"] for m in paged["items"] + rest["items"]] == [second, first]

    analyst = make_staff("analyst")
    seen = client.get(f"/v1/marketing/messages/{first}", headers=analyst)
    assert seen.status_code == 200, seen.text
    body = seen.json()
    assert (body["recipient"], body["body_text"], body["body_html"]) == (None, None, None)
    assert body["subject"] == "お客様だけの特別オファー"
    assert_problem(client.get("/v1/marketing/messages/999999", headers=owner_headers), 404)
    assert_problem(client.get("/v1/marketing/messages?status=lost", headers=owner_headers), 422)
    assert_problem(client.get("/v1/marketing/messages"), 401)
