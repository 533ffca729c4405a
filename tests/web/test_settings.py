"""The settings screen in Chromium: channels and their keys, locations, staff and roles,
webhooks with the delivery log, the audit log, and what a store manager may see there."""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.sync_api import Page, expect

from mercato.webhooks.config import WebhookConfig
from mercato.webhooks.worker import WebhookWorker
from tests.demo_world import staff_login
from tests.web.browser import Browser, assert_accessible, screenshot
from tests.webhooks.receiver import Receiver

PASSWORD = "a-new-staff-password"


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def _csrf(page: Page) -> str:
    return page.locator("input[name=csrf_token]").first.input_value()


def test_an_admin_creates_a_channel_and_sees_its_key_once(browser: Browser) -> None:
    page = browser.open("admin", "/admin/settings/channels")
    assert_accessible(page)
    code = _unique("web-fr")
    page.get_by_label("Code").fill(code)
    page.get_by_label("Name").fill("Boutique France")
    page.get_by_label("Type").select_option("web")
    page.get_by_label("Default language").fill("fr-FR")
    page.get_by_label("Currencies (default first)").fill("EUR")
    page.get_by_label("Country (optional)").fill("FR")
    page.get_by_role("button", name="Create channel").click()
    expect(page).to_have_url(re.compile(r"/admin/settings/channels/\d+$"))
    expect(page.get_by_role("status")).to_contain_text("Channel created")
    expect(page.get_by_role("heading", name=re.compile("Boutique France"))).to_be_visible()

    page.get_by_label("Key name").fill("storefront")
    page.get_by_role("button", name="Issue a key").click()
    key = page.get_by_test_id("new-key").input_value()
    assert key.startswith("mck_") or len(key) > 20
    store = browser.world.client.get("/v1/store/channel", headers={"X-Channel-Key": key})
    assert store.status_code == 200, store.text
    assert store.json()["code"] == code
    assert_accessible(page)
    screenshot(page, "settings")

    # The key is in that answer only: the channel's page shows its prefix, never the key.
    assert page.url.endswith("/keys")
    page.goto(page.url)
    expect(page).to_have_url(re.compile(r"/admin/settings/channels/\d+$"))
    expect(page.get_by_test_id("new-key")).to_have_count(0)
    assert key not in page.content()
    expect(page.get_by_role("cell", name=f"{key[:12]}…")).to_be_visible()

    # Rotating shows the replacement once and the old key stops working.
    page.get_by_role("button", name="Rotate").click()
    new_key = page.get_by_test_id("new-key").input_value()
    assert new_key != key
    expect(page.get_by_text("Revoked")).to_be_visible()
    old = browser.world.client.get("/v1/store/channel", headers={"X-Channel-Key": key})
    assert old.status_code == 401


def test_an_admin_edits_opening_hours_and_the_locations_api_shows_them(browser: Browser) -> None:
    world = browser.world
    owner = staff_login(world, "owner")
    code = _unique("ST-T")
    made = world.client.post(
        "/v1/locations",
        headers=owner,
        json={
            "code": code,
            "name": "Pop-up Hamburg",
            "type": "store",
            "address": {"city": "Hamburg", "postal_code": "20095", "country": "DE"},
            "timezone": "Europe/Berlin",
            "opening_hours": {"mon": [["10:00", "18:00"]]},
        },
    )
    assert made.status_code == 201, made.text
    location_id = made.json()["id"]

    page = browser.open("admin", "/admin/settings/locations?type=store&country=DE")
    page.get_by_role("link", name=code).click()
    expect(page).to_have_url(re.compile(rf"/admin/settings/locations/{location_id}$"))
    expect(page.get_by_label("Monday")).to_have_value("10:00-18:00")
    page.get_by_label("Saturday").fill("09:30-13:00, 14:00-17:30")
    page.get_by_label("Monday").fill("")
    page.get_by_label("Click & collect").check()
    page.get_by_label("Daily capacity (orders a day, empty for no limit)").fill("120")
    page.get_by_role("button", name="Save location").click()
    expect(page.get_by_role("status")).to_have_text("The location was saved.")
    expect(page.get_by_label("Saturday")).to_have_value("09:30-13:00, 14:00-17:30")
    assert_accessible(page)

    shown = world.client.get(f"/v1/locations/{location_id}", headers=owner).json()
    assert shown["opening_hours"] == {"sat": [["09:30", "13:00"], ["14:00", "17:30"]]}
    assert shown["capabilities"]["pickup"] is True
    assert shown["daily_capacity"] == 120


