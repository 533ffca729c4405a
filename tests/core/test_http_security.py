"""Request body limits, security headers and trusted proxies (http_security.py)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import Message, Receive, Scope, Send

from mercato.app import create_app
from mercato.catalog.models import Category
from mercato.db import Database
from mercato.http_security import BodySizeLimit
from mercato.settings import Settings
from tests.conftest import assert_problem
from tests.helpers import channel_key, count, make_channel

pytestmark = pytest.mark.slow

KIB = 1024
Headers = dict[str, str]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path,
        dispatcher_enabled=False,
        max_body_bytes=64 * KIB,
        max_import_bytes=256 * KIB,
    )


def _category(size: int) -> bytes:
    """A valid category body of about ``size`` bytes."""
    return b'{"code": "big", "name": "Big",' + b" " * size + b'"position": 1}'


# --- body limits --------------------------------------------------------------------------


def test_a_body_over_the_limit_is_413_and_changes_nothing(
    client: TestClient, db: Database, owner_headers: Headers
) -> None:
    headers = {**owner_headers, "content-type": "application/json"}
    response = client.post("/v1/categories", content=_category(65 * KIB), headers=headers)
    problem = assert_problem(response, 413, "payload-too-large")
    assert str(64 * KIB) in problem["detail"]
    assert response.headers["connection"] == "close"
    assert count(db, Category) == 0
    # Just under the limit is fine.
    small = _category(60 * KIB).replace(b"big", b"small", 1)
    assert client.post("/v1/categories", content=small, headers=headers).status_code == 201


def test_a_body_without_a_length_is_cut_off_at_the_limit(
    client: TestClient, db: Database, owner_headers: Headers
) -> None:
    body = _category(200 * KIB)
    chunks = (body[i : i + 16 * KIB] for i in range(0, len(body), 16 * KIB))
    headers = {**owner_headers, "content-type": "application/json"}
    response = client.post("/v1/categories", content=chunks, headers=headers)
    assert "content-length" not in response.request.headers
    assert_problem(response, 413, "payload-too-large")
    assert count(db, Category) == 0


def _run(app: Any, declared: int | None, chunks: list[bytes]) -> tuple[list[Message], int]:
    """One request straight through ASGI: the messages sent back and how many body chunks
    the application asked for."""
    headers = [(b"content-type", b"application/octet-stream")]
    if declared is not None:
        headers.append((b"content-length", str(declared).encode()))
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/echo",
        "raw_path": b"/echo",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }
    pending = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]
    asked = 0

    async def receive() -> Message:
        nonlocal asked
        asked += 1
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent, asked


async def _echo(scope: Scope, receive: Receive, send: Send) -> None:
    body = await Request(scope, receive).body()
    await JSONResponse({"length": len(body)})(scope, receive, send)


@pytest.mark.parametrize("declared", [None, 10], ids=["no length", "false length"])
def test_the_limit_counts_bytes_as_they_arrive(declared: int | None) -> None:
    """A missing or false Content-Length does not get a large body read whole."""
    limited = BodySizeLimit(_echo, limit=100 * KIB, larger={})
    sent, asked = _run(limited, declared, [b"x" * (40 * KIB)] * 10)
    assert sent[0]["status"] == 413
    assert b"payload-too-large" in sent[1]["body"]
    assert asked == 3  # the third chunk passes the limit; the rest are never read

    sent, _ = _run(limited, declared, [b"x" * (40 * KIB)] * 2)
    assert sent[0]["status"] == 200 and sent[1]["body"] == b'{"length":81920}'


def test_catalog_imports_have_a_larger_limit(client: TestClient, owner_headers: Headers) -> None:
    url = "/v1/catalog/import?format=json&dry_run=true"
    headers = {**owner_headers, "content-type": "application/json"}
    padded = b"[" + b" " * (200 * KIB) + b"]"
    response = client.post(url, content=padded, headers=headers)
    assert response.status_code == 200, response.text
    too_big = b"[" + b" " * (300 * KIB) + b"]"
    assert_problem(client.post(url, content=too_big, headers=headers), 413, "payload-too-large")


# --- headers ------------------------------------------------------------------------------


def _assert_basic_headers(headers: Any) -> None:
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in headers["content-security-policy"]


def test_api_answers_carry_the_security_headers(client: TestClient) -> None:
    for response in (client.get("/health"), client.get("/v1/auth/me"), client.get("/nowhere")):
        _assert_basic_headers(response.headers)
        assert response.headers["content-security-policy"] == (
            "default-src 'none'; frame-ancestors 'none'"
        )
        assert "strict-transport-security" not in response.headers


def test_answers_to_requests_with_credentials_are_never_stored(
    client: TestClient, owner_headers: Headers
) -> None:
    channel = make_channel(client, owner_headers, "web")
    store = {"X-Channel-Key": channel_key(client, owner_headers, channel["id"])}
    private = [
        client.get("/v1/auth/me", headers=owner_headers),
        client.get("/v1/auth/me", headers={"Authorization": "Bearer wrong"}),
        client.get("/v1/store/products", headers=store),
        client.post("/v1/auth/login", json={"email": "a@example.com", "password": "x"}),
    ]
    for response in private:
        assert response.headers["cache-control"] == "no-store", response.request.url
    assert "cache-control" not in client.get("/health").headers


def test_the_docs_page_runs_only_its_own_scripts(client: TestClient) -> None:
    response = client.get("/docs")
    assert response.status_code == 200
    _assert_basic_headers(response.headers)
    policy = response.headers["content-security-policy"]
    script_src = re.search(r"script-src ([^;]*)", policy)
    assert script_src is not None and "unsafe-inline" not in script_src[1]
    [inline] = re.findall(r"<script>(.*?)</script>", response.text, re.DOTALL)
    digest = base64.b64encode(hashlib.sha256(inline.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in script_src[1]
    assert "default-src 'self'" in policy and "object-src 'none'" in policy


@pytest.fixture
def https_client(app: Any) -> Iterator[TestClient]:
    with TestClient(app, base_url="https://testserver") as client:
        yield client


def test_hsts_only_over_https(client: TestClient, https_client: TestClient) -> None:
    assert https_client.get("/health").headers["strict-transport-security"] == "max-age=31536000"
    forwarded = client.get("/health", headers={"X-Forwarded-Proto": "https"})
    assert "strict-transport-security" not in forwarded.headers  # no proxy is trusted


@pytest.fixture
def behind_proxy(tmp_path: Path, db: Database) -> Iterator[TestClient]:
    settings = Settings(
        data_dir=tmp_path, dispatcher_enabled=False, trusted_proxies="10.0.0.0/8"
    )
    with TestClient(create_app(settings, database=db), client=("10.1.2.3", 5000)) as client:
        yield client


def test_a_trusted_proxy_tells_the_scheme_and_the_client(behind_proxy: TestClient) -> None:
    forwarded = behind_proxy.get("/health", headers={"X-Forwarded-Proto": "https"})
    assert forwarded.headers["strict-transport-security"] == "max-age=31536000"
    # Sign-in failures count against the forwarded client, not the proxy.
    for n in range(50):
        body = {"email": f"guess{n}@example.com", "password": "wrong"}
        answer = behind_proxy.post(
            "/v1/auth/login", json=body, headers={"X-Forwarded-For": "198.51.100.7"}
        )
        assert answer.status_code == 401
    body = {"email": "guess@example.com", "password": "wrong"}
    locked = behind_proxy.post(
        "/v1/auth/login", json=body, headers={"X-Forwarded-For": "198.51.100.7"}
    )
    assert_problem(locked, 429, "too-many-attempts")
    other = behind_proxy.post(
        "/v1/auth/login", json=body, headers={"X-Forwarded-For": "198.51.100.8"}
    )
    assert_problem(other, 401, "invalid-credentials")


def test_the_server_believes_no_forwarded_headers_of_its_own(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """uvicorn would trust X-Forwarded-* from 127.0.0.1 by default; only the setting may."""
    import uvicorn

    from mercato import cli

    for name in ("MERCATO_DATABASE_URL", "MERCATO_DATA_DIR"):
        monkeypatch.setenv(name, "restored after the test")
    options: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: options.update(kwargs))
    cli._serve("127.0.0.1", 8000, 1)
    assert options["proxy_headers"] is False
