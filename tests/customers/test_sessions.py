"""Customer sessions: short-lived access tokens, rotating refresh tokens with reuse
detection, sign-out, and a password change that ends the other sessions."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from mercato.customers.models import CustomerRefreshToken, CustomerToken
from mercato.db import utcnow
from tests.conftest import assert_problem
from tests.customers.conftest import Shop, register
from tests.helpers import ok

PASSWORD = "a long enough secret"
EMAIL = "hana@example.com"


@pytest.fixture
def account(shop: Shop) -> dict[str, Any]:
    return register(shop, EMAIL)


def _login(shop: Shop, password: str = PASSWORD) -> httpx.Response:
    body = {"email": EMAIL, "password": password}
    return shop.client.post("/v1/store/customers/login", json=body, headers=shop.store())


def _session(shop: Shop) -> dict[str, Any]:
    body: dict[str, Any] = ok(_login(shop))
    return body


def _me(shop: Shop, access_token: str) -> httpx.Response:
    return shop.client.get("/v1/store/customers/me", headers=shop.store(access_token))


def _refresh(shop: Shop, refresh_token: str, key: str | None = None) -> httpx.Response:
    headers = {**shop.store(), **({"Idempotency-Key": key} if key else {})}
    return shop.client.post(
        "/v1/store/customers/token", json={"refresh_token": refresh_token}, headers=headers
    )


def _change_password(
    shop: Shop, access_token: str, current: str, new: str, key: str | None = None
) -> httpx.Response:
    headers = {**shop.store(access_token), **({"Idempotency-Key": key} if key else {})}
    return shop.client.post(
        "/v1/store/customers/me/password",
        json={"current_password": current, "new_password": new},
        headers=headers,
    )


def _around(moment: str, expected: datetime) -> bool:
    return abs(datetime.fromisoformat(moment) - expected) < timedelta(minutes=1)


def test_sign_in_gives_a_short_lived_access_token_and_a_refresh_token(
    shop: Shop, account: dict[str, Any]
) -> None:
    for issued in (account, _session(shop)):
        assert issued["token"].startswith("mct_") and issued["refresh_token"].startswith("mcr_")
        assert _around(issued["expires_at"], utcnow() + timedelta(minutes=15))
        assert _around(issued["refresh_expires_at"], utcnow() + timedelta(days=30))
        assert ok(_me(shop, issued["token"]))["email"] == EMAIL


def test_an_expired_access_token_is_refused_and_the_refresh_token_renews_it(
    shop: Shop, account: dict[str, Any]
) -> None:
    with shop.db.transaction() as session:
        session.execute(update(CustomerToken).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert_problem(_me(shop, account["token"]), 401, "invalid-customer-token")
    renewed = ok(_refresh(shop, account["refresh_token"]))
    assert renewed["customer"]["id"] == account["customer"]["id"]
    assert renewed["refresh_token"] != account["refresh_token"]
    assert ok(_me(shop, renewed["token"]))["email"] == EMAIL


def test_an_expired_or_unknown_refresh_token_is_refused(
    shop: Shop, account: dict[str, Any]
) -> None:
    assert_problem(_refresh(shop, "mcr_made-up"), 401, "invalid-refresh-token")
    with shop.db.transaction() as session:
        session.execute(
            update(CustomerRefreshToken).values(expires_at=utcnow() - timedelta(seconds=1))
        )
    assert_problem(_refresh(shop, account["refresh_token"]), 401, "invalid-refresh-token")


def test_a_reused_refresh_token_ends_the_whole_session(
    shop: Shop, account: dict[str, Any]
) -> None:
    other = _session(shop)
    first = account
    second = ok(_refresh(shop, first["refresh_token"]))
    third = ok(_refresh(shop, second["refresh_token"]))
    # The first refresh token again: someone else holds a copy.
    assert_problem(_refresh(shop, first["refresh_token"]), 401, "refresh-token-reused")
    for issued in (first, second, third):
        assert_problem(_me(shop, issued["token"]), 401, "invalid-customer-token")
    assert_problem(_refresh(shop, third["refresh_token"]), 401, "invalid-refresh-token")
    # Another sign-in of the same customer is another session.
    assert ok(_me(shop, other["token"]))["email"] == EMAIL
    assert ok(_refresh(shop, other["refresh_token"]))


def test_concurrent_refreshes_with_one_token_let_at_most_one_through(
    shop: Shop, account: dict[str, Any]
) -> None:
    start = threading.Barrier(8)

    def refresh(_: int) -> httpx.Response:
        start.wait()
        return _refresh(shop, account["refresh_token"])

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(refresh, range(8)))
    winners = [a for a in answers if a.status_code == 200]
    assert len(winners) == 1
    losers = [assert_problem(a, 401)["code"] for a in answers if a.status_code != 200]
    # The first loser notices the reuse and ends the session; later ones find it ended.
    assert "refresh-token-reused" in losers
    assert set(losers) <= {"refresh-token-reused", "invalid-refresh-token"}
    # The copies were noticed: the winner's tokens end with the session.
    assert_problem(_me(shop, winners[0].json()["token"]), 401)


def test_a_refresh_retried_with_its_idempotency_key_gets_the_first_answer(
    shop: Shop, account: dict[str, Any]
) -> None:
    """A storefront that lost the answer retries: no reuse, the session goes on."""
    first = _refresh(shop, account["refresh_token"], key="renew-1")
    again = _refresh(shop, account["refresh_token"], key="renew-1")
    assert ok(again) == ok(first) and again.headers["Idempotent-Replayed"] == "true"
    assert ok(_me(shop, again.json()["token"]))
    assert ok(_refresh(shop, again.json()["refresh_token"]))
    # Without the key, or with another one, it is a reuse.
    assert_problem(_refresh(shop, account["refresh_token"], key="renew-2"), 401)


def test_a_refused_refresh_is_judged_afresh_on_retry(shop: Shop, account: dict[str, Any]) -> None:
    assert_problem(_refresh(shop, "mcr_made-up", key="k"), 401, "invalid-refresh-token")
    assert_problem(_refresh(shop, "mcr_made-up", key="k"), 401, "invalid-refresh-token")


def test_logout_ends_this_session_only(shop: Shop, account: dict[str, Any]) -> None:
    other = _session(shop)
    response = shop.client.post(
        "/v1/store/customers/logout", headers=shop.store(account["token"])
    )
    assert response.status_code == 204, response.text
    assert_problem(_me(shop, account["token"]), 401, "invalid-customer-token")
    assert_problem(_refresh(shop, account["refresh_token"]), 401, "invalid-refresh-token")
    assert ok(_me(shop, other["token"]))["email"] == EMAIL
    assert_problem(
        shop.client.post("/v1/store/customers/logout", headers=shop.store()),
        401,
        "missing-customer-token",
    )
    assert_problem(
        shop.client.post("/v1/store/customers/logout", headers=shop.store("mct_made-up")),
        401,
        "invalid-customer-token",
    )


def test_logout_is_safe_to_repeat_and_works_once_the_access_token_expired(
    shop: Shop, account: dict[str, Any]
) -> None:
    logout = "/v1/store/customers/logout"
    with shop.db.transaction() as session:
        session.execute(update(CustomerToken).values(expires_at=utcnow() - timedelta(seconds=1)))
    for _ in range(2):
        assert shop.client.post(logout, headers=shop.store(account["token"])).status_code == 204
    assert_problem(_refresh(shop, account["refresh_token"]), 401, "invalid-refresh-token")


def test_a_password_change_ends_every_other_session(
    shop: Shop, account: dict[str, Any]
) -> None:
    other = _session(shop)
    renewed_other = ok(_refresh(shop, other["refresh_token"]))
    response = _change_password(shop, account["token"], PASSWORD, "a brand new secret")
    assert response.status_code == 204, response.text

    for issued in (other, renewed_other):
        assert_problem(_me(shop, issued["token"]), 401, "invalid-customer-token")
        assert_problem(_refresh(shop, issued["refresh_token"]), 401)
    # This session goes on, refresh included.
    assert ok(_me(shop, account["token"]))["email"] == EMAIL
    assert ok(_refresh(shop, account["refresh_token"]))

    assert_problem(_login(shop), 401, "invalid-credentials")
    assert ok(_login(shop, "a brand new secret"))


@pytest.mark.slow
def test_a_password_change_retried_with_its_idempotency_key_gets_the_same_answer(
    shop: Shop, account: dict[str, Any]
) -> None:
    token, new = account["token"], "a brand new secret"
    assert _change_password(shop, token, PASSWORD, new, key="pw-1").status_code == 204
    again = _change_password(shop, token, PASSWORD, new, key="pw-1")
    assert again.status_code == 204 and again.headers["Idempotent-Replayed"] == "true"
    assert_problem(
        _change_password(shop, token, PASSWORD, "yet another secret", key="pw-1"),
        422,
        "idempotency-key-reused",
    )
    # Without the key a repeat is a new change, whose current password is now wrong.
    assert_problem(_change_password(shop, token, PASSWORD, new), 422)
    assert ok(_login(shop, new))


def test_a_wrong_current_password_changes_nothing_and_counts_as_a_failed_sign_in(
    shop: Shop, account: dict[str, Any]
) -> None:
    other = _session(shop)
    for _ in range(5):
        problem = assert_problem(
            _change_password(shop, account["token"], "a guess at it", "a brand new secret"), 422
        )
        assert [e["field"] for e in problem["errors"]] == ["body.current_password"]
    assert ok(_me(shop, other["token"]))
    # The stolen-token guesser is throttled like any sign-in.
    refused = _change_password(shop, account["token"], PASSWORD, "a brand new secret")
    assert_problem(refused, 429, "too-many-attempts")
    assert int(refused.headers["Retry-After"]) > 0
    assert_problem(_login(shop), 429, "too-many-attempts")


def test_the_new_password_must_be_new_and_valid(shop: Shop, account: dict[str, Any]) -> None:
    for new, reason in ((PASSWORD, "must differ"), ("short", "at least 8")):
        problem = assert_problem(_change_password(shop, account["token"], PASSWORD, new), 422)
        assert [e["field"] for e in problem["errors"]] == ["body.new_password"]
        assert reason in problem["errors"][0]["reason"]
    assert_problem(
        _change_password(shop, "mct_made-up", PASSWORD, "a brand new secret"),
        401,
        "invalid-customer-token",
    )
