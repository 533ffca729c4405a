"""Browser tests of the back office: a live server per demo database, one Chromium, a
fresh browser profile per page. Every test here starts a server and a browser, so all are
``slow`` (out of the fast lane)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.demo_world import DemoWorld
from tests.web.browser import Browser, chromium, live_server

# Assertions wait up to 15 s (Playwright's default is 5 s): on two shared cores a page that
# calls a payment provider between transactions has been seen to take longer.
expect.set_options(timeout=15_000)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/tests/web/" in str(item.path) and "test_translations" not in str(item.path):
            item.add_marker(pytest.mark.slow)


# Per module, not per session: Playwright's synchronous API keeps an event loop running
# in the main thread while it is started, which would break every later test that runs
# asyncio itself. Modules run one after another, so this closes it before the next one.
@pytest.fixture(scope="module")
def _chromium() -> Iterator[Any]:
    with chromium() as browser:
        yield browser


class _LiveServers:
    """Started on first use, one per demo database, stopped at the end of the session."""

    def __init__(self, stack: ExitStack, factory: pytest.TempPathFactory) -> None:
        self.stack = stack
        self.factory = factory
        self.urls: dict[int, str] = {}

    def for_world(self, world: DemoWorld) -> str:
        key = id(world.database)
        if key not in self.urls:
            data_dir = Path(self.factory.mktemp("live"))
            self.urls[key] = self.stack.enter_context(live_server(world, data_dir))
        return self.urls[key]


@pytest.fixture(scope="session")
def _live_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_LiveServers]:
    with ExitStack() as stack:
        yield _LiveServers(stack, tmp_path_factory)


@pytest.fixture
def browser(
    demo_world: DemoWorld, _chromium: Any, _live_servers: _LiveServers
) -> Iterator[Browser]:
    driver = Browser(_live_servers.for_world(demo_world), demo_world, _chromium)
    yield driver
    driver.assert_clean()
