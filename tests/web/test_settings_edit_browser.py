"""Editing settings in Chromium: a channel's locations and languages, a new location's
address, an integration token, and the carrier pages, each page accessible."""

from __future__ import annotations

import re
import uuid

from playwright.sync_api import expect

from tests.demo_world import staff_login
from tests.web.browser import Browser, assert_accessible


def test_an_admin_edits_a_channel_and_the_api_answers_the_same(browser: Browser) -> None:
    world = browser.world
    admin = staff_login(world, "admin")
    code = f"web-{uuid.uuid4().hex[:6]}"
    made = world.client.post(
        "/v1/channels",
        headers=admin,
        json={
            "code": code,
            "name": "Web CH",
            "type": "web",
            "default_locale": "de-DE",
            "currencies": ["CHF"],
        },
    )
    assert made.status_code == 201, made.text
    channel = made.json()["id"]
    page = browser.open("admin", f"/admin/settings/channels/{channel}")
    form = page.get_by_test_id("edit-channel")
    form.get_by_label("Languages").fill("de-DE, fr-FR")
    form.get_by_label("Currencies (default first)").fill("CHF, EUR")
    form.get_by_label("Ships to (countries)").fill("CH, LI")
    form.get_by_label(re.compile(r"^ST-BERLIN")).fill("1")
    form.get_by_role("button", name="Save channel").click()
    expect(page.get_by_role("status")).to_have_text("The channel was saved.")
    expect(page.get_by_text("ST-BERLIN", exact=True).first).to_be_visible()
    assert_accessible(page)
    shown = world.client.get(f"/v1/channels/{channel}", headers=admin).json()
    assert shown["locales"] == ["de-DE", "fr-FR"] and shown["currencies"] == ["CHF", "EUR"]
    assert shown["locations"] == [{"location_id": world.location_id("ST-BERLIN"), "priority": 1}]

    # The API's refusal is on the form, what was typed kept.
    form.get_by_label("Currencies (default first)").fill("CHF, FRANCS")
    form.get_by_role("button", name="Save channel").click()
    expect(page.get_by_role("alert")).to_contain_text("FRANCS")
    expect(form.get_by_label("Currencies (default first)")).to_have_value("CHF, FRANCS")


def test_an_admin_creates_a_location_and_issues_an_integration_token(browser: Browser) -> None:
    world = browser.world
    page = browser.open("admin", "/admin/settings/locations")
    assert_accessible(page)
    form = page.get_by_test_id("new-location")
    code = f"WH-{uuid.uuid4().hex[:6]}".upper()
    form.get_by_label("Code", exact=True).fill(code)
    form.get_by_label("Name", exact=True).fill("Lyon warehouse")
    form.get_by_label("Type", exact=True).select_option("warehouse")
    form.get_by_label("City", exact=True).fill("Lyon")
    form.get_by_label("Postal code").fill("69002")
    form.get_by_label("Country code").fill("FR")
    form.get_by_label("Time zone").fill("Europe/Paris")
    form.get_by_role("button", name="Create location").click()
    expect(page).to_have_url(re.compile(r"/admin/settings/locations/\d+$"))
    expect(page.get_by_label("City", exact=True)).to_have_value("Lyon")
    page.get_by_label("Latitude", exact=True).fill("45.7578")
    page.get_by_label("Longitude", exact=True).fill("4.8320")
    page.get_by_role("button", name="Save location").click()
    expect(page.get_by_role("status")).to_have_text("The location was saved.")
    assert_accessible(page)
    location = int(page.url.rsplit("/", 1)[1])
    shown = world.client.get(f"/v1/locations/{location}", headers=staff_login(world, "admin"))
    assert (shown.json()["latitude"], shown.json()["longitude"]) == (45.7578, 4.832)

    made = world.client.post(
        "/v1/staff",
        headers=staff_login(world, "admin"),
        json={
            "email": f"wms-{uuid.uuid4().hex[:6]}@mercato.example",
            "name": "WMS",
            "password": "a-long-password",
            "role": "integration",
        },
    )
    assert made.status_code == 201, made.text
    page.goto(f"{browser.base_url}/admin/settings/staff/{made.json()['id']}")
    page.get_by_label("Token name").fill("WMS link")
    page.get_by_role("button", name="Issue a token").click()
    token = page.get_by_test_id("new-token").input_value()
    me = world.client.get("/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200 and me.json()["user"]["role"] == "integration"
    assert_accessible(page)


def test_the_carrier_pages_are_accessible_and_read_only_for_readers(browser: Browser) -> None:
    page = browser.open("admin", "/admin/settings/carriers")
    page.locator("a[href^='/admin/settings/carriers/zones/']").first.click()
    expect(page.get_by_test_id("edit-zone")).to_be_visible()
    assert_accessible(page)
    page.goto(f"{browser.base_url}/admin/settings/carriers")
    page.locator("a[href^='/admin/settings/carriers/rate-tables/']").first.click()
    expect(page.get_by_role("button", name="Save rate table")).to_be_visible()
    assert_accessible(page)
    url = page.url
    reader = browser.open("analyst", url.removeprefix(browser.base_url))
    expect(reader.get_by_label(re.compile("^Weight brackets"))).to_be_disabled()
    expect(reader.get_by_role("button", name="Save rate table")).to_have_count(0)
