"""The orders screen in Chromium: finding an order by phone, routing it again, holds,
cancellation, capture and refund, an order taken on the phone, what an analyst and a
store manager see, and filters kept in the URL."""

from __future__ import annotations

import random
import re
import uuid
from typing import Any

from playwright.sync_api import expect

from mercato.catalog import service as catalog
from tests.commerce.helpers import BERLIN, add, card_token, new_cart, ok
from tests.demo_world import DemoWorld, staff_login
from tests.helpers import drain
from tests.web.browser import Browser, assert_accessible, screenshot


def _phone() -> str:
    """A Berlin landline nobody else in the shared demo business has."""
    return f"+4930{random.randint(1_000_000, 9_999_999)}"


def _place(
    world: DemoWorld,
    variant: int,
    *,
    phone: str | None = None,
    email: str | None = None,
    quantity: int = 1,
) -> dict[str, Any]:
    """A web order from Germany paid by card; with ``phone``, the buyer's billing phone
    (what the order is found by)."""
    client, key = world.client, world.key("web-de")
    token = new_cart(client, key)["token"]
    add(client, key, token, variant, quantity)
    patch: dict[str, Any] = {
        "email": email or f"shopper-{uuid.uuid4().hex[:8]}@example.de",
        "shipping_address": BERLIN,
    }
    if phone:
        patch["billing_address"] = {**BERLIN, "name": "Lena Schmidt (billing)", "phone": phone}
    cart = ok(client.patch(f"/v1/store/carts/{token}", headers=key, json=patch))
    option = cart["shipping_options"][0]["option_id"]
    cart = ok(
        client.patch(f"/v1/store/carts/{token}", headers=key, json={"shipping_option_id": option})
    )
    tender = {
        "method": "test_gateway",
        "amount": cart["grand_total"]["amount"],
        "token": card_token(client, key),
    }
    order = ok(
        client.post(
            f"/v1/store/carts/{token}/checkout",
            headers={**key, "Idempotency-Key": str(uuid.uuid4())},
            json={"payments": [tender]},
        ),
        201,
    )
    drain(world)
    return order


def _sku(world: DemoWorld, variant: int) -> str:
    with world.database.read() as session:
        return catalog.get_variant(session, variant).sku


def _tasks(world: DemoWorld, order_id: int, location: str) -> list[dict[str, Any]]:
    """The location's pick list (``GET /v1/fulfillment/orders``), this order's tasks."""
    owner = staff_login(world)
    place = world.location_id(location)
    found = ok(
        world.client.get(f"/v1/fulfillment/orders?location_id={place}&limit=200", headers=owner)
    )["items"]
    return [t for t in found if t["order_id"] == order_id]


def test_an_order_found_by_phone_is_routed_again_to_the_store(browser: Browser) -> None:
    world = browser.world
    client, owner = world.client, staff_login(world)
    item = world.new_product({"WH-FRA": 1}, {"EU": {"EUR": "45.00"}})
    phone = _phone()
    order = _place(world, item, phone=phone)
    [task] = _tasks(world, order["id"], "WH-FRA")
    # The warehouse cannot find it (and writes the unit off); the Berlin store gets two.
    line = order["lines"][0]["id"]
    ok(
        client.post(
            f"/v1/fulfillment/orders/{task['id']}/reject",
            headers=owner,
            json={"order_line_ids": [line], "reason": "not on the shelf"},
        )
    )
    for code, delta, reason in (("WH-FRA", -1, "damage"), ("ST-BERLIN", 2, "receipt")):
        ok(
            client.post(
                "/v1/inventory/adjustments",
                headers={**owner, "Idempotency-Key": str(uuid.uuid4())},
                json={
                    "location_id": world.location_id(code),
                    "lines": [{"variant_id": item, "quantity": delta, "reason": reason}],
                },
            ),
            201,
        )
    assert _tasks(world, order["id"], "ST-BERLIN") == []

    page = browser.open("admin", "/admin/orders")
    page.get_by_label("Search").fill(phone)
    page.get_by_role("button", name="Find").click()
    expect(page).to_have_url(re.compile(r"q=%2B4930"))
    orders = page.get_by_test_id("orders")
    expect(orders.get_by_role("link")).to_have_count(1)
    orders.get_by_role("link", name=order["number"]).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(order["number"])
    assert_accessible(page)
    page.get_by_role("button", name="Re-route").click()
    expect(page.locator("#flash")).to_contain_text("Order routed again.")
    expect(page.get_by_test_id("tasks")).to_contain_text("Berlin")
    # The store's pick list (the fulfilment screen's, read through the API) has it.
    [picked] = _tasks(world, order["id"], "ST-BERLIN")
    assert picked["kind"] == "ship" and picked["status"] == "open"


