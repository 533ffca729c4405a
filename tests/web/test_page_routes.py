"""The walk over every back office route, as the API's permission matrix walks the API:
each one needs a signed-in staff user (and names a permission, except the user's own
account pages), sends strangers to the sign-in page, and refuses a change without the
CSRF token. A new page fails here until it does the same."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from mercato.web import PREFIX
from mercato.web.manifest import MANIFEST
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


@dataclass(frozen=True)
class PageRoute:
    path: str  # as served: the prefixes of the routers it is included through added
    methods: set[str]
    route: APIRoute


def _walk(routes: Iterable[Any], prefix: str = "") -> Iterator[PageRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield PageRoute(prefix + route.path, set(route.methods or ()), route)
        included = getattr(route, "original_router", None)
        if included is not None:
            context = getattr(route, "include_context", None)
            yield from _walk(included.routes, prefix + getattr(context, "prefix", ""))


def _page_routes(app: Any) -> Iterator[PageRoute]:
    for found in _walk(app.routes):
        if found.path.startswith(PREFIX):
            yield found


def _dependency_names(route: PageRoute) -> set[str]:
    names: set[str] = set()
    stack = list(route.route.dependant.dependencies)
    while stack:
        dependency = stack.pop()
        names.add(getattr(dependency.call, "__name__", ""))
        stack.extend(dependency.dependencies)
    return names


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def test_every_back_office_route_is_under_the_prefix() -> None:
    """A screen's router that lost its prefix would serve pages outside /admin (where
    errors are not answered as pages and this walk would not see them)."""
    for router in MANIFEST.routers:
        for found in _walk(router.routes):
            assert found.path.startswith(PREFIX), found.path


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
        for method in route.methods:
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
        for method in route.methods - {"GET", "HEAD"}:
            answer = client.request(method, _concrete(route.path), follow_redirects=False)
            assert answer.status_code == 403, (method, route.path, answer.status_code)
            assert "csrf" in answer.text.lower() or "expired" in answer.text.lower()
