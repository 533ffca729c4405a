"""The walk over every back office route, as the API's permission matrix walks the API:
each one needs a signed-in staff user (and names a permission, except the user's own
account pages), sends strangers to the sign-in page, and refuses a change without the
CSRF token. A new page fails here until it does the same."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from mercato.web import PREFIX
from tests.auth.test_permission_matrix import _api_routes
from tests.conftest import OWNER_EMAIL, PASSWORD

# Pages every signed-in user may open, whatever their role: their own account.
OWN_ACCOUNT = {
    f"{PREFIX}/account",
    f"{PREFIX}/account/language",
    f"{PREFIX}/account/password",
    f"{PREFIX}/logout",
}
SIGN_IN = {f"{PREFIX}/login"}
# The user's own long work: the service shows each user only what they started.
OWN_WORK_PREFIX = f"{PREFIX}/jobs"


def _page_routes(app: Any) -> Iterator[APIRoute]:
    for route in _api_routes(app.routes):
        if route.path.startswith(PREFIX):
            yield route


def _dependency_names(route: APIRoute) -> set[str]:
    names: set[str] = set()
    stack = list(route.dependant.dependencies)
    while stack:
        dependency = stack.pop()
        names.add(getattr(dependency.call, "__name__", ""))
        stack.extend(dependency.dependencies)
    return names


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def test_every_page_names_a_permission(app: Any) -> None:
    routes = list(_page_routes(app))
    assert len(routes) >= 5
    for route in routes:
        if route.path in SIGN_IN:
            continue
        names = _dependency_names(route)
        assert "signed_in" in names, f"{route.path} does not need a signed-in user"
        if route.path not in OWN_ACCOUNT and not route.path.startswith(OWN_WORK_PREFIX):
            required = [n for n in names if n.startswith("require_")]
            assert required, f"{route.path} names no permission (use require_page)"


@pytest.mark.slow
def test_strangers_are_sent_to_sign_in_and_changes_need_the_csrf_token(
    app: Any, client: TestClient, owner_headers: dict[str, str]
) -> None:
    signed_out = TestClient(app)
    for route in _page_routes(app):
        if route.path in SIGN_IN:
            continue
        path = _concrete(route.path)
        for method in route.methods or ():
            answer = signed_out.request(method, path, follow_redirects=False)
            assert answer.status_code == 303, (method, path, answer.status_code)
            assert answer.headers["location"].startswith(f"{PREFIX}/login?next=")
    page = client.get(f"{PREFIX}/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None
    signed = client.post(
        f"{PREFIX}/login",
        data={"email": OWNER_EMAIL, "password": PASSWORD, "csrf_token": token.group(1)},
        follow_redirects=False,
    )
    assert signed.status_code == 303
    for route in _page_routes(app):
        if route.path in SIGN_IN:
            continue
        for method in (route.methods or set()) - {"GET", "HEAD"}:
            answer = client.request(method, _concrete(route.path), follow_redirects=False)
            assert answer.status_code == 403, (method, route.path, answer.status_code)
            assert "csrf" in answer.text.lower() or "expired" in answer.text.lower()