def test_a_new_store_associate_signs_in_and_sees_only_their_screens(browser: Browser) -> None:
    admin = browser.open("admin", "/admin/settings/staff")
    email = f"{_unique('aiko')}@mercato.example"
    admin.get_by_label("Name", exact=True).fill("Aiko Tanaka")
    admin.get_by_label("Email").fill(email)
    admin.get_by_label("First password (at least 10 characters)").fill(PASSWORD)
    admin.get_by_label("Role").select_option("store_associate")
    admin.get_by_label("ST-SHIBUYA").check()
    admin.get_by_role("button", name="Create staff member").click()
    expect(admin).to_have_url(re.compile(r"/admin/settings/staff/\d+$"))
    expect(admin.get_by_role("status")).to_have_text("The staff member was created.")
    expect(admin.get_by_label("ST-SHIBUYA")).to_be_checked()
    assert_accessible(admin)

    person = browser.open(None, "/admin/login")
    person.get_by_label("Email").fill(email)
    person.get_by_label("Password").fill(PASSWORD)
    person.get_by_role("button", name="Sign in").click()
    expect(person.get_by_test_id("signed-in-as")).to_contain_text(email)
    expect(person.get_by_test_id("signed-in-as")).to_contain_text("Store associate")
    nav = person.get_by_role("complementary", name="Screens")
    expect(nav.get_by_role("link", name="Orders")).to_be_visible()
    expect(nav.get_by_role("link", name="Inventory")).to_be_visible()
    expect(nav.get_by_role("link", name="Settings")).to_have_count(0)
    assert person.request.get("/admin/settings/staff").status == 403

    # Deactivated, the account's session stops working at once.
    admin.get_by_role("button", name="Deactivate").click()
    expect(admin.get_by_role("status")).to_have_text("The account was deactivated.")
    person.goto("/admin/account")
    expect(person).to_have_url(re.compile(r"/admin/login"))


def test_an_admin_cannot_create_an_owner(browser: Browser) -> None:
    page = browser.open("admin", "/admin/settings/staff")
    role = page.get_by_label("Role")
    expect(role.locator("option[value=owner]")).to_have_count(0)
    expect(role.locator("option[value=admin]")).to_have_count(0)
    # A hand-made request for an owner (the form never offers it) is refused by the service.
    role.evaluate("el => { el.add(new Option('Owner', 'owner')); el.value = 'owner'; }")
    email = f"{_unique('boss')}@mercato.example"
    page.get_by_label("Name", exact=True).fill("Would-be Owner")
    page.get_by_label("Email").fill(email)
    page.get_by_label("First password (at least 10 characters)").fill(PASSWORD)
    page.get_by_role("button", name="Create staff member").click()
    expect(page.get_by_test_id("form-error")).to_contain_text("may not manage owner users")
    expect(page.get_by_text("Your role may not give this role.")).to_be_visible()
    expect(page.get_by_label("Email")).to_have_value(email)
    assert_accessible(page)
    staff = browser.world.client.get(
        "/v1/staff?limit=200", headers=staff_login(browser.world, "owner")
    ).json()
    assert email not in [u["email"] for u in staff["items"]]


