"""Brute-force protection: staff and customer sign-ins, channel keys (auth/throttle.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from mercato.app import create_app
from mercato.auth import service as auth_service
from mercato.auth import throttle
from mercato.auth.models import AuthThrottle
from mercato.auth.permissions import Role
from mercato.auth.principal import Principal
from mercato.db import Database, utcnow
from mercato.settings import Settings
from tests.conftest import OWNER_EMAIL, PASSWORD, assert_problem
from tests.helpers import channel_key, fast_password_hashing, make_channel
from tests.servers import api_processes

pytestmark = pytest.mark.slow

LOGIN = "/v1/auth/login"
ELSEWHERE = ("203.0.113.9", 4000)


class Clock:
    """The throttle's idea of now, moved by the test."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_password_hashing(monkeypatch)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path,
        dispatcher_enabled=False,
        login_max_failures=3,
        address_max_failures=8,
        lockout_seconds=60,
        lockout_max_seconds=240,
    )


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(throttle, "utcnow", clock)
    return clock


@pytest.fixture
def owner(db: Database) -> str:
    with db.transaction() as session:
        auth_service.bootstrap_owner(session, OWNER_EMAIL, "Olivia Owner", PASSWORD)
    return OWNER_EMAIL


def _login(client: TestClient, email: str, password: str) -> httpx.Response:
    return client.post(LOGIN, json={"email": email, "password": password})


def _refused(response: httpx.Response) -> int:
    """The Retry-After of a 429 problem."""
    body = assert_problem(response, 429, "too-many-attempts")
    retry_after = int(response.headers["Retry-After"])
    assert body["retry_after"] == retry_after
    return retry_after


def test_wrong_staff_passwords_lock_the_account_until_the_lockout_ends(
    client: TestClient, owner: str, clock: Clock
) -> None:
    for _ in range(3):
        assert_problem(_login(client, owner, "not the password"), 401, "invalid-credentials")
    assert _refused(_login(client, owner, "not the password")) == 60
    # The right password does not get through a lockout either.
    assert _refused(_login(client, owner, PASSWORD)) == 60

    clock.advance(61)
    assert _login(client, owner, PASSWORD).status_code == 200
    # A correct password starts the account afresh: three more tries, then a first lockout.
    for _ in range(3):
        assert_problem(_login(client, owner, "not the password"), 401)
    assert _refused(_login(client, owner, PASSWORD)) == 60


def test_lockouts_double_up_to_the_cap_and_a_quiet_day_forgets_them(
    app: Any, owner: str, clock: Clock
) -> None:
    lockouts = []
    for n in range(5):
        # Each round from another address: the account's lockout is what is measured.
        with TestClient(app, client=(f"198.51.100.{n}", 4000)) as client:
            for _ in range(3):
                assert_problem(_login(client, owner, "wrong"), 401)
            lockouts.append(_refused(_login(client, owner, "wrong")))
        clock.advance(lockouts[-1] + 1 if n < 3 else 24 * 3600)
    assert lockouts == [60, 120, 240, 240, 60]


def test_unknown_accounts_are_counted_like_real_ones(client: TestClient, clock: Clock) -> None:
    """Otherwise the 429 would tell which emails have an account."""
    for _ in range(3):
        assert_problem(_login(client, "nobody@example.com", "wrong"), 401)
    _refused(_login(client, "nobody@example.com", "wrong"))


def test_success_resets_the_account_but_failures_below_the_limit_add_up(
    client: TestClient, owner: str, clock: Clock
) -> None:
    for _ in range(2):
        assert_problem(_login(client, owner, "wrong"), 401)
    assert _login(client, owner, PASSWORD).status_code == 200
    for _ in range(3):
        assert_problem(_login(client, owner, "wrong"), 401)
    _refused(_login(client, owner, "wrong"))


def test_failures_are_forgotten_after_a_quiet_quarter_hour(
    client: TestClient, owner: str, clock: Clock
) -> None:
    for _ in range(3):
        assert_problem(_login(client, owner, "wrong"), 401)
    clock.advance(15 * 60)
    assert _login(client, owner, PASSWORD).status_code == 200


def test_one_address_trying_many_accounts_is_locked_out(
    app: Any, client: TestClient, owner: str, clock: Clock
) -> None:
    for n in range(8):
        assert_problem(_login(client, f"guess{n}@example.com", "password1"), 401)
    # Any account from that address, even with the right password...
    assert _refused(_login(client, owner, PASSWORD)) == 60
    # ...but the owner signing in from elsewhere is not locked out.
    with TestClient(app, client=ELSEWHERE) as elsewhere:
        assert _login(elsewhere, owner, PASSWORD).status_code == 200
    clock.advance(61)
    assert _login(client, owner, PASSWORD).status_code == 200


def test_own_successful_sign_ins_do_not_hide_guesses_from_the_same_address(
    client: TestClient, owner: str, clock: Clock
) -> None:
    for n in range(8):
        assert_problem(_login(client, f"guess{n}@example.com", "password1"), 401)
        if n < 7:
            assert _login(client, owner, PASSWORD).status_code == 200
    _refused(_login(client, "guess9@example.com", "password1"))


