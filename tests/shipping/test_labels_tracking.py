"""Labels, tracking events, carrier webhooks (signature, idempotency) and their concurrency."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from mercato.db import Database
from mercato.shipping import service
from mercato.shipping.carriers import (
    SIGNATURE_HEADER,
    Address,
    LabelRequest,
    is_valid_s10,
    sign_webhook,
)
from mercato.shipping.models import ShippingLabel, TrackingEventRecord
from tests.conftest import assert_problem
from tests.helpers import audit_entries, count, outbox
from tests.shipping.conftest import (
    ACTOR,
    SECRET,
    World,
    make_carrier,
    make_service,
    make_table,
    make_zone,
)

pytestmark = pytest.mark.slow

Headers = dict[str, str]
SENDER = {
    "name": "Warehouse Hamburg",
    "line1": "Hafenstr. 1",
    "city": "Hamburg",
    "postal_code": "20457",
    "country": "DE",
}
RECIPIENT = {
    "name": "Erika Muster",
    "line1": "Hauptstr. 5",
    "city": "Hamburg",
    "postal_code": "20095",
    "country": "DE",
}
SCAN = datetime(2026, 3, 9, 8, 0, tzinfo=UTC)


def label_body(**fields: Any) -> dict[str, Any]:
    return {
        "carrier_code": "parcel-de",
        "service_code": "standard",
        "ship_from": SENDER,
        "ship_to": RECIPIENT,
        "weight_g": 1200,
        "reference": "shipment-1",
        **fields,
    }


def make_label(client: TestClient, headers: Headers, **fields: Any) -> dict[str, Any]:
    response = client.post("/v1/shipping/labels", json=label_body(**fields), headers=headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def webhook(
    client: TestClient,
    events: list[dict[str, Any]],
    *,
    secret: str = SECRET,
    signature: str | None = None,
    carrier: str = "parcel-de",
) -> Any:
    raw = json.dumps({"events": events}).encode()
    header = signature if signature is not None else sign_webhook(secret, raw)
    return client.post(
        f"/v1/shipping/webhooks/{carrier}",
        content=raw,
        headers={SIGNATURE_HEADER: header, "content-type": "application/json"},
    )


def scan(
    tracking: str, status: str, at: datetime = SCAN, event_id: str = "evt-1"
) -> dict[str, Any]:
    return {
        "id": event_id,
        "tracking_number": tracking,
        "status": status,
        "occurred_at": at.isoformat(),
        "location": "Hamburg hub",
    }


def test_label_has_a_check_digit_and_a_deterministic_document(
    client: TestClient, owner_headers: Headers, world: World, db: Database
) -> None:
    first = make_label(client, owner_headers)
    second = make_label(client, owner_headers)
    assert first["tracking_number"] == "PD000000014DE"  # serial 1: 11 - (1 x 7) = check digit 4
    assert second["tracking_number"] == "PD000000028DE"
    assert all(is_valid_s10(x["tracking_number"]) for x in (first, second))
    assert first["status"] == "label_created" and first["format"] == "zpl"
    assert first["content"].startswith("^XA\n^CI28\n") and "^BCN" in first["content"]
    assert "Erika Muster" in first["content"] and "REF shipment-1" in first["content"]
    # Same request, same document: only the tracking number differs.
    assert first["content"].replace(first["tracking_number"], "#") == second["content"].replace(
        second["tracking_number"], "#"
    )
    as_json = make_label(client, owner_headers, format="json")
    document = json.loads(as_json["content"])
    assert document["tracking_number"] == as_json["tracking_number"]
    assert document["ship_to"]["city"] == "Hamburg" and document["weight_g"] == 1200
    assert [e.action for e in audit_entries(db, "shipping.label_created")] == [
        "shipping.label_created"
    ] * 3
    created = outbox(db, "shipment.label_created")
    assert created[0].data["tracking_number"] == first["tracking_number"]
    assert created[0].data["reference"] == "shipment-1"
    found = client.get("/v1/shipping/labels?reference=shipment-1", headers=owner_headers).json()
    found = found["items"]
    assert len(found) == 3


def test_label_idempotency_key(
    client: TestClient, owner_headers: Headers, world: World, db: Database
) -> None:
    headers = {**owner_headers, "Idempotency-Key": "label-7"}
    first = client.post("/v1/shipping/labels", json=label_body(), headers=headers)
    again = client.post("/v1/shipping/labels", json=label_body(), headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    other = client.post("/v1/shipping/labels", json=label_body(weight_g=900), headers=headers)
    assert_problem(other, 422, "idempotency-key-reused")
    assert count(db, ShippingLabel) == 1


def test_cross_border_labels_carry_customs_data(
    client: TestClient, owner_headers: Headers, world: World, db: Database
) -> None:
    with db.transaction() as session:
        us = make_zone(session, "us", ("US", None, None))
        abroad = make_service(session, world.carrier, "world", scope="international")
        make_table(session, abroad, us, "EUR", [(2000, "30.00")])
    to_us = {
        "name": "Sam Buyer",
        "line1": "1 Main St",
        "city": "Austin",
        "region": "TX",
        "postal_code": "78701",
        "country": "US",
    }
    missing = client.post(
        "/v1/shipping/labels",
        headers=owner_headers,
        json=label_body(service_code="world", ship_to=to_us),
    )
    problem = assert_problem(missing, 422)
    assert problem["errors"][0]["field"] == "body.customs_items"
    item = {
        "description": "Cotton T-shirt",
        "hs_code": "6109.10",
        "origin_country": "VN",
        "quantity": 2,
        "value": "39.80",
        "currency": "EUR",
    }
    bad_hs = client.post(
        "/v1/shipping/labels",
        headers=owner_headers,
        json=label_body(
            service_code="world", ship_to=to_us, customs_items=[{**item, "hs_code": "61-09"}]
        ),
    )
    assert assert_problem(bad_hs, 422)["errors"][0]["field"] == "body.customs_items[0].hs_code"
    assert count(db, ShippingLabel) == 0
    label = make_label(
        client, owner_headers, service_code="world", ship_to=to_us, customs_items=[item]
    )
    assert label["destination_country"] == "US"
    assert label["customs"] == [
        {
            "description": "Cotton T-shirt",
            "hs_code": "610910",
            "origin_country": "VN",
            "quantity": 2,
            "value": "39.80",
            "currency": "EUR",
        }
    ]
    assert "CUSTOMS DECLARATION CN22 1 ITEM(S) 39.80 EUR" in label["content"]
    # Within the EU customs union no declaration is needed.
    to_fr = {**RECIPIENT, "city": "Paris", "postal_code": "75001", "country": "FR"}
    assert make_label(client, owner_headers, ship_to=to_fr)["customs"] == []


BAD_LABELS: list[tuple[dict[str, Any], str]] = [
    ({"carrier_code": "nobody"}, "body.carrier_code"),
    ({"service_code": "teleport"}, "body.service_code"),
    (
        {"weight_g": 6000, "ship_to": {**RECIPIENT, "postal_code": "10115"}},
        "body.service_code",
    ),  # the Berlin table stops at 5 kg
    ({"ship_to": {**RECIPIENT, "country": "BR"}}, "body.ship_to.country"),
    ({"ship_to": {**RECIPIENT, "country": "XX"}}, "body.ship_to.country"),
    ({"weight_g": 0}, "body.weight_g"),
    ({"format": "pdf"}, "body.format"),
    ({"colour": "red"}, "body.colour"),
]


def test_bad_label_requests_change_nothing(
    client: TestClient, owner_headers: Headers, world: World, db: Database
) -> None:
    for fields, field in BAD_LABELS:
        response = client.post(
            "/v1/shipping/labels", json=label_body(**fields), headers=owner_headers
        )
        problem = assert_problem(response, 422)
        assert field in [e["field"] for e in problem["errors"]], (fields, problem)
    assert count(db, ShippingLabel) == 0
    assert outbox(db, "shipment.label_created") == []
    with db.read() as session:
        assert service.get_carrier(session, world.carrier).label_serial == 0


def test_tracking_events_through_the_api(
    client: TestClient, owner_headers: Headers, world: World, db: Database
) -> None:
    label = make_label(client, owner_headers)
    number = label["tracking_number"]
    url = f"/v1/shipping/tracking/{number}/events"
    first = client.post(
        url,
        headers=owner_headers,
        json={"status": "in_transit", "occurred_at": SCAN.isoformat(), "location": "Hamburg hub"},
    )
    assert first.status_code == 201, first.text
    delivered_at = SCAN + timedelta(hours=6)
    client.post(
        url,
        headers=owner_headers,
        json={"status": "delivered", "occurred_at": delivered_at.isoformat(), "event_id": "d-1"},
    )
    # A late scan from earlier in the day is recorded but does not undo "delivered".
    late = client.post(
        url,
        headers=owner_headers,
        json={"status": "out_for_delivery", "occurred_at": (SCAN + timedelta(hours=2)).isoformat()},
    )
    tracking = late.json()
    assert tracking["status"] == "delivered"
    assert [e["status"] for e in tracking["events"]] == [
        "in_transit",
        "out_for_delivery",
        "delivered",
    ]
    # The same carrier event id again: nothing new (200, not 201).
    again = client.post(
        url,
        headers=owner_headers,
        json={"status": "delivered", "occurred_at": delivered_at.isoformat(), "event_id": "d-1"},
    )
    assert again.status_code == 200 and len(again.json()["events"]) == 3
    events = outbox(db, "shipment.tracking_updated")
    assert [e.data["event"]["status"] for e in events] == [
        "in_transit",
        "delivered",
        "out_for_delivery",
    ]
    assert events[-1].data["status"] == "delivered"  # the label's status after the event
    assert events[0].data["reference"] == "shipment-1"
    assert events[0].aggregate_id == str(label["id"])
    assert len(audit_entries(db, "shipping.tracking_recorded")) == 3
    with db.read() as session:
        history = service.track(session, number)
    assert [e.status.value for e in history] == ["in_transit", "out_for_delivery", "delivered"]
    fetched = client.get(f"/v1/shipping/tracking/{number.lower()}", headers=owner_headers)
    assert fetched.json()["status"] == "delivered"
    assert_problem(client.get("/v1/shipping/tracking/PD999999999DE", headers=owner_headers), 404)
    future = client.post(
        url,
        headers=owner_headers,
        json={"status": "delivered", "occurred_at": "2999-01-01T00:00:00+00:00"},
    )
    assert assert_problem(future, 422)["errors"][0]["field"] == "body.occurred_at"
    naive = client.post(url, headers=owner_headers, json={"status": "lost", "occurred_at": "x"})
    assert {e["field"] for e in assert_problem(naive, 422)["errors"]} == {
        "body.status",
        "body.occurred_at",
    }
    assert count(db, TrackingEventRecord) == 3


def test_void_label(client: TestClient, owner_headers: Headers, world: World, db: Database) -> None:
    unused = make_label(client, owner_headers)
    voided = client.post(f"/v1/shipping/labels/{unused['id']}/void", headers=owner_headers)
    assert voided.status_code == 200 and voided.json()["voided_at"] is not None
    assert_problem(
        client.post(f"/v1/shipping/labels/{unused['id']}/void", headers=owner_headers), 409
    )
    scanned = client.post(
        f"/v1/shipping/tracking/{unused['tracking_number']}/events",
        headers=owner_headers,
        json={"status": "in_transit", "occurred_at": SCAN.isoformat()},
    )
    assert_problem(scanned, 409)
    used = make_label(client, owner_headers)
    client.post(
        f"/v1/shipping/tracking/{used['tracking_number']}/events",
        headers=owner_headers,
        json={"status": "in_transit", "occurred_at": SCAN.isoformat()},
    )
    assert_problem(
        client.post(f"/v1/shipping/labels/{used['id']}/void", headers=owner_headers), 409
    )
    assert [e.data["tracking_number"] for e in outbox(db, "shipment.label_voided")] == [
        unused["tracking_number"]
    ]


def test_webhook_signature_and_idempotency(
    client: TestClient, owner_headers: Headers, world: World, db: Database
) -> None:
    number = make_label(client, owner_headers)["tracking_number"]
    events = [
        scan(number, "in_transit"),
        scan(number, "delivered", SCAN + timedelta(hours=5), "evt-2"),
    ]
    forged = webhook(client, events, secret="not-the-secret-at-all")
    assert_problem(forged, 401, "invalid-signature")
    assert_problem(webhook(client, events, signature=""), 401, "invalid-signature")
    assert count(db, TrackingEventRecord) == 0 and outbox(db, "shipment.tracking_updated") == []
    ok = webhook(client, events)
    assert ok.status_code == 200, ok.text
    assert ok.json() == {"received": 2, "recorded": 2, "duplicates": 0, "ignored": []}
    retried = webhook(client, events)
    assert retried.json() == {"received": 2, "recorded": 0, "duplicates": 2, "ignored": []}
    assert count(db, TrackingEventRecord) == 2
    assert len(outbox(db, "shipment.tracking_updated")) == 2
    tracking = client.get(f"/v1/shipping/tracking/{number}", headers=owner_headers).json()
    assert tracking["status"] == "delivered"
    assert {e["source"] for e in tracking["events"]} == {"webhook"}
    # Someone else's parcel is skipped, not retried forever.
    stranger = webhook(client, [scan("ZZ123456785US", "in_transit", event_id="evt-9")])
    assert stranger.json()["ignored"] == ["ZZ123456785US"]
    assert_problem(webhook(client, events, carrier="nobody"), 404)


MALFORMED: list[tuple[bytes, str]] = [
    (b"not json", "body"),
    (b'{"events": []}', "body.events"),
    (
        b'{"events": [{"id": "e", "tracking_number": "T", "status": "lost",'
        b' "occurred_at": "2026-03-09T08:00:00+00:00"}]}',
        "body.events[0].status",
    ),
    (
        b'{"events": [{"id": "e", "tracking_number": "T", "status": "delivered",'
        b' "occurred_at": "2026-03-09T08:00:00"}]}',
        "body.events[0].occurred_at",
    ),
    (
        b'{"events": [{"tracking_number": "T", "status": "delivered",'
        b' "occurred_at": "2026-03-09T08:00:00+00:00"}]}',
        "body.events[0].id",
    ),
    (
        b'{"events": [{"id": "e", "tracking_number": "T", "status": "delivered",'
        b' "occurred_at": "2026-03-09T08:00:00+00:00", "weight": 3}]}',
        "body.events[0].weight",
    ),
]


def test_signed_but_malformed_webhooks_are_422_and_unsigned_ones_401(
    client: TestClient, world: World, db: Database
) -> None:
    for payload, field in MALFORMED:
        response = client.post(
            "/v1/shipping/webhooks/parcel-de",
            content=payload,
            headers={SIGNATURE_HEADER: sign_webhook(SECRET, payload)},
        )
        assert assert_problem(response, 422)["errors"][0]["field"] == field, payload
    # A carrier without a configured secret cannot be verified: refused.
    with db.transaction() as session:
        make_carrier(session, "no-secret", "NS", ["DE"], ["DE"])
    assert_problem(
        webhook(client, [scan("NS000000014DE", "in_transit")], carrier="no-secret"),
        401,
        "invalid-signature",
    )
    assert count(db, TrackingEventRecord) == 0


def _label(db: Database) -> ShippingLabel:
    request = LabelRequest(
        carrier_code="parcel-de",
        service_code="standard",
        ship_from=Address("Warehouse", "Hafenstr. 1", "Hamburg", "DE", "20457"),
        ship_to=Address("Erika", "Hauptstr. 5", "Hamburg", "DE", "20095"),
        weight_g=500,
    )
    with db.transaction() as session:
        return service.create_label(session, ACTOR, request)


def test_many_threads_buying_labels_never_share_a_tracking_number(
    db: Database, world: World
) -> None:
    start = threading.Barrier(12)

    def buy(_: int) -> str:
        start.wait()
        return _label(db).tracking_number

    with ThreadPoolExecutor(12) as pool:
        numbers = list(pool.map(buy, range(12)))
    assert len(set(numbers)) == 12 and all(is_valid_s10(n) for n in numbers)
    assert sorted(int(n[2:10]) for n in numbers) == list(range(1, 13))
    with db.read() as session:
        assert service.get_carrier(session, world.carrier).label_serial == 12


def test_the_same_webhook_delivered_concurrently_is_recorded_once(
    db: Database, world: World
) -> None:
    number = _label(db).tracking_number
    raw = json.dumps({"events": [scan(number, "in_transit")]}).encode()
    headers = {SIGNATURE_HEADER: sign_webhook(SECRET, raw)}
    start = threading.Barrier(8)

    def deliver(_: int) -> service.WebhookResult:
        start.wait()
        with db.transaction() as session:
            return service.receive_webhook(session, "parcel-de", headers, raw)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(deliver, range(8)))
    assert sum(r.recorded for r in results) == 1
    assert sum(r.duplicates for r in results) == 7
    with db.read() as session:
        recorded = session.scalar(select(func.count()).select_from(TrackingEventRecord))
    assert recorded == 1
    assert len(outbox(db, "shipment.tracking_updated")) == 1