def test_a_failed_webhook_delivery_is_retried_from_the_delivery_log(
    browser: Browser, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The receiver listens on 127.0.0.1, which only this setting lets webhooks call.
    monkeypatch.setenv("MERCATO_WEBHOOKS_ALLOW_PRIVATE_TARGETS", "true")
    receiver = Receiver().start()
    try:
        page = browser.open("admin", "/admin/settings/webhooks")
        page.get_by_label("Endpoint URL").fill(receiver.url)
        page.get_by_label("Event types (order.placed, order.* or *)").fill("webhook.test")
        page.get_by_label("Description").fill("ERP bridge")
        page.get_by_role("button", name="Subscribe").click()
        secret = page.get_by_test_id("new-secret").input_value()
        assert len(secret) > 20
        page.get_by_role("link", name=receiver.url).first.click()
        assert secret not in page.content()
        page.get_by_role("button", name="Send a test event").click()
        expect(page.get_by_role("status")).to_have_text("A test event is queued.")

        worker = WebhookWorker(
            browser.world.database,
            WebhookConfig(max_attempts=1, timeout_seconds=2, allow_private_targets=True),
        )
        receiver.fail_next(1, status=503)
        worker.drain()
        page.get_by_label("Status").select_option("dead")
        page.get_by_role("button", name="Filter").click()
        expect(page).to_have_url(re.compile(r"status=dead"))
        row = page.get_by_test_id("delivery-log").locator("tbody tr").first
        expect(row).to_contain_text("dead")
        expect(row).to_contain_text("503")
        assert_accessible(page)
        screenshot(page, "settings-webhooks")

        row.get_by_role("button", name=re.compile("Retry delivery")).click()
        expect(page.get_by_role("status")).to_contain_text("is queued again")
        expect(page).to_have_url(re.compile(r"status=dead"))  # back to the same view
        worker.drain()
        assert receiver.wait_for(1)
        page.goto(re.sub(r"status=dead", "status=delivered", page.url))
        delivered = page.get_by_test_id("delivery-log").locator("tbody tr").first
        expect(delivered).to_contain_text("delivered")
        expect(delivered.get_by_role("button")).to_have_count(0)
    finally:
        receiver.stop()


def test_the_store_manager_sees_only_what_their_role_allows(browser: Browser) -> None:
    page = browser.open("berlin.manager", "/admin/settings")
    expect(page).to_have_url(re.compile(r"/admin/settings/channels$"))
    tabs = page.get_by_role("navigation", name="Settings sections")
    for shown in ("Channels", "Locations", "Staff and roles", "Taxes", "Carriers"):
        expect(tabs.get_by_role("link", name=shown)).to_be_visible()
    for hidden in ("Webhooks", "Audit log"):
        expect(tabs.get_by_role("link", name=hidden)).to_have_count(0)
    expect(page.get_by_role("button", name="Create channel")).to_have_count(0)
    assert_accessible(page)

    tabs.get_by_role("link", name="Staff and roles").click()
    expect(page.get_by_role("button", name="Create staff member")).to_have_count(0)
    expect(page.get_by_role("cell", name="berlin.manager@mercato.example")).to_be_visible()
    assert_accessible(page)

    berlin = browser.world.location_id("ST-BERLIN")
    page.goto(f"/admin/settings/locations/{berlin}")
    expect(page.get_by_test_id("read-only")).to_be_visible()
    expect(page.get_by_label("Monday")).to_be_disabled()
    expect(page.get_by_role("button", name="Save location")).to_have_count(0)

    csrf = _csrf(page)
    refused = {
        "audit": page.request.get("/admin/settings/audit"),
        "webhooks": page.request.get("/admin/settings/webhooks"),
        "location": page.request.post(
            f"/admin/settings/locations/{berlin}", form={"csrf_token": csrf, "name": "Mine"}
        ),
        "staff": page.request.post(
            "/admin/settings/staff",
            form={
                "csrf_token": csrf,
                "email": f"{_unique('x')}@mercato.example",
                "name": "X",
                "password": PASSWORD,
                "role": "store_associate",
                "location_ids": str(berlin),
            },
        ),
        "channel": page.request.post(
            "/admin/settings/channels/1/keys", form={"csrf_token": csrf, "name": "mine"}
        ),
    }
    assert {name: answer.status for name, answer in refused.items()} == dict.fromkeys(refused, 403)
    page.goto("/admin/settings/audit")
    expect(page.get_by_role("heading", name="Not allowed", level=1)).to_be_visible()


def test_the_audit_log_shows_the_changes_just_made(browser: Browser) -> None:
    page = browser.open("owner", "/admin/settings/channels")
    code = _unique("call")
    page.get_by_label("Code").fill(code)
    page.get_by_label("Name").fill("Hotline")
    page.get_by_label("Type").select_option("call_centre")
    page.get_by_label("Default language").fill("de-DE")
    page.get_by_label("Currencies (default first)").fill("EUR")
    page.get_by_role("button", name="Create channel").click()
    channel_id = page.url.rsplit("/", 1)[1]
    page.get_by_label("Key name").fill("agents")
    page.get_by_role("button", name="Issue a key").click()
    key = page.get_by_test_id("new-key").input_value()

    page.goto("/admin/settings/audit")
    page.get_by_label("Record type").fill("channel")
    page.get_by_label("Record id").fill(channel_id)
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(rf"entity_type=channel.*entity_id={channel_id}"))
    log = page.get_by_test_id("audit-log")
    expect(log.locator("tbody tr")).to_have_count(2)
    expect(log.locator("tbody tr").nth(0)).to_contain_text("channel.key_issued")
    expect(log.locator("tbody tr").nth(1)).to_contain_text("channel.created")
    expect(log.locator("tbody tr").nth(1)).to_contain_text(code)
    expect(log).to_contain_text("owner@mercato.example")
    assert key not in page.content()  # the audit keeps the key's id and name, not the key
    assert_accessible(page)

    log.get_by_role("link", name="channel.key_issued").click()
    expect(page).to_have_url(re.compile(r"\?action=channel.key_issued$"))
    expect(page.get_by_label("Action")).to_have_value("channel.key_issued")


@pytest.mark.parametrize(
    "path",
    [
        "/admin/settings/locations",
        "/admin/settings/staff",
        "/admin/settings/webhooks",
        "/admin/settings/taxes",
        "/admin/settings/carriers",
        "/admin/settings/payments",
        "/admin/settings/audit",
    ],
)
def test_every_tab_is_accessible(browser: Browser, path: str) -> None:
    page = browser.open("admin", path)
    expect(page.get_by_role("heading", name="Settings", exact=True)).to_be_visible()
    assert_accessible(page)
