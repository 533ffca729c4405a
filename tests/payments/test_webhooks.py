"""Provider webhooks: signature checked, each event applied once."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mercato.db import Database
from mercato.errors import Problem
from mercato.payments import keys
from mercato.payments import service as payments
from mercato.payments.models import ProviderWebhookReceipt
from mercato.payments.providers import (
    ChargeRequest,
    ProviderUnavailable,
    SimulatedGateway,
    sign_webhook,
)
from mercato.settings import Settings
from tests.conftest import assert_problem
from tests.helpers import outbox
from tests.payments.conftest import (
    THREE_DS,
    World,
    card_tender,
    count_rows,
    gateway,
    ledger,
    pay,
    payment,
    pending_rows,
)

pytestmark = pytest.mark.slow

URL = "/v1/payments/webhooks/test_gateway"


def deliver(
    client: TestClient, settings: Settings, type_: str, data: dict[str, Any], **kw: Any
) -> Any:
    secret = keys.webhook_secret("test_gateway", settings.secret_key)
    body, headers = SimulatedGateway.webhook(type_, data, secret, **kw)
    return client.post(URL, content=body, headers={**headers, "content-type": "application/json"})


def test_three_d_secure_completed_by_webhook_once(
    client: TestClient, settings: Settings, db: Database, world: World
) -> None:
    [p] = pay(db, world, [card_tender(db, "60.00", THREE_DS)])
    charge = p.provider_reference or ""
    gateway(db).finish_challenge(charge)  # the shopper passed the challenge at the gateway
    first = deliver(client, settings, "charge.authenticated", {"charge": charge}, event_id="evt_1")
    assert first.status_code == 200 and first.json() == {"status": "applied"}
    again = deliver(client, settings, "charge.authenticated", {"charge": charge}, event_id="evt_1")
    assert again.json() == {"status": "duplicate"}
    assert payment(db, p.id).status == "authorized"
    assert [s for _, s, _ in ledger(db, p.id)] == ["requires_action", "succeeded"]
    assert len(outbox(db, "payment.authorized")) == 1
    # The shopper's own completion afterwards finds the work done.
    done = payments.complete_action(db, p.id, channel_id=world.web, client_secret=p.client_secret)
    assert done.status == "authorized" and len(ledger(db, p.id)) == 2


def test_bad_signature_is_refused_and_changes_nothing(
    client: TestClient, settings: Settings, db: Database, world: World
) -> None:
    [p] = pay(db, world, [card_tender(db, "60.00", THREE_DS)])
    data = {"charge": p.provider_reference}
    wrong = SimulatedGateway.webhook("charge.authenticated", data, b"not the secret")
    stale_body, _ = SimulatedGateway.webhook("charge.authenticated", data, b"x")
    secret = keys.webhook_secret("test_gateway", settings.secret_key)
    stale = sign_webhook(stale_body, secret, timestamp=1_000_000_000)
    tampered_body, good_headers = SimulatedGateway.webhook("charge.authenticated", data, secret)
    attempts = [
        (wrong[0], wrong[1]),
        (stale_body, {"Test-Gateway-Signature": stale}),
        (tampered_body.replace(b"authenticated", b"captured"), good_headers),
        (tampered_body, {}),
    ]
    for body, headers in attempts:
        response = client.post(URL, content=body, headers=headers)
        assert_problem(response, 401, "invalid-signature")
    assert count_rows(db, ProviderWebhookReceipt) == 0
    assert payment(db, p.id).status == "requires_action"
    assert_problem(client.post("/v1/payments/webhooks/nope", content=b"{}"), 404)
    assert_problem(client.post("/v1/payments/webhooks/cash_on_delivery", content=b"{}"), 404)


def test_refund_webhook_completes_a_refund_whose_answer_was_lost(
    client: TestClient,
    settings: Settings,
    db: Database,
    world: World,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    [p] = pay(db, world, [card_tender(db, "50.00")])
    payments.capture(db, p.id)
    seen: list[ChargeRequest] = []
    real_refund = SimulatedGateway.refund

    def lost_answer(self: SimulatedGateway, request: ChargeRequest) -> object:
        seen.append(request)
        real_refund(self, request)
        raise ProviderUnavailable("read timed out")

    monkeypatch.setattr(SimulatedGateway, "refund", lost_answer)
    [refund] = payments.refund_reference(db, "CO-1", Decimal("20.00"))
    assert refund.status == "pending" and pending_rows(db) == 1
    data = {
        "charge": p.provider_reference,
        "amount": "20.00",
        "currency": "EUR",
        "idempotency_key": seen[0].idempotency_key,
        "id": "re_from_gateway",
    }
    assert deliver(client, settings, "charge.refunded", data).json() == {"status": "applied"}
    # Redelivered under a new event id: matched to the same refund, not applied again.
    assert deliver(client, settings, "charge.refunded", data).json() == {"status": "ignored"}
    after = payment(db, p.id)
    assert (after.status, after.refunded) == ("partially_refunded", Decimal("20.00"))
    assert pending_rows(db) == 0
    assert payments.reconcile(db, older_than=timedelta(0)) == 0
    with db.read() as session:
        [stored] = payments.get_refunds(session, [refund.id])
        assert (stored.status, stored.provider_reference) == ("succeeded", "re_from_gateway")


def test_capture_made_at_the_provider_dashboard(
    client: TestClient, settings: Settings, db: Database, world: World
) -> None:
    [p] = pay(db, world, [card_tender(db, "50.00")])
    data = {"charge": p.provider_reference, "amount": "30.00", "currency": "EUR", "id": "cp_1"}
    assert deliver(client, settings, "charge.captured", data).json() == {"status": "applied"}
    assert deliver(client, settings, "charge.captured", data).json() == {"status": "ignored"}
    too_much = {**data, "amount": "20.01", "id": "cp_2"}
    assert deliver(client, settings, "charge.captured", too_much).json() == {"status": "ignored"}
    after = payment(db, p.id)
    assert (after.status, after.captured) == ("partially_captured", Decimal("30.00"))


def test_chargeback_reduces_what_can_be_refunded(
    client: TestClient, settings: Settings, db: Database, world: World
) -> None:
    [p] = pay(db, world, [card_tender(db, "50.00")])
    payments.capture(db, p.id)
    data = {
        "charge": p.provider_reference,
        "amount": "50.00",
        "currency": "EUR",
        "id": "dp_1",
        "reason": "fraudulent",
    }
    response = deliver(client, settings, "charge.dispute.created", data, event_id="evt_cb")
    assert response.json() == {"status": "applied"}
    assert deliver(client, settings, "charge.dispute.created", data, event_id="evt_cb").json() == {
        "status": "duplicate"
    }
    after = payment(db, p.id)
    assert (after.charged_back, after.refundable) == (Decimal("50.00"), Decimal(0))
    assert outbox(db, "payment.charged_back")[0].data["reason"] == "fraudulent"
    with pytest.raises(Problem):
        payments.refund(db, p.id, Decimal("1.00"))


def test_malformed_but_signed_payload_is_a_422(
    client: TestClient, settings: Settings, db: Database
) -> None:
    secret = keys.webhook_secret("test_gateway", settings.secret_key)
    body = b'{"id": "evt_x", "type": "charge.exploded", "data": {}}'
    headers = {"Test-Gateway-Signature": sign_webhook(body, secret)}
    assert_problem(client.post(URL, content=body, headers=headers), 422)
    assert count_rows(db, ProviderWebhookReceipt) == 0
