"""Driving the back office in Debian's headless Chromium (Playwright pointed at it; no
browser is ever downloaded).

* :func:`live_server` serves the application over a real socket on the demo business;
* :class:`Browser` opens pages signed in as a demo staff member, refuses (and records)
  any request that leaves the application, and collects console errors (a script the
  page policy blocked shows up there);
* :func:`check_accessibility` runs axe-core (vendored for the tests) on the page;
* :func:`screenshot` saves the page into ``docs/screenshots`` when
  ``MERCATO_SCREENSHOTS=1``.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from playwright.sync_api import BrowserContext, Page, sync_playwright

from mercato.app import create_app
from mercato.settings import Settings
from tests.demo_world import DemoWorld, staff_login
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "tests" / "vendor" / "axe-core" / "axe.min.js"
SCREENSHOTS = ROOT / "docs" / "screenshots"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    found = os.environ.get("MERCATO_CHROMIUM") or shutil.which("chromium")
    if not found:
        raise RuntimeError(
            "the browser tests need Debian's chromium: apt-get install -y chromium "
            "(or set MERCATO_CHROMIUM to its path)"
        )
    return found


@contextmanager
def live_server(world: DemoWorld, data_dir: Path) -> Iterator[str]:
    """The application on the demo database, served by uvicorn in a thread."""
    app = create_app(Settings(data_dir=data_dir, dispatcher_enabled=False), world.database)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@dataclass
class Browser:
    """One Chromium for the session; each :meth:`open` is a fresh browser profile."""

    base_url: str
    world: DemoWorld
    chromium: Any
    outside_requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    def context(self, language: str = "en") -> BrowserContext:
        context = self.chromium.new_context(
            base_url=self.base_url, locale=language, viewport={"width": 1366, "height": 900}
        )
        context.set_default_timeout(15_000)

        def guard(route: Any) -> None:
            url = route.request.url
            if url.startswith(self.base_url) or url.startswith("data:"):
                route.continue_()
            else:
                self.outside_requests.append(url)
                route.abort()

        context.route("**/*", guard)
        return context

    def open(self, who: str | None = "owner", path: str = "/admin/", language: str = "en") -> Page:
        """A page signed in as demo staff member ``who`` (``owner``, ``support``,
        ``analyst``, ``berlin.manager``, ``shibuya.associate``...), or signed out."""
        context = self.context(language)
        if who is not None:
            token = staff_login(self.world, who)["Authorization"].removeprefix("Bearer ")
            context.add_cookies([{"name": "mercato_staff", "value": token, "url": self.base_url}])
        page = context.new_page()
        page.on("console", lambda message: self._on_console(page, message))
        page.on("response", self._on_response)
        page.on("pageerror", lambda error: self.console_errors.append(f"{page.url}: {error}"))
        page.goto(path)
        return page

    def _on_console(self, page: Page, message: Any) -> None:
        # A refused request shows as "Failed to load resource"; those are judged by
        # _on_response (a page may answer 4xx on purpose, an asset may not).
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.console_errors.append(f"{page.url}: {message.text}")

    def _on_response(self, response: Any) -> None:
        kind = response.request.resource_type
        if response.status >= 400 and kind not in ("document", "fetch", "xhr"):
            self.console_errors.append(f"{kind} {response.url} answered {response.status}")

    def assert_clean(self) -> None:
        """Nothing was asked from outside the application and no script failed."""
        outside, errors = list(self.outside_requests), list(self.console_errors)
        self.outside_requests.clear()
        self.console_errors.clear()
        assert outside == [], f"pages asked for assets outside the application: {outside}"
        assert errors == [], f"browser console errors: {errors}"


@contextmanager
def chromium() -> Iterator[Any]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def check_accessibility(page: Page) -> list[dict[str, Any]]:
    """axe-core on the page as it is now: the serious and critical violations.

    The script is evaluated through the DevTools protocol, which the page's policy does
    not govern (the page itself may not run inline scripts)."""
    page.evaluate(AXE.read_text(encoding="utf-8"))
    result: dict[str, Any] = page.evaluate(
        "async () => await axe.run(document, {resultTypes: ['violations']})"
    )
    return [
        {
            "id": violation["id"],
            "impact": violation["impact"],
            "help": violation["help"],
            "nodes": [node["target"] for node in violation["nodes"][:5]],
        }
        for violation in result["violations"]
        if violation["impact"] in ("serious", "critical")
    ]


def assert_accessible(page: Page) -> None:
    violations = check_accessibility(page)
    assert violations == [], f"axe-core found serious or critical violations: {violations}"


def screenshot(page: Page, name: str) -> None:
    """Save the page for the documentation (only when ``MERCATO_SCREENSHOTS=1``)."""
    if os.environ.get("MERCATO_SCREENSHOTS") != "1":
        return
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=False)
