"""The inventory screen in Chromium: the live grid, adjusting with a reason, transfers,
counts, receiving a purchase order, the ledger behind a cell, the ledger check, and store
staff kept to their own stores."""

from __future__ import annotations

import re
import uuid

from playwright.sync_api import expect

from mercato.inventory import service as inventory
from tests.demo_world import staff_login
from tests.web.browser import Browser, assert_accessible, screenshot

PRICES = {"EU": {"EUR": "19.00"}}


def _on_hand(browser: Browser, variant: int, code: str) -> int:
    with browser.world.database.read() as session:
        return inventory.get_level(session, variant, browser.world.location_id(code)).on_hand


def _sku(browser: Browser, variant: int) -> str:
    from mercato.catalog import service as catalog

    with browser.world.database.read() as session:
        return catalog.variant_infos(session, [variant])[variant].sku


def test_a_store_manager_adjusts_stock_with_a_reason_and_sees_it_in_grid_and_ledger(
    browser: Browser,
) -> None:
    item = browser.world.new_product({"ST-BERLIN": 5, "ST-MUNICH": 3}, PRICES)
    sku = _sku(browser, item)
    page = browser.open("berlin.manager", f"/admin/inventory?q={sku}")
    grid = page.get_by_test_id("stock-grid")
    # Only Berlin: Munich's column is not there for a Berlin manager.
    expect(grid.get_by_role("columnheader")).to_have_count(2)
    expect(page.get_by_test_id(f"cell-{sku}-ST-BERLIN")).to_contain_text("5 / 5 / 0")
    assert_accessible(page)
    page.get_by_test_id(f"cell-{sku}-ST-BERLIN").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(sku)
    page.get_by_role("link", name="Adjust").click()
    expect(page.get_by_label("SKU")).to_have_value(sku)
    page.get_by_label("Change of on hand").fill("-2")
    page.get_by_label("Reason").select_option("damage")
    page.get_by_label("Note").fill("dropped from the shelf")
    page.get_by_role("button", name="Post the adjustment").click()
    expect(page.locator("#flash")).to_contain_text(f"{sku} now has 3 on hand")
    ledger = page.get_by_test_id("ledger")
    expect(ledger.locator("tbody tr").first).to_contain_text("damage")
    expect(ledger.locator("tbody tr").first).to_contain_text("-2")
    expect(ledger.locator("tbody tr").first).to_contain_text("dropped from the shelf")
    page.reload()  # without the flash message
    assert_accessible(page)
    page.goto(f"/admin/inventory?q={sku}")
    expect(page.get_by_test_id(f"cell-{sku}-ST-BERLIN")).to_contain_text("3 / 3 / 0")
    # Taking more than there is: the form says why, nothing moves.
    page.goto(f"/admin/inventory/adjust?variant_id={item}")
    page.get_by_label("Change of on hand").fill("-50")
    page.get_by_label("Reason").select_option("damage")
    page.get_by_role("button", name="Post the adjustment").click()
    expect(page.get_by_test_id("form-problem")).to_be_visible()
    assert _on_hand(browser, item, "ST-BERLIN") == 3


def test_a_berlin_manager_sees_only_berlin_and_is_refused_another_store(
    browser: Browser,
) -> None:
    item = browser.world.new_product({"ST-BERLIN": 2, "ST-MUNICH": 4}, PRICES)
    sku = _sku(browser, item)
    munich = browser.world.location_id("ST-MUNICH")
    page = browser.open("berlin.manager", "/admin/inventory")
    options = page.get_by_label("Location").locator("option")
    expect(options).to_have_count(1)
    expect(options.first).to_have_text("Berlin Mitte store")
    answer = page.request.get(f"/admin/inventory?location={munich}")
    assert answer.status == 403
    answer = page.request.get(f"/admin/inventory/ledger?variant_id={item}&location_id={munich}")
    assert answer.status == 403
    page.goto("/admin/inventory/adjust")
    expect(page.get_by_label("Location").locator("option")).to_have_count(1)
    # A forged form for Munich is refused by the service, and nothing moves there.
    token = page.locator("input[name=csrf_token]").first.input_value()
    answer = page.request.post(
        "/admin/inventory/adjust",
        form={
            "csrf_token": token,
            "idempotency_key": str(uuid.uuid4()),
            "sku": sku,
            "location_id": str(munich),
            "quantity": "5",
            "reason": "receipt",
        },
    )
    assert answer.status == 403
    assert _on_hand(browser, item, "ST-MUNICH") == 4


