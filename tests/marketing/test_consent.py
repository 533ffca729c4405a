"""Consent per purpose and channel: append-only history, derived current state, shopper and
staff endpoints, and bad input that changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from mercato.auth.models import AuditEntry
from mercato.db import Database
from mercato.marketing import notifier, service
from mercato.marketing.models import ConsentRecord
from mercato.marketing.service import ConsentChange, ConsentSource, Purpose
from tests.conftest import assert_problem
from tests.helpers import outbox
from tests.marketing.conftest import ACTOR, Shop, shopper_headers

EMAIL = Purpose.MARKETING_EMAIL


def change(db: Database, customer_id: int, *changes: ConsentChange, channel: int) -> int:
    with db.transaction() as session:
        written = service.record_consents(
            session,
            ACTOR,
            customer_id,
            changes,
            source=ConsentSource.CHANNEL,
            source_channel_id=channel,
        )
        return len(written)


def records(db: Database) -> int:
    with db.read() as session:
        return int(session.scalar(select(func.count()).select_from(ConsentRecord)) or 0)


def test_history_is_kept_and_the_latest_decision_counts(
    db: Database, shop: Shop, new_customer: Callable[..., int]
) -> None:
    customer = new_customer()
    with db.read() as session:
        assert not service.has_consent(session, customer, EMAIL)  # never asked means no
        with pytest.raises(ValueError, match="unknown purpose"):
            service.has_consent(session, customer, "newsletter")

    change(db, customer, ConsentChange(EMAIL, True, "v1"), channel=shop.web)
    # Withdrawn for the store channel only: the all-channel consent stays.
    change(db, customer, ConsentChange(EMAIL, False, "v1", shop.store), channel=shop.store)
    with db.read() as session:
        assert service.has_consent(session, customer, EMAIL)
        assert service.has_consent(session, customer, EMAIL, channel_id=shop.web)
        assert not service.has_consent(session, customer, EMAIL, channel_id=shop.store)
        assert not service.has_consent(session, customer, Purpose.ANALYTICS)
        assert service.consenting_customers(session, [customer], "marketing_email") == {customer}

    # Withdrawn everywhere, later granted again for the store only.
    change(db, customer, ConsentChange(EMAIL, False, "v2"), channel=shop.web)
    change(db, customer, ConsentChange(EMAIL, True, "v2", shop.store), channel=shop.store)
    with db.read() as session:
        assert not service.has_consent(session, customer, EMAIL)
        assert not service.has_consent(session, customer, EMAIL, channel_id=shop.web)
        assert service.has_consent(session, customer, EMAIL, channel_id=shop.store)
        history = service.consent_history(session, customer, limit=10).items
        assert [(r.channel_id, r.granted, r.wording_version) for r in history] == [
            (shop.store, True, "v2"),
            (None, False, "v2"),
            (shop.store, False, "v1"),
            (None, True, "v1"),
        ]
        assert all(r.source == "channel" for r in history)
        states = service.current_consents(session, customer)
    assert [(s.purpose, s.channel_id, s.granted) for s in states] == [
        (EMAIL, None, False),
        (EMAIL, shop.store, True),
        (Purpose.MARKETING_SMS, None, False),
        (Purpose.MARKETING_PUSH, None, False),
        (Purpose.PERSONALISATION, None, False),
        (Purpose.ANALYTICS, None, False),
    ]
    events = outbox(db, "consent.changed")
    assert [(e.data["granted"], e.data["previous_granted"]) for e in events] == [
        (True, None),
        (False, None),
        (False, True),
        (True, False),
    ]


def test_repeating_the_current_decision_writes_nothing(
    db: Database, shop: Shop, new_customer: Callable[..., int]
) -> None:
    customer = new_customer()
    assert change(db, customer, ConsentChange(EMAIL, True, "v1"), channel=shop.web) == 1
    assert change(db, customer, ConsentChange(EMAIL, True, "v1"), channel=shop.web) == 0
    # The same answer to a new wording is a new decision worth keeping.
    assert change(db, customer, ConsentChange(EMAIL, True, "v2"), channel=shop.web) == 1
    assert records(db) == 2
    assert len(outbox(db, "consent.changed")) == 2


@pytest.mark.slow
def test_shopper_lists_and_changes_own_consents(
    db: Database, client: TestClient, shop: Shop, new_customer: Callable[..., int]
) -> None:
    customer = new_customer()
    headers = shopper_headers(client, shop.web_key, shop.emails[customer])
    assert_problem(client.get("/v1/store/consents", headers=shop.web_key), 401)

    before = client.get("/v1/store/consents", headers=headers)
    assert before.status_code == 200, before.text
    assert before.json()["customer_id"] == customer
    assert {(c["purpose"], c["granted"], c["recorded_at"]) for c in before.json()["consents"]} == {
        (p.value, False, None) for p in Purpose
    }

    body = {
        "changes": [
            {"purpose": "marketing_email", "granted": True, "wording_version": "2025-01"},
            {"purpose": "analytics", "granted": False, "wording_version": "2025-01"},
        ]
    }
    after = client.post("/v1/store/consents", headers=headers, json=body)
    assert after.status_code == 200, after.text
    current = {c["purpose"]: c for c in after.json()["consents"]}
    assert current["marketing_email"]["granted"] is True
    assert current["marketing_email"]["source"] == "channel"
    assert current["marketing_email"]["wording_version"] == "2025-01"
    assert current["analytics"]["granted"] is False
    assert current["analytics"]["recorded_at"] is not None

    history = client.get("/v1/store/consents/history?purpose=marketing_email", headers=headers)
    assert history.status_code == 200, history.text
    [record] = history.json()["items"]
    assert (record["source"], record["source_channel_id"]) == ("channel", shop.web)
    assert record["staff_user_id"] is None
    [event, _] = outbox(db, "consent.changed")
    assert event.data["customer_id"] == customer and event.data["source_channel_id"] == shop.web
    with db.read() as session:
        # A shopper's own decision is not a staff change: no audit entry.
        assert not session.scalars(
            select(AuditEntry).where(AuditEntry.action == "consent.changed")
        ).all()


BAD_CHANGES: list[tuple[list[dict[str, Any]], str]] = [
    (
        [
            {"purpose": "marketing_email", "granted": True, "wording_version": "v1"},
            {"purpose": "newsletter", "granted": True, "wording_version": "v1"},
        ],
        "body.changes[1].purpose",
    ),
    ([{"purpose": "analytics", "granted": True}], "body.changes[0].wording_version"),
    (
        [{"purpose": "analytics", "granted": "maybe", "wording_version": "v1"}],
        "body.changes[0].granted",
    ),
    (
        [
            {"purpose": "analytics", "granted": True, "wording_version": "v1"},
            {
                "purpose": "analytics",
                "granted": True,
                "wording_version": "v1",
                "channel_id": 999999,
            },
        ],
        "body.changes[1].channel_id",
    ),
    (
        [
            {"purpose": "analytics", "granted": True, "wording_version": "v1"},
            {"purpose": "analytics", "granted": False, "wording_version": "v2"},
        ],
        "body.changes[1]",
    ),
    ([], "body.changes"),
]


@pytest.mark.slow
def test_bad_consent_input_is_a_422_naming_the_field_and_changes_nothing(
    db: Database, client: TestClient, shop: Shop, new_customer: Callable[..., int]
) -> None:
    customer = new_customer()
    headers = shopper_headers(client, shop.web_key, shop.emails[customer])
    events_before = len(outbox(db))
    for changes, field in BAD_CHANGES:
        response = client.post("/v1/store/consents", headers=headers, json={"changes": changes})
        problem = assert_problem(response, 422, "validation-error")
        assert field in [e["field"] for e in problem["errors"]], (changes, problem)
    assert records(db) == 0
    assert len(outbox(db)) == events_before


@pytest.mark.slow
def test_staff_record_consent_audited_and_guarded(
    db: Database,
    client: TestClient,
    shop: Shop,
    new_customer: Callable[..., int],
    owner_headers: dict[str, str],
    make_staff: Callable[..., dict[str, str]],
) -> None:
    customer = new_customer()
    url = f"/v1/customers/{customer}/consents"
    body = {
        "changes": [{"purpose": "marketing_sms", "granted": True, "wording_version": "phone-3"}],
        "note": "asked on the phone",
    }
    response = client.post(url, headers=owner_headers, json=body)
    assert response.status_code == 200, response.text
    sms = next(c for c in response.json()["consents"] if c["purpose"] == "marketing_sms")
    assert (sms["granted"], sms["source"]) == (True, "staff")
    imported = client.post(
        url,
        headers=owner_headers,
        json={
            "source": "import",
            "changes": [{"purpose": "analytics", "granted": True, "wording_version": "legacy"}],
        },
    )
    assert imported.status_code == 200, imported.text

    history = client.get(f"{url}/history", headers=owner_headers).json()["items"]
    assert [(r["purpose"], r["source"]) for r in history] == [
        ("analytics", "import"),
        ("marketing_sms", "staff"),
    ]
    assert all(r["staff_user_id"] is not None for r in history)
    assert history[1]["note"] == "asked on the phone"
    with db.read() as session:
        audited = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "consent.changed")
        ).all()
        assert [(a.entity_id, a.changes["purpose"]) for a in audited] == [
            (str(customer), "marketing_sms"),
            (str(customer), "analytics"),
        ]
        assert service.has_consent(session, customer, Purpose.MARKETING_SMS)

    analyst = make_staff("analyst")
    assert client.get(url, headers=analyst).status_code == 200
    denied = assert_problem(client.post(url, headers=analyst, json=body), 403)
    assert denied["permission"] == "customers:write"
    assert_problem(client.get("/v1/customers/999999/consents", headers=owner_headers), 404)
    assert_problem(
        client.post("/v1/customers/999999/consents", headers=owner_headers, json=body), 404
    )
    problem = assert_problem(
        client.post(url, headers=owner_headers, json={**body, "source": "channel"}), 422
    )
    assert problem["errors"][0]["field"] == "body.source"
    unknown = {"changes": [{"purpose": "newsletter", "granted": True, "wording_version": "v"}]}
    problem = assert_problem(client.post(url, headers=owner_headers, json=unknown), 422)
    assert problem["errors"][0]["field"] == "body.changes[0].purpose"
    assert records(db) == 2


def test_withdrawing_cancels_queued_marketing_messages(
    db: Database, shop: Shop, new_customer: Callable[..., int]
) -> None:
    customer = new_customer()
    change(db, customer, ConsentChange(EMAIL, True, "v1"), channel=shop.web)
    with db.transaction() as session:
        for purpose in (EMAIL.value, None):
            notifier.queue_message(
                session,
                notifier.NewMessage(
                    customer_id=customer,
                    channel=notifier.MessageChannel.EMAIL,
                    recipient="c@example.jp",
                    template="t",
                    locale="en",
                    subject="s",
                    body_text="b",
                    purpose=purpose,
                ),
            )
    # A channel-only withdrawal leaves the brand-wide consent, and the queue, alone.
    change(db, customer, ConsentChange(EMAIL, False, "v1", shop.store), channel=shop.store)
    with db.read() as session:
        assert {m.status for m in notifier.list_messages(session).items} == {"queued"}
    change(db, customer, ConsentChange(EMAIL, False, "v1"), channel=shop.web)
    with db.read() as session:
        found = {m.purpose: (m.status, m.last_error) for m in notifier.list_messages(session).items}
    assert found == {
        EMAIL.value: ("failed", "consent withdrawn before sending"),
        None: ("queued", None),  # a service message needs no marketing consent
    }


def test_concurrent_changes_lose_no_decision(
    db: Database, shop: Shop, new_customer: Callable[..., int]
) -> None:
    customer = new_customer()
    decisions = 24

    def decide(n: int) -> int:
        return change(db, customer, ConsentChange(EMAIL, n % 2 == 0, f"v{n}"), channel=shop.web)

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert sum(pool.map(decide, range(decisions))) == decisions
    with db.read() as session:
        history = service.consent_history(session, customer, limit=100).items
        latest = history[0]
        assert len(history) == decisions
        assert len({r.wording_version for r in history}) == decisions
        assert service.has_consent(session, customer, EMAIL) is latest.granted
    assert len(outbox(db, "consent.changed")) == decisions
