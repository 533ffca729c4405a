"""The payments HTTP API: staff endpoints, permissions, idempotency, shopper endpoints."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from mercato.auth.permissions import Role
from mercato.db import Database
from mercato.payments.models import GatewayCharge, GatewayRequest, GatewayToken
from mercato.payments.service import TenderRequest
from tests.conftest import assert_problem
from tests.helpers import audit_entries, created, make_location, ok
from tests.payments.conftest import THREE_DS, World, card_tender, create, pay, payment

pytestmark = pytest.mark.slow

Headers = dict[str, str]


def test_payments_by_reference_capture_and_refund(
    client: TestClient, owner_headers: Headers, db: Database, world: World
) -> None:
    [p] = pay(db, world, [card_tender(db, "99.99")])
    listed = ok(client.get("/v1/payments?reference=CO-1", headers=owner_headers))
    assert [x["id"] for x in listed["items"]] == [p.id]
    assert listed["items"][0]["amount"] == "99.99" and listed["items"][0]["status"] == "authorized"

    key = {**owner_headers, "Idempotency-Key": "cap-7"}
    url = f"/v1/payments/{p.id}/capture"
    first = ok(client.post(url, json={"amount": "50.00"}, headers=key))
    again = ok(client.post(url, json={"amount": "50.00"}, headers=key))
    assert first["captured"] == again["captured"] == "50.00"
    assert [t["kind"] for t in first["transactions"]] == ["authorize", "capture"]
    too_much = client.post(url, json={"amount": "49.999"}, headers=owner_headers)
    assert assert_problem(too_much, 422)["errors"][0]["field"] == "body.amount"
    over = client.post(url, json={"amount": "50.00"}, headers=owner_headers)
    assert "49.99" in assert_problem(over, 422)["errors"][0]["reason"]
    assert ok(client.post(url, headers=owner_headers))["status"] == "captured"

    refund = created(
        client.post(
            f"/v1/payments/{p.id}/refunds",
            json={"amount": "10.00", "reason": "damaged"},
            headers={**owner_headers, "Idempotency-Key": "r-1"},
        )
    )
    assert (refund["amount"], refund["status"], refund["reason"]) == (
        "10.00",
        "succeeded",
        "damaged",
    )
    response = client.post(
        "/v1/payments/refunds", json={"reference": "CO-1", "amount": "89.99"}, headers=owner_headers
    )
    assert response.status_code == 201, response.text
    split: list[dict[str, Any]] = response.json()
    assert [(r["payment_id"], r["amount"]) for r in split] == [(p.id, "89.99")]
    beyond = client.post(
        f"/v1/payments/{p.id}/refunds", json={"amount": "0.01"}, headers=owner_headers
    )
    assert assert_problem(beyond, 422)["errors"][0]["field"] == "body.amount"
    detail = ok(client.get(f"/v1/payments/{p.id}", headers=owner_headers))
    assert (detail["status"], detail["refunded"]) == ("refunded", "99.99")
    assert len(detail["refunds"]) == 2
    actions = [e.action for e in audit_entries(db) if e.action.startswith("payment.")]
    assert actions == [
        "payment.capture_requested",
        "payment.capture_requested",
        "payment.refund_requested",
        "payment.refund_requested",
    ]


def test_void_and_unknown_payment(
    client: TestClient, owner_headers: Headers, db: Database, world: World
) -> None:
    [p] = pay(db, world, [TenderRequest("cash_on_delivery", Decimal("12.00"))])
    assert ok(client.post(f"/v1/payments/{p.id}/void", headers=owner_headers))["status"] == "voided"
    assert ok(client.post(f"/v1/payments/{p.id}/void", headers=owner_headers))["status"] == "voided"
    assert_problem(client.post("/v1/payments/999/capture", headers=owner_headers), 404)
    assert_problem(client.post(f"/v1/payments/{p.id}/capture", headers=owner_headers), 409)


def test_permissions(
    client: TestClient,
    owner_headers: Headers,
    make_staff: Callable[..., Headers],
    db: Database,
    world: World,
) -> None:
    [p] = pay(db, world, [card_tender(db, "10.00")])
    analyst = make_staff(Role.ANALYST)
    store = make_location(client, owner_headers, "ST-1")["id"]
    associate = make_staff(Role.STORE_ASSOCIATE, [store])
    ok(client.get(f"/v1/payments/{p.id}", headers=analyst))
    denied = assert_problem(client.post(f"/v1/payments/{p.id}/capture", headers=analyst), 403)
    assert denied["permission"] == "payments:write"
    ok(client.post(f"/v1/payments/{p.id}/capture", headers=associate))
    refund = client.post(f"/v1/payments/{p.id}/refunds", json={"amount": "1"}, headers=associate)
    assert assert_problem(refund, 403)["permission"] == "refunds:write"
    issue = client.post("/v1/gift-cards", json={"currency": "EUR", "amount": "5"}, headers=analyst)
    assert assert_problem(issue, 403)["permission"] == "gift_cards:write"
    assert_problem(client.post(f"/v1/payments/{p.id}/capture"), 401)
    assert payment(db, p.id).captured == Decimal("10.00")


def test_gift_card_issue_replay_get_disable_and_balance(
    client: TestClient, owner_headers: Headers, world: World
) -> None:
    body = {"currency": "JPY", "amount": "5000", "note": "birthday"}
    headers = {**owner_headers, "Idempotency-Key": "gc-1"}
    issued = created(client.post("/v1/gift-cards", json=body, headers=headers))
    replay = client.post("/v1/gift-cards", json=body, headers=headers)
    assert replay.status_code == 201 and replay.headers["idempotent-replayed"] == "true"
    assert replay.json()["id"] == issued["id"] and replay.json()["code"] == issued["code"]
    assert issued["balance"] == "5000" and issued["masked_code"].endswith(issued["code"][-4:])
    for wrong, field in [
        ({"currency": "JPY", "amount": "1.5"}, "body.amount"),
        ({"currency": "EUR", "amount": 1e30}, "body.amount"),
        ({"currency": "EUR", "amount": "NaN"}, "body.amount"),
        ({"currency": "XYZ", "amount": "5"}, "body.currency"),
        (
            {"currency": "EUR", "amount": "5", "expires_at": "2030-01-01T00:00:00"},
            "body.expires_at",
        ),
        (
            {"currency": "EUR", "amount": "5", "expires_at": "2001-01-01T00:00:00Z"},
            "body.expires_at",
        ),
        ({"currency": "EUR", "amount": "5", "code": "MINE"}, "body.code"),
    ]:
        bad = client.post("/v1/gift-cards", json=wrong, headers=owner_headers)
        assert assert_problem(bad, 422)["errors"][0]["field"] == field, wrong
    listed = ok(client.get("/v1/gift-cards?status=active", headers=owner_headers))
    assert [c["id"] for c in listed["items"]] == [issued["id"]]
    fetched = ok(client.get(f"/v1/gift-cards/{issued['id']}", headers=owner_headers))
    assert "code" not in fetched and [t["kind"] for t in fetched["transactions"]] == ["issue"]

    store = {"X-Channel-Key": world.web_key}
    balance = ok(
        client.post("/v1/store/gift-cards/balance", json={"code": issued["code"]}, headers=store)
    )
    assert (balance["usable"], balance["balance"], balance["currency"]) == (True, "5000", "JPY")
    ok(client.post(f"/v1/gift-cards/{issued['id']}/disable", headers=owner_headers))
    disabled = client.post(
        "/v1/store/gift-cards/balance", json={"code": issued["code"]}, headers=store
    )
    unknown = client.post(
        "/v1/store/gift-cards/balance", json={"code": "ABCD-EFGH-JKLM-NPQR"}, headers=store
    )
    assert assert_problem(disabled, 422, "gift-card-not-usable") == assert_problem(unknown, 422)
    assert_problem(client.post("/v1/store/gift-cards/balance", json={"code": "x"}), 401)


def test_store_credit_adjustment_is_audited(
    client: TestClient, owner_headers: Headers, db: Database, world: World
) -> None:
    url = f"/v1/store-credit/{world.customer}/adjustments"
    headers = {**owner_headers, "Idempotency-Key": "adj-1"}
    body = {"currency": "EUR", "amount": "15.00", "reason": "late delivery"}
    entry = created(client.post(url, json=body, headers=headers))
    created(client.post(url, json=body, headers=headers))  # replayed, not applied twice
    assert (entry["kind"], entry["amount"], entry["balance_after"]) == ("adjust", "15.00", "15.00")
    minus = {"currency": "EUR", "amount": "-20.00", "reason": "oops"}
    assert_problem(
        client.post(url, json=minus, headers=owner_headers), 409, "insufficient-store-credit"
    )
    assert_problem(
        client.post("/v1/store-credit/999/adjustments", json=body, headers=owner_headers), 404
    )
    credit = ok(client.get(f"/v1/store-credit/{world.customer}", headers=owner_headers))
    assert credit["accounts"] == [
        {"currency": "EUR", "balance": "15.00", "updated_at": credit["accounts"][0]["updated_at"]}
    ]
    history = ok(
        client.get(f"/v1/store-credit/{world.customer}/transactions", headers=owner_headers)
    )
    assert [t["amount"] for t in history["items"]] == ["15.00"]
    [audited] = audit_entries(db, "store_credit.adjusted")
    assert audited.changes["reason"] == "late delivery" and audited.actor_type == "staff"


def test_card_tokens_never_store_the_number(client: TestClient, db: Database, world: World) -> None:
    store = {"X-Channel-Key": world.web_key}
    url = "/v1/store/payments/test-gateway/tokens"
    card = {"number": "4242 4242 4242 4242", "exp_month": 12, "exp_year": 2099, "cvc": "123"}
    token = created(client.post(url, json=card, headers=store))
    assert token["token"].startswith("tok_") and (token["brand"], token["last4"]) == (
        "visa",
        "4242",
    )
    luhn = client.post(url, json={**card, "number": "4242424242424241"}, headers=store)
    problem = assert_problem(luhn, 422)
    assert problem["errors"][0]["field"] == "body.number"
    assert "4242424242424241" not in luhn.text
    expired = client.post(url, json={**card, "exp_year": 2001}, headers=store)
    assert assert_problem(expired, 422)["errors"][0]["field"] == "body.exp_year"
    assert_problem(client.post(url, json=card), 401)
    ids = create(db, world, [TenderRequest("test_gateway", Decimal(1), token=token["token"])])
    assert ids
    with db.read() as session:
        rows: list[Any] = [
            *session.scalars(select(GatewayToken)),
            *session.scalars(select(GatewayCharge)),
            *session.scalars(select(GatewayRequest)),
        ]
        dumped = " ".join(str(vars(r)) for r in rows)
    assert "4242424242424242" not in dumped and "424242424242" not in dumped


def test_three_d_secure_through_the_store_api(
    client: TestClient, db: Database, world: World
) -> None:
    [p] = pay(db, world, [card_tender(db, "70.00", THREE_DS)])
    url = f"/v1/store/payments/{p.id}/complete-action"
    other = client.post(
        url, json={"client_secret": p.client_secret}, headers={"X-Channel-Key": world.pos_key}
    )
    assert_problem(other, 404)
    mine = {"X-Channel-Key": world.web_key}
    assert_problem(client.post(url, json={"client_secret": "pcs_wrong"}, headers=mine), 404)
    done = ok(client.post(url, json={"client_secret": p.client_secret}, headers=mine))
    assert (done["status"], done["card_last4"]) == ("authorized", "3220")
    assert "client_secret" not in done


def test_providers_are_listed_without_secrets(
    client: TestClient, owner_headers: Headers, make_staff: Callable[..., Headers]
) -> None:
    page = ok(client.get("/v1/payments/providers", headers=make_staff(Role.ANALYST)))
    assert page["next_cursor"] is None
    answer = page["items"]
    names = [p["name"] for p in answer]
    assert names == sorted(names)
    assert {"test_gateway", "cash_on_delivery", "pos_cash", "pos_card"} <= set(names)
    gateway = next(p for p in answer if p["name"] == "test_gateway")
    assert gateway == {
        "name": "test_gateway",
        "refund_last": False,
        "webhook_path": "/v1/payments/webhooks/test_gateway",
    }
    assert_problem(client.get("/v1/payments/providers"), 401)
