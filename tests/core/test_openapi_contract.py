"""The OpenAPI document tells the truth: a fuzzer sends every operation valid and invalid
requests built from the document alone, and every answer must be a documented status,
never a 5xx, and every error a problem+json. Plus the parts of the document clients rely
on: the problem schema, the security schemes and the statuses each kind of route declares."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import hypothesis
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given
from schemathesis import GenerationMode
from schemathesis.core import NOT_SET

from mercato import demo, migrate
from mercato.app import create_app
from mercato.auth import service as auth_service
from mercato.db import Database
from mercato.settings import Settings
from tests.backends import BACKENDS
from tests.demo_world import _postgres_database
from tests.helpers import fast_password_hashing

pytestmark = pytest.mark.slow

# Examples per operation and mode: enough to find the validation gaps a new endpoint
# tends to have, few enough to keep the whole run to a minute or two on SQLite.
EXAMPLES = {GenerationMode.POSITIVE: 4, GenerationMode.NEGATIVE: 3}
# The share of operations that must answer 2xx at least once (about 45% do; most others
# need ids of objects that random input rarely names).
MIN_ANSWERED = 0.3
CHANNEL = "web-de"
FUZZ_OWNER = "fuzz-owner@mercato.example"
FUZZ_PASSWORD = "fuzzing the whole api"


@dataclass
class Failure:
    operation: str
    status: int
    request: str
    answer: str

    def __str__(self) -> str:
        return f"{self.operation} -> {self.status}\n  {self.request}\n  {self.answer[:300]}"


@dataclass
class Caller:
    """Credentials that keep working while the fuzzer logs out, revokes keys and erases
    customers: each operation starts with a check, and new ones are made when needed."""

    client: TestClient
    database: Database
    channel_id: int
    staff: dict[str, str] = field(default_factory=dict)
    shopper: dict[str, str] = field(default_factory=dict)

    def fresh(self) -> None:
        if self.client.get("/v1/auth/me", headers=self.staff).status_code != 200:
            self.staff = self._owner()
        key = self.shopper.get("X-Channel-Key", "")
        if self.client.get("/v1/store/channel", headers={"X-Channel-Key": key}).status_code != 200:
            self.shopper = {"X-Channel-Key": self._channel_key()}
        if self.client.get("/v1/store/customers/me", headers=self.shopper).status_code != 200:
            self.shopper = {"X-Channel-Key": self.shopper["X-Channel-Key"]}
            self.shopper["Authorization"] = self._customer(self.shopper)

    def _owner(self) -> dict[str, str]:
        email = f"owner-{uuid.uuid4().hex[:8]}@mercato.example"
        with self.database.transaction() as session:
            auth_service.bootstrap_owner(session, email, "Fuzz Owner", FUZZ_PASSWORD)
        login = {"email": email, "password": FUZZ_PASSWORD}
        answer = self.client.post("/v1/auth/login", json=login)
        assert answer.status_code == 200, answer.text
        return {"Authorization": f"Bearer {answer.json()['token']}"}

    def _channel_key(self) -> str:
        path = f"/v1/channels/{self.channel_id}"
        self.client.patch(path, json={"status": "active"}, headers=self.staff)
        answer = self.client.post(f"{path}/keys", json={"name": "fuzz"}, headers=self.staff)
        assert answer.status_code == 201, answer.text
        return str(answer.json()["key"])

    def _customer(self, store: dict[str, str]) -> str:
        body = {"email": f"c-{uuid.uuid4().hex[:8]}@example.com", "password": FUZZ_PASSWORD}
        answer = self.client.post("/v1/store/customers", json=body, headers=store)
        assert answer.status_code == 201, answer.text
        return f"Bearer {answer.json()['token']}"

    def headers_for(self, operation: dict[str, Any]) -> dict[str, str]:
        schemes = {name for option in operation.get("security", []) for name in option}
        if "channelKey" in schemes:
            return dict(self.shopper)
        if "bearerAuth" in schemes:
            return dict(self.staff)
        return {}


@pytest.fixture(scope="module", params=BACKENDS)
def fuzz_world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, Database, int]]:
    """A demo business of its own: the fuzzer changes and deletes what it finds."""
    data_dir = Path(tmp_path_factory.mktemp("fuzz"))
    urls = _postgres_database() if request.param == "postgresql" else None
    url = next(urls) if urls is not None else f"sqlite:///{data_dir / 'fuzz.db'}"
    database = Database(url)
    migrate.upgrade(database.engine)  # the schema as deployed (and /ready answers 200)
    demo.seed(database)
    app = create_app(Settings(data_dir=data_dir, dispatcher_enabled=False), database=database)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, database, _channel_id(database)
    database.dispose()
    if urls is not None:
        next(urls, None)


def _channel_id(database: Database) -> int:
    from mercato.channels.models import Channel

    with database.read() as session:
        found = session.query(Channel.id).filter(Channel.code == CHANNEL).scalar()
    assert found is not None
    return int(found)


def _is_stream(operation: dict[str, Any]) -> bool:
    success = operation["responses"].get("200", {})
    return "text/event-stream" in success.get("content", {})


def _describe(case: Any) -> str:
    body = "" if case.body is None or case.body is NOT_SET else f" body={case.body!r}"
    return f"{case.method} {case.formatted_path} query={case.query!r}{body}"[:600]


def test_every_operation_answers_only_documented_statuses(
    fuzz_world: tuple[TestClient, Database, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    fast_password_hashing(monkeypatch)
    client, database, channel_id = fuzz_world
    document = client.get("/openapi.json").json()
    schema = schemathesis.openapi.from_dict(document)
    caller = Caller(client, database, channel_id)
    failures: list[Failure] = []
    answered: set[str] = set()  # operations that answered 2xx at least once
    fuzzed = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        declared = document["paths"][operation.path][operation.method.lower()]
        if _is_stream(declared):
            continue  # an event stream never ends; tests/inventory/test_stream.py covers it
        documented = set(declared["responses"])
        caller.fresh()
        headers = caller.headers_for(declared)
        fuzzed += 1
        for mode, examples in EXAMPLES.items():
            _fuzz(client, operation, mode, examples, headers, documented, failures, answered)
    # Requests that never get past authentication or validation would prove nothing.
    assert len(answered) >= fuzzed * MIN_ANSWERED, (len(answered), fuzzed)
    assert not failures, f"{len(failures)} answers break the document:\n" + "\n".join(
        str(f) for f in _first_per_operation(failures)
    )


def _fuzz(
    client: TestClient,
    operation: Any,
    mode: GenerationMode,
    examples: int,
    headers: dict[str, str],
    documented: set[str],
    failures: list[Failure],
    answered: set[str],
) -> None:
    @hypothesis.settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        kwargs = case.as_transport_kwargs(headers=headers)
        kwargs.pop("base_url", None)
        url = kwargs.pop("url")
        kwargs.pop("cookies", None)
        answer = client.request(url=_path_of(url), **_httpx_kwargs(kwargs))
        status = answer.status_code
        if status < 300:
            answered.add(f"{operation.method} {operation.path}")
        undocumented = status >= 500 or str(status) not in documented
        not_a_problem = status >= 400 and not answer.headers.get("content-type", "").startswith(
            "application/problem+json"
        )
        if undocumented or not_a_problem:
            name = f"{operation.method.upper()} {operation.path}"
            failures.append(Failure(name, status, _describe(case), answer.text))

    # Unsatisfiable: nothing of this operation can be made invalid (no parameters, no body).
    with contextlib.suppress(hypothesis.errors.Unsatisfiable):
        run()


def _path_of(url: str) -> str:
    return urlsplit(url).path


def _httpx_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """requests-style arguments (what schemathesis serialises) for the httpx test client."""
    out: dict[str, Any] = {"method": kwargs["method"], "headers": kwargs.get("headers") or {}}
    if kwargs.get("params"):
        out["params"] = kwargs["params"]
    if "json" in kwargs:
        out["json"] = kwargs["json"]
    elif kwargs.get("data") is not None:
        out["content"] = kwargs["data"]
    return out


def _first_per_operation(failures: list[Failure]) -> list[Failure]:
    seen: dict[tuple[str, int], Failure] = {}
    for failure in failures:
        seen.setdefault((failure.operation, failure.status), failure)
    return list(seen.values())


# --- the document itself -----------------------------------------------------------------


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield method.upper(), path, operation


def test_errors_are_documented_as_problems(app: Any) -> None:
    document = app.openapi()
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    problem = schemas["Problem"]
    assert {"type", "title", "status", "code", "detail"} <= set(problem["required"])
    assert "errors" in problem["properties"]
    for method, path, operation in _operations(document):
        for status, response in operation["responses"].items():
            if int(status) >= 400 and path.startswith("/v1/"):
                content = response["content"]
                assert list(content) == ["application/problem+json"], (method, path, status)
                assert content["application/problem+json"]["schema"] == {
                    "$ref": "#/components/schemas/Problem"
                }


def test_security_schemes_are_declared_and_used(app: Any) -> None:
    document = app.openapi()
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {**schemes["bearerAuth"], "type": "http", "scheme": "bearer"}
    assert schemes["channelKey"] == {
        **schemes["channelKey"],
        "type": "apiKey",
        "in": "header",
        "name": "X-Channel-Key",
    }
    for method, path, operation in _operations(document):
        names = [p["name"].lower() for p in operation.get("parameters", [])]
        assert "x-channel-key" not in names and "authorization" not in names, (method, path)
        if path.startswith("/v1/store/"):
            assert {"channelKey": []} in operation["security"], (method, path)
    staff = document["paths"]["/v1/orders/{order_id}"]["get"]
    assert staff["security"] == [{"bearerAuth": []}]
    customer = document["paths"]["/v1/store/customers/me"]["get"]
    assert {"channelKey": [], "bearerAuth": []} in customer["security"]
    assert "security" not in document["paths"]["/v1/auth/login"]["post"]


@pytest.mark.parametrize(
    "method, path, statuses",
    [
        ("GET", "/v1/orders/{order_id}", {"200", "401", "403", "404", "422"}),
        ("GET", "/v1/staff", {"200", "401", "403", "422"}),
        ("GET", "/v1/products", {"200", "401", "403", "404", "422"}),  # ?category_id=
        ("POST", "/v1/orders", {"201", "401", "402", "403", "404", "409", "413", "422", "503"}),
        ("POST", "/v1/store/carts", {"201", "401", "403", "409", "413", "422"}),
        (
            "POST",
            "/v1/store/carts/{token}/lines",
            {"200", "401", "403", "404", "409", "413", "422"},
        ),
        ("GET", "/v1/store/customers/me", {"200", "401", "403", "422"}),
        ("POST", "/v1/auth/login", {"200", "401", "409", "413", "422", "429"}),
        ("POST", "/v1/catalog/import", {"200", "401", "403", "409", "413", "422"}),
    ],
)
def test_each_kind_of_route_documents_its_statuses(
    app: Any, method: str, path: str, statuses: set[str]
) -> None:
    operation = app.openapi()["paths"][path][method.lower()]
    assert set(operation["responses"]) == statuses
