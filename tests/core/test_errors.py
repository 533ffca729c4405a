"""Every error is problem+json: unexpected ones are a bare 500, lost unique races a 409."""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from mercato.catalog import service as catalog_service
from mercato.deps import DbSession
from mercato.locations.models import Location
from tests.backends import POSTGRES_URL
from tests.conftest import assert_problem
from tests.helpers import fast_password_hashing, gtin, make_location, make_product, ok
from tests.servers import free_port

pytestmark = pytest.mark.slow

Headers = dict[str, str]


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_password_hashing(monkeypatch)


def _duplicate_location(session: Session, code: str) -> None:
    session.add(Location(code=code, name="Copy", type="store", country="DE", timezone="UTC"))
    session.flush()


@pytest.fixture
def broken_app(app: FastAPI) -> FastAPI:
    @app.get("/test/crash")
    def crash() -> None:
        raise RuntimeError("SELECT secret FROM staff")

    @app.post("/test/duplicate-location/{code}")
    def duplicate(code: str, session: DbSession) -> None:
        # Skips the service's read-before-insert, as a concurrent request would.
        _duplicate_location(session, code)

    @app.post("/test/dangling-reference")
    def dangling(session: DbSession) -> None:
        from mercato.channels.models import ChannelLocation

        session.add(ChannelLocation(channel_id=987654, location_id=987654, priority=0))
        session.flush()

    return app


def test_an_unexpected_error_is_a_500_problem_without_internals(
    broken_app: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    client = TestClient(broken_app, raise_server_exceptions=False)
    with client, caplog.at_level(logging.ERROR, "mercato.errors"):
        response = client.get("/test/crash", headers={"X-Request-ID": "req-42"})
    problem = assert_problem(response, 500, "internal-error")
    assert "secret" not in response.text and "RuntimeError" not in response.text
    assert problem["request_id"] == "req-42"
    assert response.headers["X-Request-ID"] == "req-42"
    logged = [r for r in caplog.records if r.exc_info]
    assert logged, "the error is logged with its traceback"
    assert "req-42" in logged[0].getMessage()
    assert isinstance(logged[0].exc_info[1], RuntimeError)  # type: ignore[index]


def test_a_lost_unique_race_is_a_409_naming_the_field(
    broken_app: FastAPI, owner_headers: Headers
) -> None:
    client = TestClient(broken_app)
    make_location(client, owner_headers, "WH-1")
    problem = assert_problem(client.post("/test/duplicate-location/WH-1"), 409, "duplicate-code")
    assert [e["field"] for e in problem["errors"]] == ["body.code"]
    assert "WH-1" not in problem.get("title", "")
    # The failed request changed nothing.
    listed = ok(client.get("/v1/locations", headers=owner_headers))["items"]
    assert [x["code"] for x in listed] == ["WH-1"]


def test_other_integrity_errors_are_500s(broken_app: FastAPI) -> None:
    with TestClient(broken_app, raise_server_exceptions=False) as client:
        response = client.post("/test/dangling-reference")
    assert_problem(response, 500, "internal-error")
    assert "channel_locations" not in response.text


def _race(
    monkeypatch: pytest.MonkeyPatch, client: TestClient, requests: list[Callable[[], Any]]
) -> list[Any]:
    """Run the requests at once, all of them past the SKU check before any inserts."""
    barrier = threading.Barrier(len(requests), timeout=20)
    real_check = catalog_service.check_unique_variants

    def check_then_wait(*args: Any, **kwargs: Any) -> None:
        real_check(*args, **kwargs)
        barrier.wait()

    monkeypatch.setattr(catalog_service, "check_unique_variants", check_then_wait)
    results: list[Any] = [None] * len(requests)

    def run(i: int) -> None:
        results[i] = requests[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


@pytest.mark.skipif(not POSTGRES_URL, reason="SQLite serialises writers: no race to lose")
def test_concurrent_duplicate_skus_on_postgresql(
    backend: str,
    client: TestClient,
    owner_headers: Headers,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if backend != "postgresql":
        pytest.skip("the race needs concurrent writers")

    def create(code: str) -> Callable[[], Any]:
        body = {"code": code, "name": code, "variants": [{"sku": "X-9"}, {"sku": f"{code}-2"}]}
        return lambda: client.post("/v1/products", json=body, headers=owner_headers)

    first, second = _race(monkeypatch, client, [create("A"), create("B")])
    statuses = sorted([first.status_code, second.status_code])
    assert statuses == [201, 409], (first.text, second.text)
    loser = first if first.status_code == 409 else second
    problem = assert_problem(loser, 409, "duplicate-sku")
    assert [e["field"] for e in problem["errors"]] == ["body.variants[0].sku"]
    monkeypatch.undo()
    products = ok(client.get("/v1/products", headers=owner_headers))["items"]
    assert len(products) == 1


@pytest.mark.skipif(not POSTGRES_URL, reason="SQLite serialises writers: no race to lose")
def test_concurrent_duplicate_barcodes_on_postgresql(
    backend: str, client: TestClient, owner_headers: Headers, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend != "postgresql":
        pytest.skip("the race needs concurrent writers")
    product = make_product(client, owner_headers, "P")
    barcode = gtin("400638133393")

    def add(sku: str) -> Callable[[], Any]:
        body = {"sku": sku, "barcode": barcode}
        path = f"/v1/products/{product['id']}/variants"
        return lambda: client.post(path, json=body, headers=owner_headers)

    first, second = _race(monkeypatch, client, [add("P-2"), add("P-3")])
    assert sorted([first.status_code, second.status_code]) == [201, 409], (first.text, second.text)
    loser = first if first.status_code == 409 else second
    problem = assert_problem(loser, 409, "duplicate-barcode")
    assert [e["field"] for e in problem["errors"]] == ["body.barcode"]


def test_the_server_still_sees_the_failure(broken_app: FastAPI) -> None:
    # The problem is the answer; the exception still reaches the server (and its log).
    with pytest.raises(RuntimeError, match="secret"), TestClient(broken_app) as client:
        client.get("/test/crash")


def test_a_500_closes_the_connection_and_says_so(broken_app: FastAPI) -> None:
    """A real server drops the connection after an unhandled error; the answer says
    ``Connection: close`` so that a keep-alive client does not reuse it."""
    config = uvicorn.Config(broken_app, port=free_port(), log_level="critical", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        connection = http.client.HTTPConnection("127.0.0.1", config.port, timeout=5)
        connection.request("GET", "/health")
        first = connection.getresponse()
        first.read()
        assert first.getheader("connection") in (None, "keep-alive")
        connection.request("GET", "/test/crash")  # on the same, kept-alive connection
        crashed = connection.getresponse()
        assert crashed.status == 500
        assert crashed.getheader("content-type") == "application/problem+json"
        assert crashed.getheader("connection") == "close"
        assert json.loads(crashed.read())["code"] == "internal-error"
        assert crashed.will_close
        connection.close()
    finally:
        server.should_exit = True
        thread.join(10)
