"""The promotions and marketing screen in Chromium: a marketer creates a promotion,
previews a sample cart, generates and exports codes; gift cards are issued, looked up and
disabled; offer rules show their dry run; the message outbox lists what was sent; roles
without the permission only read."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

from playwright.sync_api import expect

from tests.demo_world import staff_login
from tests.web.browser import Browser, assert_accessible, screenshot


def _sku(browser: Browser) -> str:
    world = browser.world
    variant_id = world.new_product({"WH-FRA": 5}, {"EU": {"EUR": "10.00"}})
    owner = staff_login(world, "owner")
    sku: str = world.client.get(f"/v1/variants/{variant_id}", headers=owner).json()["sku"]
    return sku


def test_a_marketer_creates_a_promotion_previews_a_cart_and_exports_fifty_codes(
    browser: Browser,
) -> None:
    sku = _sku(browser)
    name = f"Spring {uuid.uuid4().hex[:6]}"
    page = browser.open("owner", "/admin/promotions")
    assert_accessible(page)
    page.get_by_role("link", name="New promotion").click()
    assert_accessible(page)
    page.get_by_label("Name").fill(name)
    page.get_by_label("Status").select_option("active")
    page.get_by_label("Discount").select_option("percent_off_order")
    page.get_by_label("Percent").fill("10")
    # With a code only: an automatic promotion would change other tests' carts.
    page.get_by_label("Only with a code").check()
    page.get_by_role("button", name="Create promotion").click()
    expect(page.get_by_role("heading", name=name, level=1)).to_be_visible()
    expect(page.get_by_role("status")).to_have_text("Promotion created.")

    page.get_by_label("How many codes").fill("50")
    page.get_by_label("Prefix").fill("SPR")
    page.get_by_role("button", name="Generate codes").click()
    expect(page.get_by_role("status")).to_have_text("50 codes generated.")
    codes = page.get_by_test_id("codes")
    expect(codes.locator("tbody tr")).to_have_count(50)
    first = codes.locator("tbody tr td").first.inner_text().strip()
    assert first.startswith("SPR")
    with page.expect_download() as download:
        page.get_by_role("link", name="Export codes (CSV)").click()
    lines = Path(download.value.path()).read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("code,")
    assert len(lines) == 51
    assert any(line.startswith(first + ",") for line in lines)

    page.get_by_label("Channel").select_option(label="web-de · Web store Germany")
    page.get_by_label("Currency", exact=True).fill("EUR")
    page.get_by_label("SKU of line 1").fill(sku)
    page.get_by_label("Quantity of line 1").fill("2")
    page.get_by_label("Unit price of line 1").fill("10.00")
    page.get_by_label("Codes", exact=True).fill(first)
    page.get_by_role("button", name="Preview", exact=True).click()
    preview = page.get_by_test_id("preview")
    expect(preview).to_contain_text(name)
    expect(page.get_by_test_id("preview-discount")).to_have_text("€2.00")
    expect(page.get_by_test_id("preview-total")).to_have_text("€18.00")
    assert_accessible(page)
    screenshot(page, "promotions")


def test_a_gift_card_is_issued_looked_up_and_disabled(browser: Browser) -> None:
    page = browser.open("owner", "/admin/promotions/gift-cards")
    assert_accessible(page)
    page.get_by_label("Amount").fill("25")
    page.get_by_label("Currency").fill("EUR")
    page.get_by_role("button", name="Issue gift card").click()
    expect(page.get_by_test_id("issued")).to_contain_text("€25.00")
    code = page.get_by_test_id("issued-code").inner_text().strip()
    assert len(code) >= 8
    assert_accessible(page)

    page.get_by_label("Gift card code").fill(code)
    page.get_by_role("button", name="Look up").click()
    expect(page.get_by_test_id("balance")).to_contain_text("€25.00")

    last4 = code[-4:]
    page.get_by_role("button", name=f"Disable {last4}").first.click()
    expect(page.get_by_role("status")).to_have_text("Gift card disabled.")
    page.get_by_label("Gift card code").fill(code)
    page.get_by_role("button", name="Look up").click()
    expect(page.get_by_text("No usable gift card has this code.")).to_be_visible()


def _rule(browser: Browser) -> int:
    """An offer rule on a demo category with a code-only promotion as its offer."""
    world = browser.world
    owner = staff_login(world, "owner")
    promotion = world.client.post(
        "/v1/promotions",
        json={
            "name": f"Thanks {uuid.uuid4().hex[:6]}",
            "status": "active",
            "requires_code": True,
            "action": {"type": "percent_off_order", "percent": "15"},
        },
        headers=owner,
    )
    assert promotion.status_code == 201, promotion.text
    category = world.client.get("/v1/categories", headers=owner).json()["items"][0]
    rule = world.client.post(
        "/v1/marketing/rules",
        json={
            "name": f"Loyal buyers {uuid.uuid4().hex[:6]}",
            "category_id": category["id"],
            "min_purchases": 1,
            "window_days": 30,
            "template_promotion_id": promotion.json()["id"],
        },
        headers=owner,
    )
    assert rule.status_code == 201, rule.text
    rule_id: int = rule.json()["id"]
    return rule_id


def test_offer_rules_show_their_dry_run_and_the_outbox_lists_messages(browser: Browser) -> None:
    rule_id = _rule(browser)
    page = browser.open("owner", "/admin/promotions/rules")
    assert_accessible(page)
    page.locator(f"a[href='/admin/promotions/rules/{rule_id}']").click()
    dry_run = page.get_by_test_id("dry-run")
    expect(dry_run).to_contain_text("Dry run: who a run would offer a code now")
    expect(page.get_by_role("button", name="Run the rule now")).to_be_visible()
    assert_accessible(page)
    page.goto("/admin/promotions/messages")
    expect(page.get_by_role("heading", name="Messages", level=1)).to_be_visible()
    assert_accessible(page)
    analyst = browser.open("analyst", f"/admin/promotions/rules/{rule_id}")
    expect(analyst.get_by_test_id("dry-run")).to_be_visible()
    expect(analyst.get_by_role("button", name="Run the rule now")).to_have_count(0)


def test_a_store_associate_reads_promotions_and_may_not_change_them(browser: Browser) -> None:
    page = browser.open("shibuya.associate", "/admin/promotions")
    expect(page.get_by_role("heading", name="Promotions", level=1)).to_be_visible()
    expect(page.get_by_role("link", name="New promotion")).to_have_count(0)
    headers = page.locator("body").get_attribute("hx-headers") or ""
    token = re.search(r'"X-CSRF-Token": "([^"]+)"', headers)
    assert token is not None
    refused = page.request.post(
        "/admin/promotions/new",
        form={"csrf_token": token.group(1), "name": "Mine", "action_type": "percent_off_order"},
    )
    assert refused.status == 403
    assert page.request.get("/admin/promotions/new").status == 403