def test_hold_and_release(browser: Browser) -> None:
    world = browser.world
    item = world.new_product({"WH-FRA": 3}, {"EU": {"EUR": "19.00"}})
    order = _place(world, item)
    page = browser.open("owner", f"/admin/orders/{order['id']}")
    page.get_by_text("Put on hold").first.click()
    page.get_by_label("Why hold it").fill("Address to be checked with the customer")
    page.get_by_role("button", name="Hold the order").click()
    expect(page.locator("#flash")).to_contain_text("Order put on hold.")
    expect(page.get_by_test_id("on-hold")).to_be_visible()
    expect(page.get_by_test_id("timeline")).to_contain_text("Address to be checked")
    page.goto("/admin/orders?status=on_hold")
    expect(page.get_by_test_id("orders").get_by_role("link", name=order["number"])).to_be_visible()
    page.goto(f"/admin/orders/{order['id']}")
    page.get_by_role("button", name="Release hold").click()
    expect(page.locator("#flash")).to_contain_text("Hold released.")
    expect(page.get_by_test_id("on-hold")).to_have_count(0)
    body = ok(world.client.get(f"/v1/orders/{order['id']}", headers=staff_login(world)))
    assert body["on_hold"] is False
    assert [a["kind"] for a in body["activity"] if a["kind"] != "status"] == [
        "hold",
        "hold_released",
    ]


def test_cancel_an_order(browser: Browser) -> None:
    world = browser.world
    item = world.new_product({"WH-FRA": 3}, {"EU": {"EUR": "25.00"}})
    order = _place(world, item)
    page = browser.open("owner", f"/admin/orders/{order['id']}")
    page.get_by_text("Cancel order").click()
    page.get_by_label("Why cancel it").fill("Customer changed her mind on the phone")
    page.get_by_role("button", name="Cancel the order").click()
    expect(page.locator("#flash")).to_contain_text("Order cancelled.")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Cancelled")
    expect(page.get_by_test_id("payment-state").first).to_have_text("Voided")
    expect(page.get_by_role("button", name="Re-route")).to_have_count(0)


def test_capture_and_refund(browser: Browser) -> None:
    world = browser.world
    item = world.new_product({"WH-FRA": 3}, {"EU": {"EUR": "40.00"}})
    order = _place(world, item)
    page = browser.open("owner", f"/admin/orders/{order['id']}")
    expect(page.get_by_test_id("payment-state")).to_have_text("Authorised")
    page.get_by_role("button", name=re.compile(r"^Capture")).click()
    expect(page.locator("#flash")).to_contain_text("Payment captured.")
    expect(page.get_by_test_id("payment-state").first).to_have_text("Captured")
    page.get_by_text("Refund", exact=True).click()
    page.get_by_label(re.compile(r"^Amount")).fill("10.00")
    page.get_by_label("Reason", exact=True).fill("Scratched box, goodwill")
    page.get_by_role("button", name="Send refund").click()
    expect(page.locator("#flash")).to_contain_text("Refund sent.")
    expect(page.get_by_test_id("payment-state").first).to_have_text("Partly refunded")
    expect(page.get_by_test_id("payments")).to_contain_text("Scratched box")
    page.reload()  # without the flash message
    assert_accessible(page)
    screenshot(page, "order")


def test_a_call_centre_agent_takes_an_order_on_the_phone(browser: Browser) -> None:
    world = browser.world
    item = world.new_product({"WH-FRA": 4}, {"GLOBAL": {"EUR": "30.00"}})
    sku, phone = _sku(world, item), _phone()
    page = browser.open("admin", "/admin/orders")
    page.get_by_role("link", name="Take an order").click()
    assert_accessible(page)
    page.get_by_label("Channel").select_option(label="Call centre")
    page.get_by_label("Phone (+49…)").fill(phone)
    page.get_by_label("Name").fill("Jonas Becker")
    page.get_by_label("Street and number").fill("Torstraße 5")
    page.get_by_label("Postal code").fill("10119")
    page.get_by_label("City").fill("Berlin")
    page.get_by_label("Country (two letters, e.g. DE)").fill("DE")
    page.get_by_label("SKU, line 1").fill(sku)
    page.get_by_label("Quantity, line 1").fill("2")
    page.get_by_role("button", name="Calculate the total").click()
    expect(page.get_by_test_id("quote-total")).to_contain_text("€")
    page.get_by_role("button", name="Place the order").click()
    expect(page.locator("#flash")).to_contain_text("placed")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Order M")
    expect(page.get_by_test_id("payment-state")).to_have_text("Authorised")
    # The customer calls back: the agent finds it by her phone number.
    page.goto(f"/admin/orders?q={phone.replace('+', '%2B')}")
    expect(page.get_by_test_id("orders").get_by_role("link")).to_have_count(1)


def test_the_analyst_sees_no_personal_data(browser: Browser) -> None:
    world = browser.world
    item = world.new_product({"WH-FRA": 3}, {"EU": {"EUR": "33.00"}})
    email = f"private-{uuid.uuid4().hex[:8]}@example.de"
    phone = _phone()
    order = _place(world, item, phone=phone, email=email)
    ok(
        world.client.post(
            f"/v1/orders/{order['id']}/notes",
            headers=staff_login(world),
            json={"body": f"Lena called from {phone}"},
        ),
        201,
    )
    page = browser.open("analyst", f"/admin/orders?q={order['number']}")
    expect(page.get_by_test_id("orders")).to_contain_text(order["number"])
    page.get_by_role("link", name=order["number"]).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(order["number"])
    html = page.content()
    for secret in (email, phone, "Lena", "Schmidt", "Torstraße", "10119"):
        assert secret not in html, secret
    expect(page.get_by_test_id("ship-to")).to_have_text(re.compile(r"^\s*DE\s*$"))
    # No actions for a reader.
    for name in ("Re-route", "Cancel order", "Put on hold", "Save note"):
        expect(page.get_by_text(name, exact=True)).to_have_count(0)
    assert page.request.post(f"/admin/orders/{order['id']}/hold").status == 403
    assert_accessible(page)


