"""Webhooks never call the machine itself, its private networks or a metadata service:
refused when the subscription is saved (address literals, local names) and again when each
delivery resolves the name, on the addresses it connects to (DNS rebinding included).
``MERCATO_WEBHOOKS_ALLOW_PRIVATE_TARGETS`` allows them for local development."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from mercato.db import Database
from mercato.events import Dispatcher
from mercato.webhooks.config import WebhookConfig
from mercato.webhooks.models import WebhookSubscription
from mercato.webhooks.targets import GuardedTransport, proxy_mounts, refusal
from mercato.webhooks.worker import ERROR_CHARS, WebhookWorker
from tests.conftest import assert_problem
from tests.helpers import count, created, ok
from tests.webhooks.conftest import Clock, attempts, deliveries, emit, subscribe
from tests.webhooks.receiver import Receiver

Headers = dict[str, str]
PATH = "/v1/webhooks/subscriptions"
SETTING = "MERCATO_WEBHOOKS_ALLOW_PRIVATE_TARGETS"

INTERNAL_URLS = [
    "http://127.0.0.1:8080/hooks",
    "http://127.1.2.3/hooks",
    "http://localhost:8000/hooks",
    "http://api.localhost/hooks",
    "http://[::1]/hooks",
    "http://0.0.0.0/hooks",
    "http://10.1.2.3/hooks",
    "http://172.16.5.4/hooks",
    "http://192.168.0.10/hooks",
    "http://100.64.1.1/hooks",
    "http://169.254.169.254/latest/meta-data/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://100.100.100.200/latest/meta-data/",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://[fe80::1]/hooks",
    "http://[::ffff:127.0.0.1]/hooks",
    "http://2130706433/hooks",  # 127.0.0.1 written as one number
    "http://0x7f.1/hooks",
]


def test_address_rules() -> None:
    refused = {
        "127.0.0.1": "loopback",
        "10.0.0.1": "private",
        "192.168.1.1": "private",
        "169.254.169.254": "metadata",
        "192.0.0.192": "metadata",
        "fe80::1": "link-local",
        "fd12::1": "private",
        "::ffff:10.0.0.1": "private",
        "64:ff9b::7f00:1": "loopback",  # NAT64 of 127.0.0.1
        "2002:7f00:1::": "loopback",  # 6to4 of 127.0.0.1
        "224.0.0.1": "multicast",
        "100.64.0.1": "reserved",
    }
    for address, kind in refused.items():
        reason = refusal(ipaddress.ip_address(address))
        assert reason is not None and kind in reason, (address, reason)
    for public in ("93.184.215.14", "8.8.8.8", "2606:4700::1111"):
        assert refusal(ipaddress.ip_address(public)) is None


@pytest.mark.slow
def test_subscriptions_to_internal_addresses_are_422_unless_allowed(
    client: TestClient, owner_headers: Headers, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SETTING, "false")
    for url in INTERNAL_URLS:
        response = client.post(
            PATH, json={"url": url, "event_types": ["*"]}, headers=owner_headers
        )
        [error] = assert_problem(response, 422, "validation-error")["errors"]
        assert error["field"] == "body.url", url
        assert "public address" in error["reason"] and SETTING in error["reason"], url
    assert count(db, WebhookSubscription) == 0

    # A public name is accepted (it is checked when resolved, at each delivery); moving it
    # to an internal address is refused and changes nothing.
    public = created(
        client.post(
            PATH,
            json={"url": "https://erp.example.com/hooks", "event_types": ["*"]},
            headers=owner_headers,
        )
    )
    moved = client.patch(
        f"{PATH}/{public['id']}",
        json={"url": "http://169.254.169.254/latest/meta-data/"},
        headers=owner_headers,
    )
    assert assert_problem(moved, 422)["errors"][0]["field"] == "body.url"
    got = ok(client.get(f"{PATH}/{public['id']}", headers=owner_headers))
    assert got["url"] == "https://erp.example.com/hooks"

    monkeypatch.setenv(SETTING, "true")  # local development
    local = created(
        client.post(
            PATH,
            json={"url": "http://127.0.0.1:8080/hooks", "event_types": ["*"]},
            headers=owner_headers,
        )
    )
    assert local["url"] == "http://127.0.0.1:8080/hooks"


@pytest.fixture
def db(webhook_db: Database) -> Database:
    """Only the outbox and webhook tables are reset (see conftest.webhook_db)."""
    return webhook_db


def _guarded(db: Database, clock: Clock) -> WebhookWorker:
    # The default: what production runs with.
    return WebhookWorker(
        db, WebhookConfig(allow_private_targets=False, timeout_seconds=1), clock=clock
    )


def _assert_refused(db: Database, receiver: Receiver, mentions: str) -> None:
    assert receiver.requests == []
    [row] = deliveries(db)
    assert row.status == "pending" and row.last_status_code is None
    assert row.last_error is not None and row.last_error.startswith("refused: ")
    assert mentions in row.last_error and len(row.last_error) <= ERROR_CHARS
    assert [(a.succeeded, a.error) for a in attempts(db)] == [(False, row.last_error)]


def test_delivery_to_a_loopback_receiver_is_refused_by_default_and_sent_when_allowed(
    db: Database, dispatcher: Dispatcher, receiver: Receiver, clock: Clock
) -> None:
    subscribe(db, receiver.url, ["*"])  # saved while allowed, e.g. on a developer's machine
    emit(db, ("order.placed", {"order_id": 1}))
    dispatcher.drain()

    assert _guarded(db, clock).run_once() == 1
    _assert_refused(db, receiver, "127.0.0.1, a loopback address")

    clock.advance(3600)
    allowed = WebhookWorker(db, WebhookConfig(allow_private_targets=True), clock=clock)
    assert allowed.run_once() == 1
    assert len(receiver.succeeded()) == 1
    assert deliveries(db)[0].status == "delivered"


Resolver = Callable[..., list[tuple[Any, ...]]]


def _resolving(
    monkeypatch: pytest.MonkeyPatch, name: str, answers: list[str]
) -> list[str]:
    """Make ``name`` resolve to each of ``answers`` in turn (the last one from then on), as
    a DNS server with a zero TTL would; returns the log of lookups."""
    real: Resolver = socket.getaddrinfo
    asked: list[str] = []

    def fake(host: Any, port: Any, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        if host != name:
            return real(host, port, *args, **kwargs)
        address = answers[min(len(asked), len(answers) - 1)]
        asked.append(address)
        return real(address, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return asked


def test_a_name_resolving_to_a_private_address_at_delivery_is_refused(
    db: Database,
    dispatcher: Dispatcher,
    receiver: Receiver,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = receiver.url.split(":")[2].split("/")[0]
    subscribe(db, f"http://hooks.partner.example:{port}/hooks/mercato", ["*"])
    emit(db, ("order.placed", {"order_id": 1}))
    dispatcher.drain()
    _resolving(monkeypatch, "hooks.partner.example", ["127.0.0.1"])
    assert _guarded(db, clock).run_once() == 1
    _assert_refused(db, receiver, "hooks.partner.example resolves to 127.0.0.1")


def test_dns_rebinding_between_the_check_and_the_connection_is_refused(
    db: Database,
    dispatcher: Dispatcher,
    receiver: Receiver,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The name answers a public address first, then the receiver's loopback address: the
    connection is made only to addresses checked by the lookup that found them."""
    port = receiver.url.split(":")[2].split("/")[0]
    subscribe(db, f"http://rebind.partner.example:{port}/hooks/mercato", ["*"])
    emit(db, ("order.placed", {"order_id": 1}))
    dispatcher.drain()
    asked = _resolving(monkeypatch, "rebind.partner.example", ["93.184.215.14", "127.0.0.1"])
    assert _guarded(db, clock).run_once() == 1
    assert asked[0] == "93.184.215.14" and len(asked) >= 2
    _assert_refused(db, receiver, "rebind.partner.example resolves to 127.0.0.1")


def test_an_outgoing_proxy_is_still_used_and_no_proxy_hosts_go_direct_through_the_guard(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp.example:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,::1,10.0.0.0/8,.partner.example")
    guarded = GuardedTransport()
    with httpx.Client(transport=guarded, mounts=proxy_mounts()) as client:
        def transport(url: str) -> httpx.BaseTransport:
            return client._transport_for_url(httpx.URL(url))

        assert transport("https://erp.example.com/hooks") is not guarded
        assert transport("https://hooks.partner.example/in") is guarded
        assert transport("http://plain.example.com/hooks") is guarded  # no HTTP_PROXY
