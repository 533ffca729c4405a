"""Offer rules: selection from the order history of every channel, consent, one code per
customer per period (also under concurrent runs), dry runs, idempotent runs, bad input."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from mercato.auth.models import AuditEntry
from mercato.db import Database, utcnow
from mercato.errors import Conflict
from mercato.marketing import service
from mercato.marketing.models import Message, OfferClaim, OfferRule, RuleRun, RunResult
from mercato.marketing.service import ConsentChange, ConsentSource, Purpose, RuleDraft
from mercato.orders.state import OrderStatus
from mercato.promotions import service as promotions
from mercato.promotions.models import PromotionCode
from mercato.promotions.schemas import PromotionIn, PromotionPatch, PromotionStatus
from tests.conftest import assert_problem
from tests.helpers import outbox
from tests.marketing.conftest import ACTOR, Shop

pytestmark = pytest.mark.slow

S = OrderStatus


def consent(db: Database, shop: Shop, customer_id: int, granted: bool = True) -> None:
    with db.transaction() as session:
        service.record_consents(
            session,
            ACTOR,
            customer_id,
            [ConsentChange(Purpose.MARKETING_EMAIL, granted, "v1")],
            source=ConsentSource.CHANNEL,
            source_channel_id=shop.web,
        )


def make_rule(db: Database, shop: Shop, **fields: Any) -> int:
    values: dict[str, Any] = {
        "name": "Organic beans lovers",
        "category_id": shop.organic,
        "min_purchases": 3,
        "window_days": 30,
        "template_promotion_id": shop.template,
        "valid_days": 14,
    }
    values.update(fields)
    with db.transaction() as session:
        return int(service.create_rule(session, ACTOR, RuleDraft(**values)).id)


def count(db: Database, model: Any) -> int:
    with db.read() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def codes_of(db: Database, customer_id: int) -> list[PromotionCode]:
    with db.read() as session:
        rows = list(
            session.scalars(select(PromotionCode).where(PromotionCode.customer_id == customer_id))
        )
        session.expunge_all()  # keep the loaded values once the read transaction ends
        return rows


def regular(shop: Shop, place_order: Callable[..., int], customer: int, times: int = 3) -> None:
    """Organic beans bought ``times`` times: online, then in the store."""
    for n in range(times):
        place_order(customer, shop.web if n % 2 == 0 else shop.store, [shop.beans])


def test_purchases_count_placed_orders_with_a_line_in_the_category_in_any_channel(
    db: Database, shop: Shop, new_customer: Callable[..., int], place_order: Callable[..., int]
) -> None:
    aiko, ben = new_customer(), new_customer()
    place_order(aiko, shop.web, [shop.beans, shop.mug])
    place_order(aiko, shop.store, [shop.beans], S.CONFIRMED)
    place_order(aiko, shop.web, [shop.beans, shop.beans])  # one order, one purchase
    place_order(aiko, shop.store, [shop.ground])  # coffee, not organic
    place_order(aiko, shop.web, [shop.mug])
    for status in (S.CANCELLED, S.PAYMENT_FAILED, S.PENDING_PAYMENT):
        place_order(aiko, shop.web, [shop.beans], status)
    place_order(None, shop.web, [shop.beans])  # a guest
    place_order(ben, shop.store, [shop.ground])

    since = utcnow() - timedelta(days=1)
    with db.read() as session:
        organic = service.purchases_in_category(session, shop.organic, since)
        coffee = service.purchases_in_category(session, shop.coffee, since)
        later = service.purchases_in_category(session, shop.organic, utcnow() + timedelta(days=1))
    assert {c: p.orders for c, p in organic.items()} == {aiko: 3}
    assert organic[aiko].channel_ids == {shop.web, shop.store}
    # A parent category counts its subcategories' products too.
    assert {c: p.orders for c, p in coffee.items()} == {aiko: 4, ben: 1}
    assert later == {}


def test_dry_run_explains_and_run_issues_one_code_per_consenting_customer(
    db: Database,
    client: TestClient,
    owner_headers: dict[str, str],
    shop: Shop,
    new_customer: Callable[..., int],
    place_order: Callable[..., int],
) -> None:
    aiko, ben, chie, dan = (new_customer() for _ in range(4))
    for customer in (aiko, ben, dan):
        regular(shop, place_order, customer)
    regular(shop, place_order, chie, times=2)  # not often enough
    consent(db, shop, aiko)
    consent(db, shop, chie)
    consent(db, shop, dan)
    consent(db, shop, dan, granted=False)  # changed her mind

    created = client.post(
        "/v1/marketing/rules",
        headers=owner_headers,
        json={
            "name": "Organic beans lovers",
            "category_code": "organic",
            "min_purchases": 3,
            "window_days": 30,
            "template_promotion_id": shop.template,
            "valid_days": 14,
        },
    )
    assert created.status_code == 201, created.text
    rule = created.json()
    assert (rule["category_id"], rule["purpose"]) == (shop.organic, "marketing_email")

    preview = client.get(f"/v1/marketing/rules/{rule['id']}/dry-run", headers=owner_headers)
    assert preview.status_code == 200, preview.text
    assert preview.json()["ready"] is True
    assert [
        (c["customer_id"], c["outcome"], c["reason"], c["purchases"])
        for c in preview.json()["candidates"]
    ] == [
        (aiko, "issue", None, 3),
        (ben, "skipped", "no_consent", 3),
        (dan, "skipped", "no_consent", 3),
    ]
    assert count(db, RuleRun) == count(db, Message) == 0
    assert codes_of(db, aiko) == []

    url = f"/v1/marketing/rules/{rule['id']}/run"
    first = client.post(url, headers={**owner_headers, "Idempotency-Key": "run-1"})
    assert first.status_code == 201, first.text
    run = first.json()
    assert (run["matched"], run["issued"], run["skipped"], run["failed"]) == (3, 1, 2, 0)
    results = {r["customer_id"]: r for r in run["results"]}
    assert results[aiko]["outcome"] == "issued"
    assert results[aiko]["channel_ids"] == sorted([shop.web, shop.store])
    assert results[ben]["reason"] == results[dan]["reason"] == "no_consent"
    assert results[ben]["code_id"] is None and results[ben]["message_id"] is None

    [code] = codes_of(db, aiko)
    assert (code.id, code.max_uses, code.promotion_id) == (
        results[aiko]["code_id"],
        1,
        shop.template,
    )
    assert codes_of(db, ben) == codes_of(db, dan) == []

    # The same request again answers the first run; it issues nothing.
    replay = client.post(url, headers={**owner_headers, "Idempotency-Key": "run-1"})
    assert replay.status_code == 201 and replay.json() == run
    assert replay.headers["Idempotent-Replayed"] == "true"
    # A new run within the period skips her: she has her code.
    second = client.post(url, headers={**owner_headers, "Idempotency-Key": "run-2"})
    assert second.status_code == 201, second.text
    assert {r["customer_id"]: r["reason"] for r in second.json()["results"]}[aiko] == (
        "already_offered"
    )
    assert len(codes_of(db, aiko)) == 1
    assert count(db, Message) == 1

    [event] = outbox(db, "marketing.offer_issued")
    assert event.data["customer_id"] == aiko and event.data["code_id"] == code.id
    assert "code" not in event.data and code.code not in json.dumps(event.data)

    message = client.get(
        f"/v1/marketing/messages/{results[aiko]['message_id']}", headers=owner_headers
    )
    assert message.status_code == 200, message.text
    email = message.json()
    assert (email["customer_id"], email["locale"], email["status"]) == (aiko, "ja", "queued")
    assert email["purpose"] == "marketing_email" and email["recipient"] == shop.emails[aiko]
    assert code.code in email["body_text"] and code.code in email["body_html"]
    assert "10%オフ" in email["subject"]

    runs = client.get(f"/v1/marketing/rules/{rule['id']}/runs", headers=owner_headers).json()
    assert [r["issued"] for r in runs["items"]] == [0, 1]
    stored = client.get(f"/v1/marketing/runs/{run['id']}", headers=owner_headers).json()
    assert stored["results"] == run["results"]
    with db.read() as session:
        assert (
            session.scalars(
                select(AuditEntry.changes).where(AuditEntry.action == "marketing_rule.run")
            ).all()[0]["issued"]
            == 1
        )


def test_a_new_offer_only_after_the_rule_period(
    db: Database, shop: Shop, new_customer: Callable[..., int], place_order: Callable[..., int]
) -> None:
    aiko = new_customer()
    regular(shop, place_order, aiko)
    consent(db, shop, aiko)
    rule_id = make_rule(db, shop, window_days=30)
    start = utcnow() - timedelta(days=20)

    def run(at: Any) -> RuleRun:
        with db.transaction() as session:
            return service.run_rule(session, ACTOR, rule_id, now=at)

    assert run(start).issued == 1
    assert run(start + timedelta(days=29)).issued == 0
    assert run(start + timedelta(days=31)).issued == 1
    assert len(codes_of(db, aiko)) == 2


def test_running_a_rule_that_cannot_run_is_refused_and_writes_nothing(
    db: Database,
    client: TestClient,
    owner_headers: dict[str, str],
    shop: Shop,
    new_customer: Callable[..., int],
    place_order: Callable[..., int],
) -> None:
    aiko = new_customer()
    regular(shop, place_order, aiko)
    consent(db, shop, aiko)
    rule_id = make_rule(db, shop)
    with db.transaction() as session:
        promotions.update_promotion(
            session, ACTOR, shop.template, PromotionPatch(status=PromotionStatus.PAUSED)
        )
    events = len(outbox(db))
    problem = assert_problem(
        client.post(f"/v1/marketing/rules/{rule_id}/run", headers=owner_headers),
        409,
        "rule-not-runnable",
    )
    assert "paused" in problem["detail"]
    preview = client.get(f"/v1/marketing/rules/{rule_id}/dry-run", headers=owner_headers).json()
    assert preview["ready"] is False and preview["problems"] == problem["problems"]
    assert [c["outcome"] for c in preview["candidates"]] == ["issue"]
    assert count(db, RuleRun) == count(db, OfferClaim) == 0
    assert codes_of(db, aiko) == [] and len(outbox(db)) == events

    paused = client.patch(
        f"/v1/marketing/rules/{rule_id}", headers=owner_headers, json={"active": False}
    )
    assert paused.status_code == 200 and paused.json()["active"] is False
    with db.read() as session:
        assert service.preview_rule(session, rule_id).problems[0] == f"rule {rule_id} is not active"


def test_a_refused_code_fails_one_customer_and_leaves_her_slot_free(
    db: Database,
    shop: Shop,
    new_customer: Callable[..., int],
    place_order: Callable[..., int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    aiko, ben = new_customer(), new_customer()
    for customer in (aiko, ben):
        regular(shop, place_order, customer)
        consent(db, shop, customer)
    rule_id = make_rule(db, shop)
    issue = promotions.issue_personal_offer

    def refuse_ben(session: Any, actor: Any, template: int, customer: int, days: int) -> str:
        if customer == ben:
            raise Conflict("could not draw a code", code="code-space-full")
        return issue(session, actor, template, customer, days)

    monkeypatch.setattr(promotions, "issue_personal_offer", refuse_ben)
    with db.transaction() as session:
        run = service.run_rule(session, ACTOR, rule_id)
        results = {r.customer_id: r for r in service.run_results(session, run.id)}
    assert (run.issued, run.failed) == (1, 1)
    assert (results[ben].outcome, results[ben].reason) == ("failed", "error")
    assert results[ben].detail == "could not draw a code"
    with db.read() as session:
        claimed = set(session.scalars(select(OfferClaim.customer_id)))
    assert claimed == {aiko}  # ben's claim rolled back with his savepoint
    monkeypatch.setattr(promotions, "issue_personal_offer", issue)
    with db.transaction() as session:
        assert service.run_rule(session, ACTOR, rule_id).issued == 1
    assert len(codes_of(db, ben)) == 1 and len(codes_of(db, aiko)) == 1


def test_concurrent_runs_issue_each_customer_one_code(
    db: Database, shop: Shop, new_customer: Callable[..., int], place_order: Callable[..., int]
) -> None:
    people = [new_customer() for _ in range(4)]
    for customer in people:
        regular(shop, place_order, customer)
        consent(db, shop, customer)
    rule_id = make_rule(db, shop)

    def run(_: int) -> int:
        with db.transaction() as session:
            return service.run_rule(session, ACTOR, rule_id).issued

    with ThreadPoolExecutor(max_workers=6) as pool:
        issued = list(pool.map(run, range(6)))
    assert sum(issued) == len(people)
    assert [len(codes_of(db, c)) for c in people] == [1] * len(people)
    assert count(db, Message) == len(people)
    assert count(db, RunResult) == 6 * len(people)


def test_the_claim_is_one_conditional_upsert_only_one_racer_wins(
    db: Database, shop: Shop, new_customer: Callable[..., int]
) -> None:
    """Without the rule lock: many transactions claim the same slot at once."""
    customer = new_customer()
    rule_id = make_rule(db, shop)
    now = utcnow()

    def claim(n: int) -> bool:
        with db.transaction() as session:
            rule = session.get(OfferRule, rule_id)
            assert rule is not None
            return service._claim(session, rule, customer, n, now)

    with ThreadPoolExecutor(max_workers=8) as pool:
        won = list(pool.map(claim, range(16)))
    assert won.count(True) == 1
    # Once the period is over the slot can be taken again.
    with db.transaction() as session:
        rule = session.get(OfferRule, rule_id)
        assert rule is not None
        assert service._claim(session, rule, customer, 99, now + timedelta(days=31))


BAD_RULES: list[tuple[dict[str, Any], str, str]] = [
    ({"category_code": "no-such-category"}, "body.category_code", "unknown category"),
    ({"category_code": None, "category_id": 999999}, "body.category_id", "unknown category"),
    ({"category_id": 1}, "body.category_id", "either"),
    ({"category_code": None}, "body.category_id", "either"),
    ({"template_promotion_id": 999999}, "body.template_promotion_id", "unknown promotion"),
    ({"window_days": 0}, "body.window_days", "greater than or equal to 1"),
    ({"min_purchases": 1001}, "body.min_purchases", "less than or equal to 1000"),
    ({"valid_days": 400}, "body.valid_days", "less than or equal to 366"),
    ({"name": ""}, "body.name", "at least 1 character"),
    ({"purpose": "marketing_email"}, "body.purpose", "unknown field"),
]


def test_bad_rules_are_refused_naming_the_field(
    db: Database, shop: Shop, client: TestClient, owner_headers: dict[str, str]
) -> None:
    body: dict[str, Any] = {
        "name": "Rule",
        "category_code": "organic",
        "min_purchases": 2,
        "window_days": 30,
        "template_promotion_id": shop.template,
    }
    for change, field, reason in BAD_RULES:
        response = client.post(
            "/v1/marketing/rules", headers=owner_headers, json={**body, **change}
        )
        errors = {e["field"]: e["reason"] for e in assert_problem(response, 422)["errors"]}
        assert reason in errors.get(field, ""), (change, errors)
    assert count(db, OfferRule) == 0


def test_template_must_require_a_code_and_rules_are_guarded(
    db: Database,
    client: TestClient,
    owner_headers: dict[str, str],
    make_staff: Callable[..., dict[str, str]],
    shop: Shop,
) -> None:
    with db.transaction() as session:
        automatic = promotions.create_promotion(
            session,
            ACTOR,
            PromotionIn.model_validate(
                {
                    "name": "Auto",
                    "status": "active",
                    "action": {"type": "percent_off_order", "percent": "5"},
                }
            ),
        )
    body = {
        "name": "Rule",
        "category_id": shop.organic,
        "min_purchases": 2,
        "window_days": 30,
        "template_promotion_id": automatic.id,
    }
    problem = assert_problem(
        client.post("/v1/marketing/rules", headers=owner_headers, json=body), 422
    )
    assert problem["errors"][0]["field"] == "body.template_promotion_id"

    rule_id = make_rule(db, shop)
    patched = client.patch(
        f"/v1/marketing/rules/{rule_id}",
        headers=owner_headers,
        json={"min_purchases": 5, "category_code": "coffee"},
    )
    assert patched.status_code == 200, patched.text
    assert (patched.json()["min_purchases"], patched.json()["category_id"]) == (5, shop.coffee)
    bad = client.patch(f"/v1/marketing/rules/{rule_id}", headers=owner_headers, json={"name": None})
    assert assert_problem(bad, 422)["errors"][0]["field"] == "body.name"
    with db.read() as session:
        [entry] = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "marketing_rule.updated")
        ).all()
        assert entry.changes["min_purchases"] == {"from": 3, "to": 5}

    analyst = make_staff("analyst")
    assert client.get(f"/v1/marketing/rules/{rule_id}", headers=analyst).status_code == 200
    assert client.get(f"/v1/marketing/rules/{rule_id}/dry-run", headers=analyst).status_code == 200
    for method, path in (
        ("POST", f"/v1/marketing/rules/{rule_id}/run"),
        ("POST", "/v1/marketing/rules"),
    ):
        denied = assert_problem(client.request(method, path, headers=analyst, json=body), 403)
        assert denied["permission"] == "promotions:write"
    assert_problem(client.get("/v1/marketing/rules/999999", headers=owner_headers), 404)
    assert_problem(client.post("/v1/marketing/rules/999999/run", headers=owner_headers), 404)
