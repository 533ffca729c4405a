from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.conftest import assert_problem

pytestmark = pytest.mark.slow


def test_health_answers_without_auth(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert response.headers["x-request-id"]


def test_openapi_is_3_1_and_lists_domains(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.1")
    paths = spec["paths"]
    for path in ("/v1/auth/login", "/v1/locations", "/v1/staff", "/v1/audit"):
        assert path in paths


def test_docs_page_is_served_from_the_package_without_a_cdn(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    html = page.text
    assert "/static/swagger/swagger-ui-bundle.js" in html
    assert "cdn" not in html.lower()
    asset = client.get("/static/swagger/swagger-ui-bundle.js")
    assert asset.status_code == 200
    assert len(asset.content) > 100_000


def test_unknown_route_is_a_problem(client: TestClient) -> None:
    assert_problem(client.get("/v1/nothing-here"), 404, "not-found")


def test_unknown_query_parameter_is_rejected(
    client: TestClient, owner_headers: dict[str, str]
) -> None:
    body = assert_problem(
        client.get("/v1/locations?colour=red", headers=owner_headers), 422, "validation-error"
    )
    assert body["errors"] == [{"field": "query.colour", "reason": "unknown field"}]


def test_bad_query_value_names_the_field(client: TestClient, owner_headers: dict[str, str]) -> None:
    body = assert_problem(client.get("/v1/locations?limit=0", headers=owner_headers), 422)
    assert body["errors"][0]["field"] == "query.limit"


def test_malformed_json_is_a_422_not_a_500(
    client: TestClient, owner_headers: dict[str, str]
) -> None:
    response = client.post(
        "/v1/locations",
        content=b"{not json",
        headers={**owner_headers, "content-type": "application/json"},
    )
    assert_problem(response, 422)
