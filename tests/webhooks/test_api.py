"""The staff API: subscriptions, secrets, deliveries, dead letters, re-sends, permissions."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from mercato.auth.permissions import LOCATION_SCOPED_ROLES, ROLE_PERMISSIONS, Permission, Role
from mercato.db import Database
from mercato.webhooks.models import WebhookSubscription
from mercato.webhooks.worker import WebhookWorker
from tests.conftest import assert_problem
from tests.helpers import audit_entries, count, created, drain, fast_password_hashing, ok
from tests.webhooks.conftest import Clock, deliveries, emit
from tests.webhooks.receiver import Receiver, check_signature

pytestmark = pytest.mark.slow

Headers = dict[str, str]
BASE = "/v1/webhooks"


@pytest.fixture(autouse=True)
def _cheap_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_password_hashing(monkeypatch)


def make_subscription(
    client: TestClient, headers: Headers, url: str, event_types: list[str] | None = None
) -> dict[str, Any]:
    return created(
        client.post(
            f"{BASE}/subscriptions",
            json={"url": url, "event_types": event_types or ["*"], "description": "ERP"},
            headers=headers,
        )
    )


def test_secret_is_shown_once_and_stored_sealed(
    client: TestClient, owner_headers: Headers, db: Database, receiver: Receiver
) -> None:
    sub = make_subscription(client, owner_headers, receiver.url, ["order.*", "stock.low"])
    secret = sub["secret"]
    assert secret.startswith("whsec_") and len(secret) > 40
    assert sub["secret_hint"] == f"whsec_...{secret[-4:]}"
    assert sub["event_types"] == ["order.*", "stock.low"] and sub["active"] is True

    fetched = ok(client.get(f"{BASE}/subscriptions/{sub['id']}", headers=owner_headers))
    assert "secret" not in fetched and fetched["secret_hint"] == sub["secret_hint"]
    listed = ok(client.get(f"{BASE}/subscriptions", headers=owner_headers))
    assert [x["id"] for x in listed["items"]] == [sub["id"]] and "secret" not in listed["items"][0]

    with db.read() as session:
        row = session.scalars(select(WebhookSubscription)).one()
        assert secret not in row.secret_sealed and secret[6:] not in row.secret_sealed
    [entry] = audit_entries(db, "webhook_subscription.created")
    assert secret not in json.dumps(entry.changes) and entry.changes["url"] == receiver.url


BAD_URLS = [
    ("ftp://example.com/hooks", "http"),
    ("javascript:alert(1)", "http"),
    ("example.com/hooks", "http"),
    ("//example.com/hooks", "http"),
    ("http://user:pass@example.com/hooks", "credentials"),
    ("https://token@example.com/hooks", "credentials"),
    ("http:///hooks", "host"),
    ("https://example.com:99999/hooks", "port"),
    ("https://example.com/a b", "spaces"),
    ("https://example.com/hooks#frag", "fragment"),
    ("", "characters"),
]

BAD_EVENT_TYPES = [
    (["order.placed", "Order.Placed"], "body.event_types[1]"),
    (["order.*.placed"], "body.event_types[0]"),
    (["order..placed"], "body.event_types[0]"),
    (["**"], "body.event_types[0]"),
    ([], "body.event_types"),
]


def test_bad_input_is_422_naming_the_field_and_creates_nothing(
    client: TestClient, owner_headers: Headers, db: Database
) -> None:
    path = f"{BASE}/subscriptions"
    for url, reason in BAD_URLS:
        response = client.post(path, json={"url": url, "event_types": ["*"]}, headers=owner_headers)
        problem = assert_problem(response, 422, "validation-error")
        [error] = problem["errors"]
        assert error["field"] == "body.url" and reason in error["reason"], (url, error)
    for event_types, field in BAD_EVENT_TYPES:
        body = {"url": "https://erp.example.com/hooks", "event_types": event_types}
        problem = assert_problem(client.post(path, json=body, headers=owner_headers), 422)
        assert field in [e["field"] for e in problem["errors"]], (event_types, problem)
    body = {"url": "https://erp.example.com/h", "event_types": ["*"], "secret": "mine"}
    problem = assert_problem(client.post(path, json=body, headers=owner_headers), 422)
    assert problem["errors"][0]["field"] == "body.secret"
    assert count(db, WebhookSubscription) == 0
    assert audit_entries(db, "webhook_subscription.created") == []


def test_update_and_delete_are_audited(
    client: TestClient, owner_headers: Headers, db: Database, receiver: Receiver
) -> None:
    sub = make_subscription(client, owner_headers, receiver.url)
    path = f"{BASE}/subscriptions/{sub['id']}"
    changed = ok(
        client.patch(
            path,
            json={"event_types": ["payment.*"], "active": False, "description": None},
            headers=owner_headers,
        )
    )
    assert (changed["event_types"], changed["active"], changed["description"]) == (
        ["payment.*"],
        False,
        None,
    )
    [entry] = audit_entries(db, "webhook_subscription.updated")
    assert entry.changes["active"] == {"from": True, "to": False}
    bad = client.patch(path, json={"url": "ftp://x.example.com"}, headers=owner_headers)
    assert assert_problem(bad, 422)["errors"][0]["field"] == "body.url"
    null = client.patch(path, json={"url": None}, headers=owner_headers)
    assert assert_problem(null, 422)["errors"][0]["field"] == "body.url"
    assert ok(client.get(path, headers=owner_headers))["url"] == receiver.url

    assert client.delete(path, headers=owner_headers).status_code == 204
    assert_problem(client.get(path, headers=owner_headers), 404, "not-found")
    assert len(audit_entries(db, "webhook_subscription.deleted")) == 1


def test_delivery_listing_dead_letters_and_idempotent_resend(
    client: TestClient,
    owner_headers: Headers,
    app: Any,
    db: Database,
    worker: WebhookWorker,
    receiver: Receiver,
    clock: Clock,
) -> None:
    # Event types no domain reacts to: only the webhook fan-out handles them.
    sub = make_subscription(client, owner_headers, receiver.url, ["sample.*"])
    emit(db, ("sample.created", {"sample_id": 1}), ("sample.updated", {"sample_id": 1}))
    drain(app)
    receiver.fail_next(100)
    for _ in range(4):  # max_attempts in the test config
        worker.run_once()
        clock.advance(100)

    page = ok(
        client.get(f"{BASE}/subscriptions/{sub['id']}/deliveries?limit=1", headers=owner_headers)
    )
    assert len(page["items"]) == 1 and page["next_cursor"]
    rest = ok(
        client.get(
            f"{BASE}/subscriptions/{sub['id']}/deliveries",
            params={"cursor": page["next_cursor"]},
            headers=owner_headers,
        )
    )
    listed = page["items"] + rest["items"]
    assert [d["event_type"] for d in listed] == ["sample.updated", "sample.created"]
    for item in listed:
        assert (item["status"], item["attempts"], item["last_status_code"]) == ("dead", 4, 500)
        assert item["last_error"].startswith("HTTP 500") and item["next_attempt_at"] is None
    dead = ok(client.get(f"{BASE}/dead-letters", headers=owner_headers))["items"]
    assert {d["id"] for d in dead} == {d["id"] for d in listed}
    detail = ok(client.get(f"{BASE}/deliveries/{dead[0]['id']}", headers=owner_headers))
    assert [h["status_code"] for h in detail["history"]] == [500] * 4
    assert detail["payload"]["id"] == detail["event_id"]

    receiver.fail_next(0)
    one = dead[0]["id"]
    key = {**owner_headers, "Idempotency-Key": "resend-1"}
    first = client.post(f"{BASE}/deliveries/{one}/resend", headers=key)
    assert first.status_code == 200, first.text
    assert (first.json()["status"], first.json()["attempts"]) == ("pending", 0)
    worker.run_once()
    again = client.post(f"{BASE}/deliveries/{one}/resend", headers=key)
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert worker.run_once() == 0  # the replay queued nothing
    other = client.post(f"{BASE}/deliveries/{dead[1]['id']}/resend", headers=key)
    assert_problem(other, 422, "idempotency-key-reused")

    everything = client.post(
        f"{BASE}/subscriptions/{sub['id']}/dead-letters/resend",
        headers={**owner_headers, "Idempotency-Key": "all-dead"},
    )
    assert ok(everything) == {"resent": 1, "delivery_ids": [dead[1]["id"]]}
    worker.run_once()
    assert {d.status for d in deliveries(db)} == {"delivered"}
    assert [r.event_id for r in receiver.succeeded()] == [dead[0]["event_id"], dead[1]["event_id"]]
    replay = client.post(
        f"{BASE}/subscriptions/{sub['id']}/dead-letters/resend",
        headers={**owner_headers, "Idempotency-Key": "all-dead"},
    )
    assert ok(replay) == {"resent": 1, "delivery_ids": [dead[1]["id"]]}
    assert worker.run_once() == 0
    assert len(audit_entries(db, "webhook_delivery.resent")) == 1
    assert len(audit_entries(db, "webhook_subscription.dead_letters_resent")) == 1

    bad_status = client.get(
        f"{BASE}/subscriptions/{sub['id']}/deliveries?status=lost", headers=owner_headers
    )
    assert_problem(bad_status, 422)
    assert_problem(client.post(f"{BASE}/deliveries/999999/resend", headers=owner_headers), 404)


def test_test_event_goes_to_that_subscription_only(
    client: TestClient,
    owner_headers: Headers,
    db: Database,
    worker: WebhookWorker,
    receiver: Receiver,
) -> None:
    target = make_subscription(client, owner_headers, receiver.url, ["order.placed"])
    make_subscription(client, owner_headers, receiver.url, ["*"])
    headers = {**owner_headers, "Idempotency-Key": "ping"}
    response = client.post(f"{BASE}/subscriptions/{target['id']}/test", headers=headers)
    assert response.status_code == 202, response.text
    assert response.json()["event_type"] == "webhook.test"
    replay = client.post(f"{BASE}/subscriptions/{target['id']}/test", headers=headers)
    assert replay.json()["id"] == response.json()["id"]
    assert len(deliveries(db)) == 1
    assert worker.drain() == 1
    [received] = receiver.requests
    assert check_signature(target["secret"], received)
    envelope = json.loads(received.body)
    assert envelope["type"] == "webhook.test"
    assert envelope["data"]["subscription_id"] == target["id"]

    client.patch(
        f"{BASE}/subscriptions/{target['id']}", json={"active": False}, headers=owner_headers
    )
    paused = client.post(f"{BASE}/subscriptions/{target['id']}/test", headers=owner_headers)
    assert_problem(paused, 409, "webhook-subscription-inactive")


def test_rotated_secret_signs_alongside_the_old_one_for_a_while(
    client: TestClient,
    owner_headers: Headers,
    db: Database,
    worker: WebhookWorker,
    receiver: Receiver,
) -> None:
    sub = make_subscription(client, owner_headers, receiver.url)
    rotated = ok(
        client.post(
            f"{BASE}/subscriptions/{sub['id']}/secret",
            json={"keep_previous_hours": 1},
            headers=owner_headers,
        )
    )
    assert rotated["secret"] != sub["secret"] and rotated["previous_secret_expires_at"]
    client.post(f"{BASE}/subscriptions/{sub['id']}/test", headers=owner_headers)
    worker.drain()
    assert check_signature(rotated["secret"], receiver.requests[0])
    assert check_signature(sub["secret"], receiver.requests[0])

    now_only = ok(
        client.post(
            f"{BASE}/subscriptions/{sub['id']}/secret",
            json={"keep_previous_hours": 0},
            headers=owner_headers,
        )
    )
    client.post(f"{BASE}/subscriptions/{sub['id']}/test", headers=owner_headers)
    worker.drain()
    assert check_signature(now_only["secret"], receiver.requests[1])
    assert not check_signature(rotated["secret"], receiver.requests[1])
    assert len(audit_entries(db, "webhook_subscription.secret_rotated")) == 2


def test_without_a_token_is_401(client: TestClient) -> None:
    assert_problem(client.get(f"{BASE}/subscriptions"), 401)
    body = {"url": "https://erp.example.com/h", "event_types": ["*"]}
    assert_problem(client.post(f"{BASE}/subscriptions", json=body), 401)


def test_permissions_of_every_role(
    client: TestClient,
    owner_headers: Headers,
    make_staff: Callable[..., Headers],
    db: Database,
    receiver: Receiver,
) -> None:
    """Reading needs events:read, changing needs webhooks:write; denied calls change nothing."""
    store = _location(client, owner_headers)
    for role in Role:
        headers = make_staff(role, store if role in LOCATION_SCOPED_ROLES else [])
        _check_role(client, owner_headers, headers, db, receiver, role)


def _check_role(
    client: TestClient,
    owner_headers: Headers,
    headers: Headers,
    db: Database,
    receiver: Receiver,
    role: Role,
) -> None:
    sub = make_subscription(client, owner_headers, receiver.url)
    test = client.post(f"{BASE}/subscriptions/{sub['id']}/test", headers=owner_headers)
    sid, did = sub["id"], test.json()["id"]
    calls: list[tuple[Permission, str, str, dict[str, Any] | None]] = [
        (Permission.EVENTS_READ, "GET", f"{BASE}/subscriptions", None),
        (Permission.EVENTS_READ, "GET", f"{BASE}/subscriptions/{sid}", None),
        (Permission.EVENTS_READ, "GET", f"{BASE}/subscriptions/{sid}/deliveries", None),
        (Permission.EVENTS_READ, "GET", f"{BASE}/dead-letters", None),
        (Permission.EVENTS_READ, "GET", f"{BASE}/deliveries/{did}", None),
        (
            Permission.WEBHOOKS_WRITE,
            "POST",
            f"{BASE}/subscriptions",
            {"url": receiver.url, "event_types": ["*"]},
        ),
        (Permission.WEBHOOKS_WRITE, "PATCH", f"{BASE}/subscriptions/{sid}", {"description": role}),
        (Permission.WEBHOOKS_WRITE, "POST", f"{BASE}/subscriptions/{sid}/secret", {}),
        (Permission.WEBHOOKS_WRITE, "POST", f"{BASE}/subscriptions/{sid}/test", None),
        (Permission.WEBHOOKS_WRITE, "POST", f"{BASE}/deliveries/{did}/resend", None),
        (
            Permission.WEBHOOKS_WRITE,
            "POST",
            f"{BASE}/subscriptions/{sid}/dead-letters/resend",
            None,
        ),
        (Permission.WEBHOOKS_WRITE, "DELETE", f"{BASE}/subscriptions/{sid}", None),
    ]
    granted = ROLE_PERMISSIONS[role]
    before = (count(db, WebhookSubscription), len(deliveries(db)))
    for permission, method, path, body in calls:
        response = client.request(method, path, json=body, headers=headers)
        if permission in granted:
            assert 200 <= response.status_code < 300, (role, method, path, response.text)
        else:
            problem = assert_problem(response, 403, "forbidden")
            assert problem["permission"] == permission.value, (role, path)
    if Permission.WEBHOOKS_WRITE not in granted:
        assert (count(db, WebhookSubscription), len(deliveries(db))) == before


def _location(client: TestClient, headers: Headers) -> list[int]:
    from tests.helpers import make_location

    return [int(make_location(client, headers, "STORE-1")["id"])]
