"""Codes: merchant-chosen, bulk-generated and personal; normalisation, uniqueness, usage."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mercato.db import Database, utcnow
from mercato.errors import UnprocessableState, ValidationProblem
from mercato.promotions import service
from mercato.promotions.models import PromotionCode
from tests.conftest import assert_problem
from tests.helpers import audit_entries, count, created, fast_password_hashing, ok, outbox
from tests.promotions.conftest import (
    ACTOR,
    FIVE_OFF,
    PERCENT_10,
    World,
    checkout,
    evaluate,
    reasons,
)

pytestmark = pytest.mark.slow

Headers = dict[str, str]


@pytest.fixture(autouse=True)
def _fast(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_password_hashing(monkeypatch)


@pytest.fixture
def promo(make_promotion: Any) -> int:
    return int(make_promotion(PERCENT_10, requires_code=True))


def test_a_code_is_stored_upper_case_and_unique_across_promotions(
    client: TestClient, owner_headers: Headers, promo: int, make_promotion: Any, db: Database
) -> None:
    body = created(
        client.post(
            f"/v1/promotions/{promo}/codes",
            json={"code": "  summer-10 ", "max_uses": 100},
            headers=owner_headers,
        )
    )
    assert body["code"] == "SUMMER-10" and body["uses"] == 0 and body["max_uses"] == 100
    assert body["disabled"] is False and body["customer_id"] is None
    other = make_promotion(FIVE_OFF, requires_code=True)
    for attempt in ("SUMMER-10", "Summer-10"):
        problem = assert_problem(
            client.post(
                f"/v1/promotions/{other}/codes", json={"code": attempt}, headers=owner_headers
            ),
            409,
            "duplicate-code",
        )
        assert "SUMMER-10" in problem["detail"]
    assert count(db, PromotionCode) == 1
    (entry,) = audit_entries(db, "promotion_code.created")
    assert entry.changes["code"] == "SUMMER-10"


INVALID_CODES: list[tuple[dict[str, Any], str]] = [
    ({"code": "AB"}, "body.code"),
    ({"code": "SÜMMER"}, "body.code"),
    ({"code": "TWO WORDS"}, "body.code"),
    ({"code": "X" * 65}, "body.code"),
    ({"code": "GOODCODE", "max_uses": 0}, "body.max_uses"),
    ({"code": "GOODCODE", "expires_at": "2001-01-01T00:00:00Z"}, "body.expires_at"),
    ({"code": "GOODCODE", "expires_at": "2099-01-01T00:00:00"}, "body.expires_at"),
]


def test_invalid_codes_are_422(
    client: TestClient, owner_headers: Headers, promo: int, db: Database
) -> None:
    for body, field in INVALID_CODES:
        problem = assert_problem(
            client.post(f"/v1/promotions/{promo}/codes", json=body, headers=owner_headers), 422
        )
        assert problem["errors"][0]["field"] == field, (body, problem)
    assert count(db, PromotionCode) == 0


def test_codes_of_an_archived_or_unknown_promotion_are_refused(
    client: TestClient, owner_headers: Headers, promo: int
) -> None:
    ok(client.patch(f"/v1/promotions/{promo}", json={"status": "archived"}, headers=owner_headers))
    assert_problem(
        client.post(f"/v1/promotions/{promo}/codes", json={"code": "LATE1"}, headers=owner_headers),
        409,
        "invalid-state",
    )
    assert_problem(
        client.post("/v1/promotions/999999/codes", json={"code": "LATE1"}, headers=owner_headers),
        404,
    )


def test_bulk_generation_gives_unique_unambiguous_codes(
    client: TestClient, owner_headers: Headers, promo: int, db: Database
) -> None:
    url = f"/v1/promotions/{promo}/codes/generate"
    first = created(client.post(url, json={"count": 2000, "prefix": "vip-"}, headers=owner_headers))
    second = created(client.post(url, json={"count": 500, "length": 6}, headers=owner_headers))
    assert first["count"] == len(first["codes"]) == 2000
    codes = first["codes"] + second["codes"]
    assert len(set(codes)) == 2500
    assert all(c.startswith("VIP-") and len(c) == 14 for c in first["codes"])
    assert all(len(c) == 6 for c in second["codes"])
    assert set("".join(c.removeprefix("VIP-") for c in codes)) <= set(service.CODE_ALPHABET)
    assert not set(service.CODE_ALPHABET) & set("01OIL")
    assert count(db, PromotionCode) == 2500
    page = ok(
        client.get(
            f"/v1/promotions/{promo}/codes?batch={second['batch']}&limit=200", headers=owner_headers
        )
    )
    assert {c["code"] for c in page["items"]} <= set(second["codes"]) and len(page["items"]) == 200
    assert all(c["max_uses"] == 1 and c["uses"] == 0 for c in page["items"])
    (entry,) = [
        e for e in audit_entries(db, "promotion_codes.generated") if e.changes["count"] == 2000
    ]
    assert entry.changes["prefix"] == "VIP-" and "codes" not in entry.changes


def test_generated_codes_as_csv(client: TestClient, owner_headers: Headers, promo: int) -> None:
    response = client.post(
        f"/v1/promotions/{promo}/codes/generate?format=csv",
        json={"count": 25, "max_uses": None},
        headers=owner_headers,
    )
    assert response.status_code == 201
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == ["code"] and len({r[0] for r in rows[1:]}) == 25
    listed = ok(client.get(f"/v1/promotions/{promo}/codes", headers=owner_headers))["items"]
    assert {c["code"] for c in listed} == {r[0] for r in rows[1:]}
    assert all(c["max_uses"] is None for c in listed)


INVALID_GENERATION: list[tuple[dict[str, Any], str]] = [
    ({"count": 0}, "body.count"),
    ({"count": 10_001}, "body.count"),
    ({"count": 10, "prefix": "no spaces"}, "body.prefix"),
    ({"count": 10, "length": 5}, "body.length"),
    ({"count": 10_000, "length": 6}, "body.length"),
]


def test_invalid_generation_requests_are_422(
    client: TestClient, owner_headers: Headers, promo: int, db: Database
) -> None:
    url = f"/v1/promotions/{promo}/codes/generate"
    for body, field in INVALID_GENERATION:
        problem = assert_problem(client.post(url, json=body, headers=owner_headers), 422)
        assert problem["errors"][0]["field"] == field, (body, problem)
    assert count(db, PromotionCode) == 0


def test_personal_codes_belong_to_one_customer(
    client: TestClient, owner_headers: Headers, promo: int, world: World, db: Database
) -> None:
    owner = world.customers[0]
    url = f"/v1/promotions/{promo}/personal-codes"
    headers = {**owner_headers, "Idempotency-Key": "offer-1"}
    body = created(client.post(url, json={"customer_id": owner, "valid_days": 30}, headers=headers))
    again = client.post(url, json={"customer_id": owner, "valid_days": 30}, headers=headers)
    assert again.status_code == 201 and again.json() == body
    assert again.headers["idempotent-replayed"] == "true"
    assert body["customer_id"] == owner and body["max_uses"] == 1
    assert len(body["code"]) == service.PERSONAL_CODE_LENGTH
    listed = ok(
        client.get(f"/v1/promotions/{promo}/codes?customer_id={owner}", headers=owner_headers)
    )
    assert [c["code"] for c in listed["items"]] == [body["code"]]
    (event,) = outbox(db, "promotion.personal_code_issued")
    assert event.data["customer_id"] == owner and "code" not in event.data
    # The code works in any channel, for its owner only, once.
    result = evaluate(
        db,
        world.cart(),
        world.context(body["code"], customer_id=owner, channel_id=world.other_channel_id),
    )
    assert [a.code for a in result.applied] == [body["code"]]
    assert reasons(
        evaluate(db, world.cart(), world.context(body["code"], customer_id=world.customers[1]))
    ) == {body["code"]: "not-your-code"}
    assert checkout(db, world, "order-1", body["code"], customer=owner)
    used = ok(
        client.get(f"/v1/promotions/{promo}/codes?customer_id={owner}", headers=owner_headers)
    )
    assert used["items"][0]["uses"] == 1


def test_personal_code_requests_are_checked(
    client: TestClient,
    owner_headers: Headers,
    promo: int,
    world: World,
    make_promotion: Any,
    db: Database,
) -> None:
    url = f"/v1/promotions/{promo}/personal-codes"
    problem = assert_problem(
        client.post(url, json={"customer_id": 999_999}, headers=owner_headers), 422
    )
    assert problem["errors"][0]["field"] == "body.customer_id"
    both = {
        "customer_id": world.customers[0],
        "valid_days": 3,
        "expires_at": "2099-01-01T00:00:00Z",
    }
    problem = assert_problem(client.post(url, json=both, headers=owner_headers), 422)
    assert problem["errors"][0]["field"] == "body.valid_days"
    automatic = make_promotion(PERCENT_10)
    assert_problem(
        client.post(
            f"/v1/promotions/{automatic}/personal-codes",
            json={"customer_id": world.customers[0]},
            headers=owner_headers,
        ),
        409,
        "invalid-state",
    )
    assert count(db, PromotionCode) == 0


def test_a_personal_offer_from_a_template_promotion(
    db: Database, world: World, make_promotion: Any
) -> None:
    ends = utcnow() + timedelta(days=10)
    template = make_promotion(PERCENT_10, requires_code=True, ends_at=ends.isoformat())
    with db.transaction() as session:
        code = service.issue_personal_offer(session, ACTOR, template, world.customers[2], 30)
        row = service.code_by_value(session, code)
        # Never valid past the template's own end.
        assert row.expires_at == ends and row.customer_id == world.customers[2]
        with pytest.raises(ValidationProblem):
            service.issue_personal_offer(session, ACTOR, template, world.customers[2], 0)
    draft = make_promotion(PERCENT_10, requires_code=True, status="draft")
    with db.transaction() as session, pytest.raises(UnprocessableState):
        service.issue_personal_offer(session, ACTOR, draft, world.customers[2], 30)


def test_a_disabled_code_stops_applying(
    client: TestClient, owner_headers: Headers, promo: int, world: World, db: Database
) -> None:
    code = created(
        client.post(f"/v1/promotions/{promo}/codes", json={"code": "STOPME"}, headers=owner_headers)
    )
    assert evaluate(db, world.cart(), world.context("STOPME")).applied
    url = f"/v1/promotions/{promo}/codes/{code['id']}/disable"
    assert ok(client.post(url, headers=owner_headers))["disabled"] is True
    assert ok(client.post(url, headers=owner_headers))["disabled"] is True
    assert len(audit_entries(db, "promotion_code.disabled")) == 1
    assert reasons(evaluate(db, world.cart(), world.context("STOPME"))) == {"STOPME": "inactive"}
    assert_problem(
        client.post(
            f"/v1/promotions/{promo + 1}/codes/{code['id']}/disable", headers=owner_headers
        ),
        404,
    )