def test_a_transfer_between_two_stores_and_a_cycle_count(browser: Browser) -> None:
    item = browser.world.new_product({"ST-MUNICH": 6}, PRICES)
    sku = _sku(browser, item)
    munich = browser.world.location_id("ST-MUNICH")
    berlin = browser.world.location_id("ST-BERLIN")
    page = browser.open("owner", "/admin/inventory/transfer")
    page.get_by_label("SKU").fill(sku)
    page.get_by_label("From", exact=True).select_option(str(munich))
    page.get_by_label("To", exact=True).select_option(str(berlin))
    page.get_by_label("Units").fill("4")
    assert_accessible(page)
    page.get_by_role("button", name="Create the transfer").click()
    expect(page.locator("#flash")).to_contain_text("shipped")
    expect(page.get_by_test_id(f"cell-{sku}-ST-MUNICH")).to_contain_text("2 / 2 / 0")
    assert _on_hand(browser, item, "ST-MUNICH") == 2
    # Berlin receives it on its fulfilment screen (transfers in).
    store = browser.open("berlin.manager", "/admin/fulfilment?tab=transfers")
    incoming = store.get_by_test_id("transfers-in")
    row = incoming.locator("tr", has_text=sku)
    row.get_by_role("button", name="Receive").click()
    expect(store.locator("#flash")).to_contain_text("received")
    assert _on_hand(browser, item, "ST-BERLIN") == 4
    # A count in Munich: one unit went missing.
    page.goto(f"/admin/inventory/count?variant_id={item}&location_id={munich}")
    page.get_by_label("Units counted").fill("1")
    page.get_by_role("button", name="Post the count").click()
    expect(page.locator("#flash")).to_contain_text("2 expected, 1 counted")
    expect(page.get_by_test_id("ledger").locator("tbody tr").first).to_contain_text("count")


def test_receiving_a_purchase_order(browser: Browser) -> None:
    item = browser.world.new_product({"WH-FRA": 1}, PRICES)
    sku = _sku(browser, item)
    reference = f"PO-{uuid.uuid4().hex[:8]}"
    page = browser.open("owner", "/admin/inventory/purchase-orders/new")
    page.get_by_label("Reference").fill(reference)
    page.get_by_label("Supplier").fill("Kaffeerösterei Hamburg")
    page.get_by_label("Deliver to").select_option(str(browser.world.location_id("WH-FRA")))
    page.get_by_label("Lines").fill(f"{sku} 12")
    page.get_by_role("button", name="Create the purchase order").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(reference)
    page.reload()  # without the flash message
    assert_accessible(page)
    page.get_by_label(f"Units of {sku} that arrived now").fill("8")
    page.get_by_role("button", name="Receive").click()
    expect(page.locator("#flash")).to_contain_text("partially received")
    lines = page.get_by_test_id("po-lines")
    expect(lines.locator("tbody tr").first).to_contain_text("8")
    assert _on_hand(browser, item, "WH-FRA") == 9
    page.goto(f"/admin/inventory?q={sku}")
    expect(page.get_by_test_id(f"cell-{sku}-WH-FRA")).to_contain_text("9 / 9 / 0")
    expect(page.get_by_test_id(f"cell-{sku}-WH-FRA").locator("..")).to_contain_text("4 incoming")
    page.goto("/admin/inventory/purchase-orders")
    expect(page.get_by_role("link", name=reference)).to_be_visible()


def test_the_grid_updates_live_when_stock_changes_through_the_api(browser: Browser) -> None:
    item = browser.world.new_product({"ST-HAMBURG": 7}, PRICES)
    sku = _sku(browser, item)
    hamburg = browser.world.location_id("ST-HAMBURG")
    page = browser.open("owner", f"/admin/inventory?q={sku}")
    cell = page.get_by_test_id(f"cell-{sku}-ST-HAMBURG")
    expect(cell).to_contain_text("7 / 7 / 0")
    page.wait_for_timeout(500)  # the page's feed is connected
    answer = browser.world.client.post(
        "/v1/inventory/adjustments",
        headers={**staff_login(browser.world, "owner"), "Idempotency-Key": str(uuid.uuid4())},
        json={
            "location_id": hamburg,
            "lines": [{"variant_id": item, "quantity": 5, "reason": "receipt"}],
        },
    )
    assert answer.status_code == 201, answer.text
    expect(page.get_by_test_id(f"cell-{sku}-ST-HAMBURG")).to_contain_text(
        "12 / 12 / 0", timeout=15_000
    )
    assert re.search(rf"q={sku}", page.url)  # no reload, no navigation


def test_low_stock_view_verify_and_screenshot(browser: Browser) -> None:
    page = browser.open("owner", "/admin/inventory?view=low")
    expect(page.get_by_label("Low stock only")).to_be_checked()
    assert_accessible(page)
    page.get_by_role("link", name="Run the check").click()
    expect(page.get_by_test_id("verify-result")).to_contain_text("The ledger checks out")
    assert_accessible(page)
    page.goto("/admin/inventory")
    expect(page.get_by_test_id("stock-grid")).to_be_visible()
    screenshot(page, "inventory")


def test_an_analyst_reads_the_stock_but_cannot_move_it(browser: Browser) -> None:
    page = browser.open("analyst", "/admin/inventory")
    expect(page.get_by_test_id("stock-grid")).to_be_visible()
    expect(page.get_by_role("link", name="Adjust")).to_have_count(0)
    assert page.request.get("/admin/inventory/adjust").status == 403
