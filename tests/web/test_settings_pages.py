"""The settings screen without a browser: every tab answers for the roles that may read
it and refuses the others; forms keep the API's rules (a TestClient on the demo business)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.demo_world import DemoWorld, staff_login

TABS = ["channels", "locations", "staff", "webhooks", "taxes", "carriers", "payments", "audit"]


@pytest.fixture
def pages(demo_world: DemoWorld) -> Iterator[TestClient]:
    """A client of the demo application that keeps its own cookies."""
    with TestClient(demo_world.client.app, follow_redirects=False) as client:
        yield client


def sign_in(client: TestClient, world: DemoWorld, who: str) -> str:
    """Signs ``who`` in with the session cookie; returns the page's CSRF token."""
    token = staff_login(world, who)["Authorization"].removeprefix("Bearer ")
    client.cookies.set("mercato_staff", token)
    page = client.get("/admin/account")
    found = re.search(r'"X-CSRF-Token": "([0-9a-f]+)"', page.text)
    assert found, page.text[:500]
    return found.group(1)


def test_every_tab_opens_for_the_owner(pages: TestClient, demo_world: DemoWorld) -> None:
    sign_in(pages, demo_world, "owner")
    first = pages.get("/admin/settings")
    assert first.status_code == 303 and first.headers["location"] == "/admin/settings/channels"
    for tab in TABS:
        answer = pages.get(f"/admin/settings/{tab}")
        assert answer.status_code == 200, (tab, answer.text[:2000])
    taxes = pages.get("/admin/settings/taxes?country=DE").text
    assert "19.0%" in taxes and "US-CA" not in taxes
    assert "test_gateway" in pages.get("/admin/settings/payments").text
    channel = pages.get("/admin/settings/channels/1").text
    assert re.search(r"Sells from</dt><dd[^>]*>[A-Z]+-[A-Z]", channel), "locations by code"


def test_a_store_manager_reads_and_is_refused_the_rest(
    pages: TestClient, demo_world: DemoWorld
) -> None:
    csrf = sign_in(pages, demo_world, "berlin.manager")
    channels = pages.get("/admin/settings/channels").text
    for hidden in ("Webhooks", "Audit log", "New channel"):
        assert hidden not in channels
    for tab in ("webhooks", "audit"):
        assert pages.get(f"/admin/settings/{tab}").status_code == 403
    staff = pages.get("/admin/settings/staff").text
    assert "New staff member" not in staff
    refused = pages.post(
        "/admin/settings/staff",
        data={
            "csrf_token": csrf,
            "email": f"x{uuid.uuid4().hex[:6]}@mercato.example",
            "name": "X",
            "password": "a-long-password",
            "role": "store_associate",
        },
    )
    assert refused.status_code == 403
    berlin = demo_world.location_id("ST-BERLIN")
    page = pages.get(f"/admin/settings/locations/{berlin}").text
    assert 'data-testid="read-only"' in page and "Save location" not in page
    change = pages.post(
        f"/admin/settings/locations/{berlin}", data={"csrf_token": csrf, "name": "Mine now"}
    )
    assert change.status_code == 403


def test_forms_need_the_csrf_token(pages: TestClient, demo_world: DemoWorld) -> None:
    sign_in(pages, demo_world, "owner")
    answer = pages.post("/admin/settings/channels/1/keys", data={"name": "no token"})
    assert answer.status_code == 403


def test_opening_hours_in_a_wrong_shape_are_refused_on_the_form(
    pages: TestClient, demo_world: DemoWorld
) -> None:
    csrf = sign_in(pages, demo_world, "admin")
    berlin = demo_world.location_id("ST-BERLIN")
    answer = pages.post(
        f"/admin/settings/locations/{berlin}",
        data={"csrf_token": csrf, "name": "Berlin", "mon": "nine to five", "tue": "18:00-09:00"},
    )
    assert answer.status_code == 422
    assert "write 09:00-18:00" in answer.text
    assert "nine to five" in answer.text  # what was typed stays in the form


