"""The loyalty API: the programme for staff, accounts and adjustments, the shopper's page."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from mercato.auth.models import AuditEntry
from mercato.auth.permissions import Role
from mercato.auth.principal import Principal
from mercato.db import Database
from mercato.loyalty import service as loyalty
from tests.conftest import assert_problem
from tests.loyalty.conftest import Loyal, assert_ledger_consistent, balance, entry_count, programme

pytestmark = pytest.mark.slow

Headers = dict[str, str]


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def audits(db: Database, action: str) -> list[AuditEntry]:
    with db.read() as session:
        found = list(session.scalars(select(AuditEntry).where(AuditEntry.action == action)))
        session.expunge_all()
    return found


def test_staff_set_up_the_programme(
    client: TestClient, db: Database, owner_headers: Headers, make_staff: Callable[..., Headers]
) -> None:
    assert_problem(client.get("/v1/loyalty/programme", headers=owner_headers), 404)
    body = programme(1, category_multipliers=[])
    saved = ok(client.put("/v1/loyalty/programme", headers=owner_headers, json=body))
    assert saved["tier_window"] == "rolling_12_months"
    assert [(c["currency"], c["earn_amount"], c["point_value"]) for c in saved["currencies"]] == [
        ("EUR", "1", "0.01"),
        ("JPY", "100", "1"),
    ]
    assert [t["earn_multiplier"] for t in saved["tiers"]] == ["1", "1.5"]
    assert [t["code"] for t in saved["tiers"]] == ["silver", "gold"]
    analyst = make_staff(Role.ANALYST)
    assert ok(client.get("/v1/loyalty/programme", headers=analyst))["name"] == "Mercato Rewards"
    denied = assert_problem(
        client.put("/v1/loyalty/programme", headers=analyst, json=body), 403, "forbidden"
    )
    assert denied["permission"] == "pricing:write"
    assert len(audits(db, "loyalty.programme_updated")) == 1


def test_bad_programmes_are_refused_naming_the_field(
    client: TestClient, owner_headers: Headers, loyal: Loyal
) -> None:
    before = ok(client.get("/v1/loyalty/programme", headers=owner_headers))
    base = programme(loyal.coffee_category)
    eur = base["currencies"][0]
    cases: list[tuple[dict[str, Any], str]] = [
        (
            {**base, "currencies": [{**eur, "point_value": "0.001"}]},
            "body.currencies[0].point_value",
        ),
        ({**base, "currencies": [{**eur, "currency": "XYZ"}]}, "body.currencies[0].currency"),
        ({**base, "currencies": [eur, eur]}, "body.currencies[1].currency"),
        (
            {**base, "currencies": [{**eur, "currency": "JPY", "earn_amount": "0.5"}]},
            "body.currencies[0].earn_amount",
        ),
        ({**base, "currencies": [{**eur, "earn_amount": "0"}]}, "body.currencies[0].earn_amount"),
        (
            {**base, "category_multipliers": [{"category_id": 9999, "multiplier": "2"}]},
            "body.category_multipliers[0].category_id",
        ),
        (
            {**base, "tiers": [*base["tiers"], {**base["tiers"][0], "code": "bronze"}]},
            "body.tiers[2].threshold",
        ),
        (
            {**base, "tiers": [{**base["tiers"][0], "earn_multiplier": "-1"}]},
            "body.tiers[0].earn_multiplier",
        ),
        ({**base, "expiry_months": 0}, "body.expiry_months"),
        ({**base, "colour": "gold"}, "body.colour"),
    ]
    for body, field in cases:
        problem = assert_problem(
            client.put("/v1/loyalty/programme", headers=owner_headers, json=body), 422
        )
        assert field in [e["field"] for e in problem["errors"]], (field, problem)
    assert ok(client.get("/v1/loyalty/programme", headers=owner_headers)) == before


def test_campaigns(client: TestClient, owner_headers: Headers, loyal: Loyal) -> None:
    weekend = {
        "name": "Double weekend",
        "starts_at": "2025-06-01T00:00:00+09:00",
        "ends_at": "2025-07-01T00:00:00+09:00",
        "multiplier": "2",
        "weekdays": [7, 6],
        "timezone": "Asia/Tokyo",
    }
    made = ok(client.post("/v1/loyalty/campaigns", headers=owner_headers, json=weekend), 201)
    assert (made["weekdays"], made["multiplier"], made["bonus_points"]) == ([6, 7], "2", 0)
    changed = ok(
        client.put(
            f"/v1/loyalty/campaigns/{made['id']}",
            headers=owner_headers,
            json={**weekend, "active": False},
        )
    )
    assert changed["active"] is False
    listed = ok(client.get("/v1/loyalty/campaigns", headers=owner_headers))["items"]
    assert [c["id"] for c in listed] == [made["id"]]
    bad = [
        ({**weekend, "ends_at": weekend["starts_at"]}, "body.ends_at"),
        ({**weekend, "multiplier": "1"}, "body.multiplier"),
        ({**weekend, "timezone": "Mars/Olympus"}, "body.timezone"),
        ({**weekend, "weekdays": [8]}, "body.weekdays[0]"),
        ({**weekend, "starts_at": "2025-06-01T00:00:00"}, "body.starts_at"),
    ]
    for body, field in bad:
        problem = assert_problem(
            client.post("/v1/loyalty/campaigns", headers=owner_headers, json=body), 422
        )
        assert field in [e["field"] for e in problem["errors"]], (field, problem)
    assert_problem(
        client.put("/v1/loyalty/campaigns/999", headers=owner_headers, json=weekend), 404
    )
    assert len(ok(client.get("/v1/loyalty/campaigns", headers=owner_headers))["items"]) == 1


def test_adjustments_are_idempotent_audited_and_never_overdraw(
    client: TestClient, db: Database, owner_headers: Headers, loyal: Loyal
) -> None:
    url = f"/v1/loyalty/accounts/{loyal.hana}/adjustments"
    headers = {**owner_headers, "Idempotency-Key": str(uuid.uuid4())}
    body = {"points": 250, "reason": "goodwill: parcel was late"}
    first = client.post(url, headers=headers, json=body)
    again = client.post(url, headers=headers, json=body)
    assert first.status_code == again.status_code == 201, first.text
    assert first.json() == again.json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert first.json()["kind"] == "adjust" and first.json()["actor_type"] == "staff"
    assert balance(db, loyal.hana) == 250
    (entry,) = audits(db, "loyalty.points_adjusted")
    assert (entry.entity_id, entry.note) == (str(loyal.hana), "goodwill: parcel was late")
    before = entry_count(db)
    for points, status, field in ((0, 422, "body.points"), (-251, 409, None), (10**9, 422, None)):
        problem = assert_problem(
            client.post(url, headers=owner_headers, json={"points": points, "reason": "x"}), status
        )
        if field:
            assert problem["errors"][0]["field"] == field
    assert_problem(client.post(url, headers=owner_headers, json={"points": 5}), 422)
    assert_problem(
        client.post(
            "/v1/loyalty/accounts/99999/adjustments",
            headers=owner_headers,
            json={"points": 5, "reason": "x"},
        ),
        404,
    )
    assert entry_count(db) == before
    assert balance(db, loyal.hana) == 250


def test_staff_read_an_account_and_its_ledger(
    client: TestClient, db: Database, owner_headers: Headers, loyal: Loyal
) -> None:
    with db.transaction() as session:
        for n in range(3):
            loyalty.earn(
                session,
                Principal.system("tests"),
                loyal.hana,
                400,
                reference_type="order",
                reference_id=f"M-{n}",
            )
        loyalty.redeem(
            session, Principal.system("t"), loyal.hana, 100, reference_type="t", reference_id="P"
        )
    account = ok(client.get(f"/v1/loyalty/accounts/{loyal.hana}", headers=owner_headers))
    assert (account["balance"], account["qualifying_points"]) == (1100, 1200)
    assert account["tier"]["code"] == "silver"
    assert account["next_tier"] == {
        "code": "gold",
        "name": "Gold",
        "threshold": 5000,
        "points_needed": 3800,
    }
    page = ok(
        client.get(f"/v1/loyalty/accounts/{loyal.hana}/ledger?limit=2", headers=owner_headers)
    )
    assert [e["kind"] for e in page["items"]] == ["redeem", "earn"]
    rest = ok(
        client.get(
            f"/v1/loyalty/accounts/{loyal.hana}/ledger?cursor={page['next_cursor']}",
            headers=owner_headers,
        )
    )
    assert [e["reference_id"] for e in rest["items"]] == ["M-1", "M-0"]
    earned = ok(
        client.get(f"/v1/loyalty/accounts/{loyal.hana}/ledger?kind=earn", headers=owner_headers)
    )
    assert len(earned["items"]) == 3
    assert_problem(
        client.get(f"/v1/loyalty/accounts/{loyal.hana}/ledger?kind=gift", headers=owner_headers),
        422,
    )
    assert_problem(client.get("/v1/loyalty/accounts/99999", headers=owner_headers), 404)
    assert ok(client.get("/v1/loyalty/verify", headers=owner_headers)) == {
        "ok": True,
        "mismatches": [],
    }
    assert_ledger_consistent(db)


def test_the_shopper_sees_her_points_in_any_channel(
    client: TestClient, db: Database, loyal: Loyal
) -> None:
    with db.transaction() as session:
        loyalty.earn(
            session,
            Principal.system("tests"),
            loyal.hana,
            1234,
            reference_type="order",
            reference_id="M-1",
        )
    for key in (loyal.web_key, loyal.pos_key):
        channel = {"X-Channel-Key": key}
        assert_problem(client.get("/v1/store/loyalty", headers=channel), 401)
        token = ok(
            client.post(
                "/v1/store/customers/login",
                headers=channel,
                json={"email": "hana@example.com", "password": "long enough pw"},
            )
        )["token"]
        mine = ok(
            client.get("/v1/store/loyalty", headers={**channel, "Authorization": f"Bearer {token}"})
        )
        assert (mine["balance"], mine["pending"], mine["tier"]["code"]) == (1234, 0, "silver")
        assert mine["redemption"]["currency"] == "EUR"
        assert mine["redemption"] == {
            "currency": "EUR",
            "point_value": "0.01",
            "balance_value": "12.34",
        }
        assert [(h["kind"], h["points"]) for h in mine["history"]] == [("earn", 1234)]
        assert "actor_id" not in mine["history"][0]
        assert mine["expiring_soon"]["points"] == 0
