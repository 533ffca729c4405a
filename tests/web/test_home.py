"""Home in Chromium: sales per channel and country in each order's currency, the lists of
what needs someone, and each block only for the roles that may see it."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.commerce.helpers import ok
from tests.demo_world import staff_login
from tests.web.browser import Browser, assert_accessible, screenshot
from tests.web.test_orders import _place


def test_the_owner_sees_sales_and_what_needs_attention(browser: Browser) -> None:
    world = browser.world
    item = world.new_product({"WH-FRA": 5}, {"EU": {"EUR": "55.00"}})
    order = _place(world, item)
    ok(
        world.client.post(
            f"/v1/orders/{order['id']}/hold",
            headers=staff_login(world),
            json={"reason": "Check the address"},
        )
    )
    page = browser.open("owner", "/admin/")
    expect(page.get_by_role("heading", name="Sales")).to_be_visible()
    expect(page.get_by_test_id("sales-totals")).to_contain_text("Revenue in EUR")
    expect(page.get_by_test_id("by-channel")).to_contain_text("Web store Germany")
    expect(page.get_by_test_id("by-country")).to_contain_text("DE")
    expect(page.locator(".chart svg").first).to_be_visible()
    held = page.get_by_test_id("attention-on_hold")
    expect(held).to_be_visible()
    for kind in ("fraud_review", "unrouted", "late_to_ship"):
        expect(page.get_by_test_id(f"attention-{kind}")).to_be_visible()
    expect(page.get_by_test_id("low-stock")).to_be_visible()
    expect(page.get_by_test_id("late-cases")).to_be_visible()
    expect(page.get_by_test_id("pickups")).to_be_visible()
    expect(page.get_by_role("link", name="All low stock")).to_have_attribute(
        "href", "/admin/inventory?view=low"
    )
    expect(page.get_by_role("link", name="All late cases")).to_have_attribute(
        "href", "/admin/support?sla=breached"
    )
    assert_accessible(page)
    screenshot(page, "home")
    page.get_by_role("link", name="30 days").click()
    expect(page).to_have_url(re.compile(r"period=30$"))
    expect(page.get_by_role("link", name="30 days")).to_have_attribute("aria-current", "page")
    ok(world.client.post(f"/v1/orders/{order['id']}/release", headers=staff_login(world)))


def test_each_block_shows_only_to_roles_that_may_see_it(browser: Browser) -> None:
    # The support agent: no sales figures (no analytics:read), but support cases.
    page = browser.open("support", "/admin/")
    expect(page.get_by_test_id("late-cases")).to_be_visible()
    expect(page.get_by_test_id("attention-on_hold")).to_be_visible()
    expect(page.get_by_role("heading", name="Sales")).to_have_count(0)
    # The analyst: figures and stock, no support cases.
    page = browser.open("analyst", "/admin/")
    expect(page.get_by_role("heading", name="Sales")).to_be_visible()
    expect(page.get_by_test_id("low-stock")).to_be_visible()
    expect(page.get_by_test_id("late-cases")).to_have_count(0)
    assert_accessible(page)
