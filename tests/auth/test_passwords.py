"""A staff password change or reset ends the user's other sessions and tokens."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from mercato.auth.permissions import Role
from mercato.db import Database
from tests.conftest import PASSWORD, assert_problem, login
from tests.helpers import audit_entries, created, fast_password_hashing, ok

Headers = dict[str, str]
NEW_PASSWORD = "another long password"


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_password_hashing(monkeypatch)


@pytest.fixture
def clerk(make_staff: Callable[..., Headers], client: TestClient) -> tuple[int, str]:
    headers = make_staff(Role.SUPPORT_AGENT)
    me = ok(client.get("/v1/auth/me", headers=headers))["user"]
    return int(me["id"]), str(me["email"])


def _me(client: TestClient, headers: Headers) -> httpx.Response:
    return client.get("/v1/auth/me", headers=headers)


def _change(
    client: TestClient, headers: Headers, current: str, new: str, key: str | None = None
) -> httpx.Response:
    body = {"current_password": current, "new_password": new}
    headers = {**headers, **({"Idempotency-Key": key} if key else {})}
    return client.post("/v1/auth/password", json=body, headers=headers)


def test_a_reset_by_an_admin_ends_every_session_and_token_of_the_user(
    client: TestClient, db: Database, owner_headers: Headers, clerk: tuple[int, str]
) -> None:
    user_id, email = clerk
    sessions = [login(client, email), login(client, email)]
    api_token = created(
        client.post(f"/v1/staff/{user_id}/api-tokens", json={"name": "n"}, headers=owner_headers)
    )["token"]
    patched = client.patch(
        f"/v1/staff/{user_id}", json={"password": NEW_PASSWORD}, headers=owner_headers
    )
    assert patched.status_code == 200, patched.text
    for headers in [*sessions, {"Authorization": f"Bearer {api_token}"}]:
        assert_problem(_me(client, headers), 401, "invalid-token")
    assert ok(_me(client, owner_headers))  # the admin's own session is not the user's
    assert_problem(client.post("/v1/auth/login", json={"email": email, "password": PASSWORD}), 401)
    assert ok(_me(client, login(client, email, NEW_PASSWORD)))
    [entry] = [e for e in audit_entries(db, "staff.updated") if e.entity_id == str(user_id)]
    # Three sign-ins (one made by the fixture) and the API token.
    assert entry.changes == {"password": "changed", "sessions_ended": 4}


def test_resetting_ones_own_password_keeps_the_session_making_the_change(
    client: TestClient, owner_headers: Headers
) -> None:
    me = ok(_me(client, owner_headers))["user"]
    elsewhere = login(client, me["email"])
    patched = client.patch(
        f"/v1/staff/{me['id']}", json={"password": NEW_PASSWORD}, headers=owner_headers
    )
    assert patched.status_code == 200, patched.text
    assert ok(_me(client, owner_headers))
    assert_problem(_me(client, elsewhere), 401, "invalid-token")


def test_changing_ones_own_password_ends_the_other_sessions(
    client: TestClient, db: Database, clerk: tuple[int, str]
) -> None:
    user_id, email = clerk
    here, there = login(client, email), login(client, email)
    assert _change(client, here, PASSWORD, NEW_PASSWORD).status_code == 204
    assert ok(_me(client, here))["user"]["email"] == email
    assert_problem(_me(client, there), 401, "invalid-token")
    assert_problem(client.post("/v1/auth/login", json={"email": email, "password": PASSWORD}), 401)
    assert ok(_me(client, login(client, email, NEW_PASSWORD)))
    [changed] = audit_entries(db, "staff.password_changed")
    assert changed.entity_id == str(user_id)
    assert changed.changes == {"password": "changed", "sessions_ended": 2}  # and the fixture's


def test_a_change_retried_with_its_idempotency_key_gets_the_same_answer(
    client: TestClient, db: Database, clerk: tuple[int, str]
) -> None:
    _, email = clerk
    here = login(client, email)
    assert _change(client, here, PASSWORD, NEW_PASSWORD, key="pw-1").status_code == 204
    again = _change(client, here, PASSWORD, NEW_PASSWORD, key="pw-1")
    assert again.status_code == 204 and again.headers["Idempotent-Replayed"] == "true"
    assert len(audit_entries(db, "staff.password_changed")) == 1
    # The stored fingerprint is keyed: it cannot be used to test password guesses.
    with db.read() as session:
        stored = session.execute(text("SELECT request_hash FROM idempotency_keys")).scalar_one()
    plain = hashlib.sha256((PASSWORD + NEW_PASSWORD).encode()).hexdigest()
    assert stored != plain and PASSWORD not in stored


@pytest.mark.slow
def test_a_wrong_current_password_changes_nothing_and_is_throttled(
    client: TestClient, clerk: tuple[int, str]
) -> None:
    _, email = clerk
    here, there = login(client, email), login(client, email)
    for _ in range(5):
        problem = assert_problem(_change(client, here, "a guess at it", NEW_PASSWORD), 422)
        assert [e["field"] for e in problem["errors"]] == ["body.current_password"]
    assert ok(_me(client, there))
    refused = _change(client, here, PASSWORD, NEW_PASSWORD)
    assert_problem(refused, 429, "too-many-attempts")
    assert int(refused.headers["Retry-After"]) > 0


def test_the_new_password_must_be_new_long_enough_and_the_caller_signed_in(
    client: TestClient, clerk: tuple[int, str]
) -> None:
    _, email = clerk
    here = login(client, email)
    for new, reason in ((PASSWORD, "must differ"), ("short", "at least 10")):
        problem = assert_problem(_change(client, here, PASSWORD, new), 422)
        assert [e["field"] for e in problem["errors"]] == ["body.new_password"]
        assert reason in problem["errors"][0]["reason"]
    assert_problem(_change(client, {}, PASSWORD, NEW_PASSWORD), 401, "missing-token")