def test_counts_are_kept_under_keyed_hashes(
    db: Database, client: TestClient, owner: str, clock: Clock
) -> None:
    assert_problem(_login(client, owner, "wrong"), 401)
    with db.read() as session:
        rows = session.execute(select(AuthThrottle.scope, AuthThrottle.key_hash)).all()
    assert {scope for scope, _ in rows} == {"staff-account", "staff-address"}
    for _, key_hash in rows:
        assert len(key_hash) == 64 and "example" not in key_hash and "testclient" not in key_hash


def test_old_counts_are_pruned(db: Database, client: TestClient, owner: str) -> None:
    assert_problem(_login(client, owner, "wrong"), 401)
    with db.transaction() as session:
        assert throttle.prune(session) == 0
        session.execute(update(AuthThrottle).values(last_failure_at=utcnow() - timedelta(days=2)))
    with db.transaction() as session:
        assert throttle.prune(session) == 2


# --- concurrency --------------------------------------------------------------------------


@pytest.fixture
def counted_checks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every password check the staff sign-in makes."""
    calls: list[int] = []
    real = auth_service.verify_password

    def counting(stored: str | None, password: str) -> bool:
        calls.append(1)
        return real(stored, password)

    monkeypatch.setattr(auth_service, "verify_password", counting)
    return calls


@pytest.fixture
def second_app(settings: Settings, db: Database) -> Iterator[TestClient]:
    """Another API process on the same database: its own engine and connections."""
    other = Database(db.url)
    try:
        with TestClient(create_app(settings, database=other)) as client:
            yield client
    finally:
        other.dispose()


def test_concurrent_wrong_passwords_cannot_exceed_the_limit(
    client: TestClient, second_app: TestClient, owner: str, counted_checks: list[int]
) -> None:
    start = threading.Barrier(16)

    def attempt(n: int) -> int:
        start.wait()
        return _login((client, second_app)[n % 2], owner, f"wrong {n}").status_code

    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(attempt, range(16)))
    assert sorted(statuses) == [401] * 3 + [429] * 13
    assert len(counted_checks) == 3


def test_two_api_processes_share_the_lockout(db: Database, tmp_path: Path) -> None:
    """Separate uvicorn processes (default limits: 5 failures per account)."""
    with db.transaction() as session:
        auth_service.create_user(
            session,
            Principal.system("tests"),
            email="clerk@example.com",
            name="Clerk",
            password=PASSWORD,
            role=Role.SUPPORT_AGENT,
        )
    url = db.engine.url.render_as_string(hide_password=False).replace("+psycopg", "")
    with api_processes(url, 2, tmp_path) as urls:
        start = threading.Barrier(12)

        def attempt(n: int) -> int:
            with httpx.Client(base_url=urls[n % 2], timeout=60) as http:
                start.wait()
                body = {"email": "clerk@example.com", "password": f"wrong {n}"}
                return http.post(LOGIN, json=body).status_code

        with ThreadPoolExecutor(12) as pool:
            statuses = list(pool.map(attempt, range(12)))
        assert sorted(statuses) == [401] * 5 + [429] * 7
        for base in urls:
            with httpx.Client(base_url=base, timeout=60) as http:
                right = http.post(LOGIN, json={"email": "clerk@example.com", "password": PASSWORD})
                assert right.status_code == 429 and int(right.headers["Retry-After"]) > 0


# --- customers and channel keys ------------------------------------------------------------


@pytest.fixture
def store(client: TestClient, owner: str) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {_login(client, owner, PASSWORD).json()['token']}"}
    channel = make_channel(client, headers, "web-de")
    return {"X-Channel-Key": channel_key(client, headers, channel["id"])}


def _customer_login(client: TestClient, store: dict[str, str], password: str) -> httpx.Response:
    body = {"email": "hana@example.com", "password": password}
    return client.post("/v1/store/customers/login", json=body, headers=store)


def test_wrong_customer_passwords_lock_the_account(
    client: TestClient, store: dict[str, str], clock: Clock
) -> None:
    registered = client.post(
        "/v1/store/customers",
        json={"email": "hana@example.com", "password": PASSWORD},
        headers=store,
    )
    assert registered.status_code == 201, registered.text
    for _ in range(3):
        assert_problem(_customer_login(client, store, "wrong"), 401, "invalid-credentials")
    assert _refused(_customer_login(client, store, PASSWORD)) == 60
    clock.advance(61)
    assert _customer_login(client, store, PASSWORD).status_code == 200


def test_guessing_channel_keys_locks_the_address_out(
    app: Any, client: TestClient, store: dict[str, str], clock: Clock
) -> None:
    products = "/v1/store/products"
    for n in range(8):
        wrong = client.get(products, headers={"X-Channel-Key": f"mck_guess{n}"})
        assert_problem(wrong, 401, "invalid-channel-key")
    # Locked: a right key from this address is refused too (else a lucky guess would show).
    assert _refused(client.get(products, headers=store)) == 60
    assert _refused(client.post("/v1/store/carts", json={}, headers=store)) == 60
    with TestClient(app, client=ELSEWHERE) as elsewhere:
        assert elsewhere.get(products, headers=store).status_code == 200
    clock.advance(61)
    assert client.get(products, headers=store).status_code == 200


def test_a_missing_channel_key_is_not_a_guess(
    client: TestClient, store: dict[str, str], clock: Clock
) -> None:
    for _ in range(10):
        assert_problem(client.get("/v1/store/products"), 401, "missing-channel-key")
    assert client.get("/v1/store/products", headers=store).status_code == 200

