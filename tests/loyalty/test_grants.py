"""Points granted by hand are money: a permission, a reason and a limit per role."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from mercato.auth.models import AuditEntry
from mercato.auth.permissions import ROLE_PERMISSIONS, Permission, Role
from mercato.db import Database
from mercato.loyalty.grants import GRANT_LIMITS
from mercato.loyalty.models import Entry, GrantTally
from tests.conftest import assert_problem
from tests.helpers import make_location
from tests.loyalty.conftest import Loyal, assert_ledger_consistent, balance, programme

pytestmark = pytest.mark.slow

Headers = dict[str, str]


def _grant(
    client: TestClient,
    headers: Headers,
    customer: int,
    points: int,
    reason: str | None = "goodwill",
) -> Any:
    body: dict[str, Any] = {"points": points}
    if reason is not None:
        body["reason"] = reason
    return client.post(
        f"/v1/loyalty/accounts/{customer}/adjustments",
        headers={**headers, "Idempotency-Key": str(uuid.uuid4())},
        json=body,
    )


@pytest.fixture
def store(client: TestClient, owner_headers: Headers) -> int:
    """A store for the location-scoped roles."""
    return int(make_location(client, owner_headers, "STORE-1")["id"])


def _granted_by_hand(db: Database) -> int:
    with db.read() as session:
        total = session.scalar(
            select(func.sum(Entry.points)).where(Entry.kind == "adjust", Entry.points > 0)
        )
    return int(total or 0)


def test_a_support_agent_cannot_mint_points(
    client: TestClient, db: Database, make_staff: Callable[..., Headers], loyal: Loyal
) -> None:
    agent = make_staff(Role.SUPPORT_AGENT)
    refused = assert_problem(_grant(client, agent, loyal.hana, 100_000), 403, "loyalty-grant-limit")
    assert (refused["limit"], refused["max_points"], refused["role"]) == (
        "per_grant",
        1_000,
        "support_agent",
    )
    assert refused["errors"][0]["field"] == "body.points"
    assert balance(db, loyal.hana) == 0
    # Within the limit, with a reason: granted, and the reason is in the audit log.
    assert_problem(_grant(client, agent, loyal.hana, 500, reason=None), 422)
    assert_problem(_grant(client, agent, loyal.hana, 500, reason="   "), 422)
    granted = _grant(client, agent, loyal.hana, 500, reason="parcel arrived broken")
    assert granted.status_code == 201, granted.text
    assert balance(db, loyal.hana) == 500
    with db.read() as session:
        notes = session.scalars(
            select(AuditEntry.note).where(AuditEntry.action == "loyalty.points_adjusted")
        ).all()
    assert notes == ["parcel arrived broken"]


def test_granting_needs_the_grant_permission_taking_away_does_not(
    client: TestClient,
    db: Database,
    make_staff: Callable[..., Headers],
    loyal: Loyal,
    store: int,
) -> None:
    # customers:write without loyalty:grant (an associate works at a store)
    associate = make_staff(Role.STORE_ASSOCIATE, [store])
    denied = assert_problem(_grant(client, associate, loyal.hana, 10), 403, "forbidden")
    assert denied["permission"] == "loyalty:grant"
    owner_grant = _grant(client, make_staff(Role.OWNER), loyal.hana, 100_000, "migration")
    assert owner_grant.status_code == 201, owner_grant.text
    taken = _grant(client, associate, loyal.hana, -100, reason="double credited")
    assert taken.status_code == 201, taken.text
    assert balance(db, loyal.hana) == 99_900
    assert_problem(_grant(client, associate, loyal.hana, -100, reason=None), 422)
    analyst = make_staff(Role.ANALYST)
    assert assert_problem(_grant(client, analyst, loyal.hana, -1), 403)["permission"] == (
        "customers:write"
    )


def test_the_daily_limit_counts_every_grant_of_the_day(
    client: TestClient,
    db: Database,
    make_staff: Callable[..., Headers],
    loyal: Loyal,
    store: int,
) -> None:
    agent, other_agent = make_staff(Role.SUPPORT_AGENT), make_staff(Role.SUPPORT_AGENT)
    for customer in loyal.customers + loyal.customers[:2]:
        assert _grant(client, agent, customer, 1_000).status_code == 201
    refused = assert_problem(_grant(client, agent, loyal.hana, 1), 403, "loyalty-grant-limit")
    assert (refused["limit"], refused["max_points"], refused["remaining"]) == ("per_day", 5_000, 0)
    # A refused grant, or one that fails later, takes nothing of the day's allowance.
    assert_problem(_grant(client, other_agent, 999_999, 1_000), 404)
    for _ in range(5):
        assert _grant(client, other_agent, loyal.hana, 1_000).status_code == 201
    manager = make_staff(Role.STORE_MANAGER, [store])
    assert _grant(client, manager, loyal.hana, 10_000).status_code == 201
    assert_problem(_grant(client, manager, loyal.hana, 10_001), 403, "loyalty-grant-limit")
    assert _granted_by_hand(db) == 20_000


def test_concurrent_grants_never_pass_the_daily_limit(
    client: TestClient, db: Database, make_staff: Callable[..., Headers], loyal: Loyal
) -> None:
    agent = make_staff(Role.SUPPORT_AGENT)
    start = threading.Barrier(12)

    def grant(n: int) -> int:
        start.wait()
        customer = loyal.customers[n % len(loyal.customers)]
        return int(_grant(client, agent, customer, 1_000).status_code)

    with ThreadPoolExecutor(12) as pool:
        statuses = list(pool.map(grant, range(12)))
    assert sorted(statuses) == [201] * 5 + [403] * 7
    assert _granted_by_hand(db) == 5_000
    assert sum(balance(db, c) for c in loyal.customers) == 5_000
    with db.read() as session:
        assert session.scalar(select(func.sum(GrantTally.points))) == 5_000
    assert_ledger_consistent(db)


def test_only_pricing_and_promotion_roles_change_what_points_are_worth(
    client: TestClient, make_staff: Callable[..., Headers], loyal: Loyal
) -> None:
    agent = make_staff(Role.SUPPORT_AGENT)
    richer = programme(loyal.coffee_category)
    richer["currencies"] = [{**c, "point_value": "100"} for c in richer["currencies"]]
    denied = assert_problem(client.put("/v1/loyalty/programme", headers=agent, json=richer), 403)
    assert denied["permission"] == "pricing:write"
    campaign = {
        "name": "Everything x100",
        "starts_at": "2030-01-01T00:00:00Z",
        "ends_at": "2030-02-01T00:00:00Z",
        "multiplier": "100",
    }
    denied = assert_problem(client.post("/v1/loyalty/campaigns", headers=agent, json=campaign), 403)
    assert denied["permission"] == "promotions:write"


def test_every_role_that_may_grant_has_a_limit() -> None:
    for role, permissions in ROLE_PERMISSIONS.items():
        if Permission.LOYALTY_GRANT in permissions:
            assert role in GRANT_LIMITS, role
    for limit in GRANT_LIMITS.values():
        assert limit is None or 0 < limit.per_grant <= limit.per_day