def test_a_store_manager_sees_only_the_stores_orders(browser: Browser) -> None:
    world = browser.world
    item = world.new_product({"ST-BERLIN": 3}, {"EU": {"EUR": "21.00"}})
    elsewhere = world.new_product({"WH-FRA": 3}, {"EU": {"EUR": "22.00"}})
    berlin = _place(world, item)
    frankfurt = _place(world, elsewhere)
    assert _tasks(world, berlin["id"], "ST-BERLIN")
    page = browser.open("berlin.manager", "/admin/orders")
    orders = page.get_by_test_id("orders")
    expect(orders.get_by_role("link", name=berlin["number"])).to_be_visible()
    expect(orders.get_by_role("link", name=frankfurt["number"])).to_have_count(0)
    assert page.get_by_label("Location").locator("option").count() == 2  # All, Berlin
    answer = page.request.get(f"/admin/orders/{frankfurt['id']}")
    assert answer.status in (403, 404)
    page.goto(f"/admin/orders?q={frankfurt['number']}")
    expect(page.get_by_text("No orders match.")).to_be_visible()
    api = world.client.get(
        f"/v1/orders/{frankfurt['id']}", headers=staff_login(world, "berlin.manager")
    )
    assert api.status_code == 404


def test_filters_stay_in_the_url(browser: Browser) -> None:
    page = browser.open("owner", "/admin/orders")
    assert_accessible(page)
    screenshot(page, "orders")
    page.get_by_label("Channel").select_option(label="Web store Germany")
    page.get_by_label("Status", exact=True).select_option("confirmed")
    page.get_by_label("Payment").select_option("authorized")
    page.get_by_label("Placed from").fill("2020-01-01")
    page.get_by_role("button", name="Find").click()
    expect(page).to_have_url(re.compile(r"status=confirmed"))
    page.reload()
    expect(page.get_by_label("Status", exact=True)).to_have_value("confirmed")
    expect(page.get_by_label("Payment")).to_have_value("authorized")
    expect(page.get_by_label("Placed from")).to_have_value("2020-01-01")
    expect(page.get_by_label("Channel")).not_to_have_value("")


def test_the_screen_speaks_the_users_language(browser: Browser) -> None:
    page = browser.open("owner", "/admin/orders", language="ja")
    expect(page.get_by_role("heading", level=1)).to_have_text("注文")
    expect(page.get_by_role("button", name="検索")).to_be_visible()
    page = browser.open("owner", "/admin/?period=7", language="de")
    expect(page.get_by_role("heading", name="Verkäufe")).to_be_visible()


def test_a_return_is_started_from_a_shipped_order(browser: Browser) -> None:
    world = browser.world
    owner = staff_login(world)
    item = world.new_product({"WH-FRA": 3}, {"EU": {"EUR": "28.00"}})
    order = _place(world, item, quantity=2)
    [task] = _tasks(world, order["id"], "WH-FRA")
    ok(world.client.post(f"/v1/fulfillment/orders/{task['id']}/ship", headers=owner, json={}))
    drain(world)
    page = browser.open("support", f"/admin/orders/{order['id']}")
    expect(page.get_by_test_id("tasks")).to_contain_text("shipped")
    page.get_by_text("Start a return").click()
    page.get_by_label(re.compile(r"at most 2")).fill("1")
    page.get_by_label("Reason", exact=True).select_option("damaged")
    page.get_by_role("button", name="Start the return").click()
    expect(page.locator("#flash")).to_contain_text(re.compile(r"Return \S+ started\."))
    expect(page.get_by_test_id("returns")).to_be_visible()
    returns = ok(world.client.get(f"/v1/returns?order_id={order['id']}", headers=owner))
    assert len(returns["items"]) == 1


def test_each_action_shows_only_to_roles_allowed_to_use_it(browser: Browser) -> None:
    world = browser.world
    item = world.new_product({"WH-FRA": 3}, {"EU": {"EUR": "18.00"}})
    order = _place(world, item)
    # Support may hold, cancel and write notes, but not move money.
    page = browser.open("support", f"/admin/orders/{order['id']}")
    expect(page.get_by_text("Put on hold")).to_be_visible()
    expect(page.get_by_role("button", name="Save note")).to_be_visible()
    expect(page.get_by_role("button", name=re.compile(r"^Capture"))).to_have_count(0)
    # The analyst reads only: no order form either.
    page = browser.open("analyst", "/admin/orders")
    expect(page.get_by_role("link", name="Take an order")).to_have_count(0)
    assert page.request.get("/admin/orders/new").status == 403