def test_a_resubmitted_key_form_never_shows_the_key_again(
    pages: TestClient, demo_world: DemoWorld
) -> None:
    csrf = sign_in(pages, demo_world, "admin")
    channel = pages.get("/admin/settings/channels").text
    channel_id = re.search(r'href="/admin/settings/channels/(\d+)"', channel)
    assert channel_id
    url = f"/admin/settings/channels/{channel_id.group(1)}/keys"
    form = {"csrf_token": csrf, "name": "till 7", "idempotency_key": uuid.uuid4().hex}
    first = pages.post(url, data=form)
    assert first.status_code == 200
    key = re.search(r'data-testid="new-key" value="([^"]+)"', first.text)
    assert key
    again = pages.post(url, data=form)
    assert again.status_code == 200
    assert key.group(1) not in again.text
    assert "cannot be shown again" in again.text
    rows = 'data-testid="key-'
    assert again.text.count(rows) == first.text.count(rows)  # one key, not two


def test_a_carrier_is_switched_off_and_on(pages: TestClient, demo_world: DemoWorld) -> None:
    csrf = sign_in(pages, demo_world, "admin")
    page = pages.get("/admin/settings/carriers").text
    found = re.search(r"/admin/settings/carriers/(\d+)/active", page)
    assert found
    url = f"/admin/settings/carriers/{found.group(1)}/active"
    off = pages.post(url, data={"csrf_token": csrf, "active": "false"})
    assert off.status_code == 303
    carrier = demo_world.client.get(
        f"/v1/shipping/carriers/{found.group(1)}", headers=staff_login(demo_world, "admin")
    ).json()
    assert carrier["active"] is False
    assert pages.post(url, data={"csrf_token": csrf, "active": "true"}).status_code == 303
    analyst = sign_in(pages, demo_world, "analyst")
    assert pages.post(url, data={"csrf_token": analyst, "active": "false"}).status_code == 403


def test_the_settings_speak_the_users_language(pages: TestClient, demo_world: DemoWorld) -> None:
    sign_in(pages, demo_world, "owner")
    pages.cookies.set("mercato_lang", "de")
    page = pages.get("/admin/settings/locations/" + str(demo_world.location_id("ST-BERLIN")))
    assert "Öffnungszeiten" in page.text and "Montag" in page.text
    pages.cookies.set("mercato_lang", "ja")
    assert "監査ログ" in pages.get("/admin/settings/audit").text


def test_a_webhook_secret_is_rotated_once_and_a_subscription_paused(
    pages: TestClient, demo_world: DemoWorld
) -> None:
    admin = staff_login(demo_world, "admin")
    made = demo_world.client.post(
        "/v1/webhooks/subscriptions",
        headers=admin,
        json={"url": "https://erp.example.com/hooks", "event_types": ["order.*"]},
    )
    assert made.status_code == 201, made.text
    first_secret, subscription = made.json()["secret"], made.json()["id"]
    csrf = sign_in(pages, demo_world, "admin")
    url = f"/admin/settings/webhooks/{subscription}"
    rotated = pages.post(f"{url}/secret", data={"csrf_token": csrf})
    assert rotated.status_code == 200
    secret = re.search(r'data-testid="new-secret" value="([^"]+)"', rotated.text)
    assert secret and secret.group(1) != first_secret
    assert pages.get(f"{url}/secret").status_code == 303
    assert secret.group(1) not in pages.get(url).text

    paused = pages.post(f"{url}/active", data={"csrf_token": csrf, "active": "false"})
    assert paused.status_code == 303 and paused.headers["location"] == url
    shown = demo_world.client.get(f"/v1/webhooks/subscriptions/{subscription}", headers=admin)
    assert shown.json()["active"] is False
    assert "Resume" in pages.get(url).text
