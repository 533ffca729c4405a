"""The back office's sign-in, without a browser: the API's lockout, no open redirect after
signing in, the cookie's flags over HTTPS, the language from the browser."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient

from mercato.app import create_app
from mercato.db import Database
from mercato.settings import Settings
from mercato.web.session import safe_next
from tests.conftest import OWNER_EMAIL, PASSWORD


def _form_token(client: TestClient) -> str:
    page = client.get("/admin/login")
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found is not None
    return found.group(1)


def _sign_in(client: TestClient, password: str, next_url: str = "") -> Any:
    return client.post(
        "/admin/login",
        data={
            "email": OWNER_EMAIL,
            "password": password,
            "csrf_token": _form_token(client),
            "next": next_url,
        },
        follow_redirects=False,
    )


def test_the_form_locks_out_like_the_api(
    settings: Settings, db: Database, owner_headers: dict[str, str]
) -> None:
    strict = settings.model_copy(update={"login_max_failures": 3})
    with TestClient(create_app(strict, database=db)) as client:
        for _ in range(3):
            assert _sign_in(client, "wrong password").status_code == 401
        locked = _sign_in(client, PASSWORD)
        assert locked.status_code == 429
        assert "Too many failed attempts" in locked.text
        api = client.post("/v1/auth/login", json={"email": OWNER_EMAIL, "password": PASSWORD})
        assert api.status_code == 429


def test_after_signing_in_only_back_office_paths_are_followed(
    client: TestClient, owner_headers: dict[str, str]
) -> None:
    for target in ("https://evil.example/", "//evil.example/admin", "/v1/orders", "/admin\\x"):
        assert safe_next(target) == "/admin/"
    answer = _sign_in(client, PASSWORD, "//evil.example/")
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/admin/")
    assert _sign_in(client, PASSWORD, "/admin/account?tab=1").headers["location"] == (
        "/admin/account?tab=1"
    )


def test_the_session_cookie_is_secure_over_https(app: Any, owner_headers: dict[str, str]) -> None:
    with TestClient(app, base_url="https://testserver") as client:
        answer = _sign_in(client, PASSWORD)
    cookie = answer.headers["set-cookie"]
    assert "mercato_staff=" in cookie
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" in cookie
    with TestClient(app) as plain:
        assert "Secure" not in _sign_in(plain, PASSWORD).headers["set-cookie"]


def test_the_browser_language_is_used_until_the_user_picks_one(client: TestClient) -> None:
    page = client.get("/admin/login", headers={"Accept-Language": "ja-JP,ja;q=0.9,en;q=0.5"})
    assert '<html lang="ja">' in page.text and "サインイン" in page.text
    page = client.get("/admin/login", headers={"Accept-Language": "fr-FR,de;q=0.8"})
    assert '<html lang="de">' in page.text and "Anmelden" in page.text
    page = client.get("/admin/login", headers={"Accept-Language": "fr"})
    assert '<html lang="en">' in page.text


def test_an_expired_session_is_sent_to_sign_in_and_htmx_is_told_where(
    client: TestClient, owner_headers: dict[str, str]
) -> None:
    client.cookies.set("mercato_staff", "mst_not-a-real-token")
    answer = client.get("/admin/account", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/admin/login?next=%2Fadmin%2Faccount"
    partial = client.get("/admin/account", headers={"HX-Request": "true"})
    assert partial.status_code == 401
    assert partial.headers["HX-Redirect"].startswith("/admin/login?next=")
