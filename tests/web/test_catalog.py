"""The catalog screen in Chromium: a merchandiser translates, illustrates and prices a
product and shoppers see it; a bulk import is checked line by line before it applies; the
catalog downloads; a store associate only reads."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

from playwright.sync_api import Locator, Page, expect

from tests.catalog.test_images import png
from tests.demo_world import staff_login
from tests.web.browser import Browser, assert_accessible, screenshot


def _product(browser: Browser) -> dict[str, Any]:
    """A fresh active product with a euro price (as the API answers it)."""
    world = browser.world
    variant_id = world.new_product({"WH-FRA": 5}, {"EU": {"EUR": "10.00"}})
    owner = staff_login(world, "owner")
    variant = world.client.get(f"/v1/variants/{variant_id}", headers=owner).json()
    product: dict[str, Any] = world.client.get(
        f"/v1/products/{variant['product_id']}", headers=owner
    ).json()
    return product


def _open_product(browser: Browser, who: str, product: dict[str, Any]) -> Page:
    return browser.open(who, f"/admin/catalog/products/{product['id']}")


def test_a_merchandiser_translates_a_product_and_shoppers_read_it_in_their_language(
    browser: Browser,
) -> None:
    product = _product(browser)
    page = browser.open("owner", f"/admin/catalog?q={product['code']}")
    assert_accessible(page)
    screenshot(page, "catalog")
    page.get_by_role("link", name=product["code"]).click()
    expect(page.get_by_role("heading", name=product["name"], level=1)).to_be_visible()
    assert_accessible(page)
    screenshot(page, "product")

    page.get_by_label("Name (de)").fill("Kaffeebohnen Hochland")
    page.get_by_role("button", name="Save de", exact=True).click()
    expect(page.get_by_role("status")).to_have_text("Translation saved.")
    page.get_by_label("Name (ja)").fill("高地のコーヒー豆")
    page.get_by_role("button", name="Save ja", exact=True).click()
    expect(page.get_by_label("Name (ja)")).to_have_value("高地のコーヒー豆")

    world = browser.world
    german = world.client.get(f"/v1/store/products/{product['id']}", headers=world.key("web-de"))
    assert german.status_code == 200, german.text
    assert german.json()["name"] == "Kaffeebohnen Hochland"
    japanese = world.client.get(f"/v1/store/products/{product['id']}", headers=world.key("web-jp"))
    assert japanese.json()["name"] == "高地のコーヒー豆"


def test_an_uploaded_image_is_shown_and_served_with_caching_headers(
    browser: Browser, tmp_path: Path
) -> None:
    product = _product(browser)
    page = _open_product(browser, "owner", product)
    picture = tmp_path / "front.png"
    picture.write_bytes(png(4, 4, shade=uuid.uuid4().int % 256))
    page.get_by_label(re.compile("Upload an image")).set_input_files(str(picture))
    page.get_by_role("button", name="Upload", exact=True).click()
    expect(page.get_by_role("status")).to_have_text("Image added.")
    image = page.get_by_role("img", name=re.compile("Image 1 of"))
    expect(image).to_be_visible()
    src = image.get_attribute("src")
    assert src is not None and "/media/catalog/" in src
    answer = page.request.get(src)
    assert answer.status == 200
    assert answer.headers["content-type"] == "image/png"
    assert answer.headers["cache-control"].startswith("public, max-age=")
    assert answer.headers["etag"]
    assert answer.body() == picture.read_bytes()

    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("not a picture")
    page.get_by_label(re.compile("Upload an image")).set_input_files(str(not_an_image))
    page.get_by_role("button", name="Upload", exact=True).click()
    expect(page.get_by_text("the file is not a JPEG, PNG or WebP image")).to_be_visible()


def test_a_price_is_changed_and_the_storefront_sells_at_it(browser: Browser) -> None:
    product = _product(browser)
    page = _open_product(browser, "owner", product)
    prices = page.get_by_test_id("prices")
    expect(prices).to_contain_text("€10.00")
    page.get_by_label("Price list").select_option("EU")
    page.get_by_label("Currency").fill("EUR")
    page.get_by_label("Amount").fill("12.50")
    page.get_by_role("button", name="Save price").click()
    expect(page.get_by_role("status")).to_have_text("Price saved.")
    expect(prices).to_contain_text("€12.50")
    expect(prices).not_to_contain_text("€10.00")
    world = browser.world
    shown = world.client.get(f"/v1/store/products/{product['id']}", headers=world.key("web-de"))
    assert "12.5" in shown.text


def _csv(code: str, barcode: str) -> str:
    return (
        "product_code,sku,name,status,barcode\n"
        f"{code}-A,{code}-A-1,Imported A,draft,\n"
        f"{code}-B,{code}-B-1,Imported B,draft,{barcode}\n"
    )


def _products_named(browser: Browser, code: str) -> list[Any]:
    owner = staff_login(browser.world, "owner")
    found = browser.world.client.get("/v1/products", params={"q": code}, headers=owner)
    items: list[Any] = found.json()["items"]
    return items


def _finished(page: Page) -> Locator:
    """The job page once the background work has ended."""
    expect(page).to_have_url(re.compile(r"/admin/jobs/\d+$"))
    progress = page.locator("#job-progress")
    expect(progress).to_have_attribute("data-status", "succeeded", timeout=30_000)
    return progress


def test_a_dry_run_import_reports_the_bad_line_and_changes_nothing_then_a_good_file_applies(
    browser: Browser, tmp_path: Path
) -> None:
    code = f"IMP{uuid.uuid4().hex[:6].upper()}"
    page = browser.open("owner", "/admin/catalog")
    page.get_by_role("link", name="Import").click()
    assert_accessible(page)
    bad = tmp_path / "bad.csv"
    bad.write_text(_csv(code, "12345"))
    page.get_by_label("CSV or JSON file (UTF-8)").set_input_files(str(bad))
    expect(page.get_by_label("Dry run: check the file and change nothing")).to_be_checked()
    page.get_by_role("button", name="Check and import").click()
    report = _finished(page)
    lines = report.get_by_test_id("job-lines")
    expect(lines.locator("tbody tr")).to_have_count(1)
    expect(lines.get_by_role("cell", name="3", exact=True)).to_be_visible()
    expect(lines).to_contain_text("barcode")
    assert _products_named(browser, code) == []

    page.goto("/admin/catalog/import")
    good = tmp_path / "good.csv"
    good.write_text(_csv(code, ""))
    page.get_by_label("CSV or JSON file (UTF-8)").set_input_files(str(good))
    page.get_by_label("Dry run: check the file and change nothing").uncheck()
    page.get_by_role("button", name="Check and import").click()
    report = _finished(page)
    expect(report.get_by_test_id("job-lines")).to_have_count(0)
    assert sorted(p["code"] for p in _products_named(browser, code)) == [f"{code}-A", f"{code}-B"]


def test_the_catalog_exports_in_the_background_and_downloads(browser: Browser) -> None:
    product = _product(browser)
    page = browser.open("owner", "/admin/catalog")
    page.get_by_role("button", name="Export CSV").click()
    _finished(page)
    with page.expect_download() as csv_download:
        page.get_by_role("link", name="Download catalog.csv").click()
    text = Path(csv_download.value.path()).read_text(encoding="utf-8")
    assert text.startswith("product_code,")
    assert product["code"] in text
    page.goto("/admin/catalog")
    page.get_by_role("button", name="Export JSON").click()
    _finished(page)
    with page.expect_download() as json_download:
        page.get_by_role("link", name="Download catalog.json").click()
    assert product["code"] in Path(json_download.value.path()).read_text(encoding="utf-8")


def test_a_store_associate_reads_the_catalog_and_may_change_nothing(browser: Browser) -> None:
    product = _product(browser)
    page = browser.open("shibuya.associate", f"/admin/catalog?q={product['code']}")
    expect(page.get_by_role("link", name="New product")).to_have_count(0)
    expect(page.get_by_role("link", name="Import")).to_have_count(0)
    page.get_by_role("link", name=product["code"]).click()
    expect(page.get_by_role("heading", name=product["name"], level=1)).to_be_visible()
    assert_accessible(page)
    expect(page.get_by_role("button", name="Save details")).to_have_count(0)
    expect(page.get_by_role("button", name="Save de", exact=True)).to_have_count(0)
    expect(page.get_by_role("button", name="Upload")).to_have_count(0)
    expect(page.get_by_role("button", name="Save price")).to_have_count(0)
    expect(page.get_by_label("Name", exact=True)).to_be_disabled()
    headers = page.locator("body").get_attribute("hx-headers") or ""
    token = re.search(r'"X-CSRF-Token": "([^"]+)"', headers)
    assert token is not None
    refused = page.request.post(
        f"/admin/catalog/products/{product['id']}",
        form={"csrf_token": token.group(1), "name": "Renamed by a shop"},
    )
    assert refused.status == 403
    import_page = page.request.get("/admin/catalog/import")
    assert import_page.status == 403
    owner = staff_login(browser.world, "owner")
    unchanged = browser.world.client.get(f"/v1/products/{product['id']}", headers=owner)
    assert unchanged.json()["name"] == product["name"]
