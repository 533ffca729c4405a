"""Fulfilment for one location in Chromium: a click & collect order picked, shelved and
handed over with its code; a parcel packed and shipped with a label and tracking; a return
received at the returns desk; store staff kept to their store."""

from __future__ import annotations

import re
import uuid
from typing import Any

from playwright.sync_api import expect

from mercato.inventory import service as inventory
from tests.commerce.helpers import BERLIN, add, card_token, new_cart, ok, ship_to
from tests.demo_world import DemoWorld, staff_login
from tests.helpers import drain
from tests.web.browser import Browser, assert_accessible, screenshot

PRICES = {"EU": {"EUR": "39.00"}}


def _checkout(world: DemoWorld, key: dict[str, str], token: str, total: str) -> dict[str, Any]:
    return ok(
        world.client.post(
            f"/v1/store/carts/{token}/checkout",
            headers={**key, "Idempotency-Key": str(uuid.uuid4())},
            json={
                "email": "lena@example.de",
                "payments": [
                    {
                        "method": "test_gateway",
                        "amount": total,
                        "token": card_token(world.client, key),
                    }
                ],
            },
        ),
        201,
    )


def _pickup_order(world: DemoWorld, item: int, store: str) -> dict[str, Any]:
    """A web order to collect at ``store``, routed (the live server's dispatcher is off)."""
    client, key = world.client, world.key("web-de")
    token = new_cart(client, key)["token"]
    line = add(client, key, token, item, 1)["lines"][0]
    client.patch(
        f"/v1/store/carts/{token}/lines/{line['id']}",
        headers=key,
        json={"delivery_mode": "pickup", "pickup_location_id": world.location_id(store)},
    )
    cart = ok(
        client.patch(f"/v1/store/carts/{token}", headers=key, json={"email": "lena@example.de"})
    )
    order = _checkout(world, key, token, cart["grand_total"]["amount"])
    drain(world)
    return order


def _shipped_order(world: DemoWorld, item: int) -> dict[str, Any]:
    client, key = world.client, world.key("web-de")
    token = new_cart(client, key)["token"]
    add(client, key, token, item, 1)
    cart = ship_to(client, key, token, BERLIN, email="lena@example.de")
    order = _checkout(world, key, token, cart["grand_total"]["amount"])
    drain(world)
    return order


def _on_hand(world: DemoWorld, item: int, code: str) -> int:
    with world.database.read() as session:
        return inventory.get_level(session, item, world.location_id(code)).on_hand


def test_a_pickup_order_is_picked_shelved_and_handed_over_with_its_code(
    browser: Browser,
) -> None:
    world = browser.world
    item = world.new_product({"ST-BERLIN": 3}, PRICES)
    order = _pickup_order(world, item, "ST-BERLIN")
    page = browser.open("berlin.manager", "/admin/fulfilment")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Berlin Mitte store")
    page.get_by_label("Order number").fill(order["number"])
    page.get_by_role("button", name="Find").click()
    task = page.get_by_test_id(f"task-{order['number']}")
    expect(task).to_be_visible()
    assert_accessible(page)
    screenshot(page, "fulfilment")
    task.get_by_role("button", name="Start picking").click()
    expect(page.locator("#flash")).to_contain_text(f"Picking {order['number']}")
    page.get_by_test_id(f"task-{order['number']}").get_by_role(
        "button", name="Ready for pickup"
    ).click()
    flash = page.locator("#flash")
    expect(flash).to_contain_text("Pickup code:")
    code = re.search(r"Pickup code: (\d{6})", flash.inner_text())
    assert code is not None
    shelf = page.get_by_test_id(f"task-{order['number']}")
    expect(shelf).to_contain_text("Collect by")
    # A wrong code is refused beside the form; nothing is handed over.
    wrong = "000000" if code.group(1) != "000000" else "111111"
    shelf.get_by_label("Pickup code").fill(wrong)
    shelf.get_by_role("button", name="Hand over").click()
    expect(page.get_by_test_id("task-problem")).to_contain_text("does not match")
    assert _on_hand(world, item, "ST-BERLIN") == 3
    page.get_by_test_id(f"task-{order['number']}").get_by_label("Pickup code").fill(code.group(1))
    page.get_by_test_id(f"task-{order['number']}").get_by_role("button", name="Hand over").click()
    expect(page.locator("#flash")).to_contain_text(f"Handed over {order['number']}")
    assert _on_hand(world, item, "ST-BERLIN") == 2
    staff = staff_login(world, "owner")
    final = ok(world.client.get(f"/v1/orders/{order['id']}", headers=staff))
    assert final["status"] == "picked_up"


def test_a_shipped_order_gets_a_label_and_tracking(browser: Browser) -> None:
    world = browser.world
    item = world.new_product({"WH-FRA": 4}, PRICES)
    order = _shipped_order(world, item)
    frankfurt = world.location_id("WH-FRA")
    page = browser.open("owner", f"/admin/fulfilment?location={frankfurt}&order={order['number']}")
    task = page.get_by_test_id(f"task-{order['number']}")
    task.get_by_label("Parcel weight (g)").fill("650")
    task.get_by_role("button", name="Pack").click()
    expect(page.locator("#flash")).to_contain_text(f"Packed {order['number']}")
    page.get_by_test_id(f"task-{order['number']}").get_by_role(
        "button", name="Ship with a label"
    ).click()
    expect(page.locator("#flash")).to_contain_text(f"Shipped {order['number']}")
    shipped = page.get_by_test_id(f"task-{order['number']}")
    tracking = shipped.get_by_test_id("tracking").first
    expect(tracking).not_to_be_empty()
    number = tracking.inner_text().strip()
    assert _on_hand(world, item, "WH-FRA") == 3
    shipped.get_by_role("link", name=f"Labels of {order['number']}").click()
    expect(page.get_by_role("heading", level=2).first).to_contain_text(number)
    expect(page.get_by_test_id("label-content").first).to_be_visible()
    assert_accessible(page)


def test_a_return_is_received_at_the_returns_desk(browser: Browser) -> None:
    world = browser.world
    item = world.new_product({"ST-BERLIN": 2}, PRICES)
    order = _pickup_order(world, item, "ST-BERLIN")
    manager = staff_login(world, "berlin.manager")
    task = next(
        t
        for t in ok(
            world.client.get("/v1/fulfillment/orders?kind=pickup&limit=200", headers=manager)
        )["items"]
        if t["order_id"] == order["id"]
    )
    code = ok(world.client.post(f"/v1/fulfillment/orders/{task['id']}/ready", headers=manager))[
        "pickup_code"
    ]
    ok(
        world.client.post(
            f"/v1/fulfillment/orders/{task['id']}/handover", headers=manager, json={"code": code}
        )
    )
    owner = staff_login(world, "owner")
    full = ok(world.client.get(f"/v1/orders/{order['id']}", headers=owner))
    ret = ok(
        world.client.post(
            "/v1/returns",
            headers={**owner, "Idempotency-Key": str(uuid.uuid4())},
            json={
                "order_id": order["id"],
                "lines": [
                    {"order_line_id": full["lines"][0]["id"], "quantity": 1, "reason": "size_fit"}
                ],
            },
        ),
        201,
    )
    if ret["status"] == "requested":
        ok(world.client.post(f"/v1/returns/{ret['id']}/approve", headers=owner, json={}))
    assert _on_hand(world, item, "ST-BERLIN") == 1
    page = browser.open("berlin.manager", "/admin/fulfilment?tab=returns")
    desk = page.get_by_test_id(f"return-{ret['number']}")
    expect(desk).to_be_visible()
    assert_accessible(page)
    desk.get_by_role("combobox").first.select_option("restock")
    desk.get_by_role("button", name="Receive here").click()
    expect(page.locator("#flash")).to_contain_text(f"Return {ret['number']} received")
    expect(page.get_by_test_id("returns-received")).to_contain_text(ret["number"])
    assert _on_hand(world, item, "ST-BERLIN") == 2  # back on the shelf here


def test_store_staff_work_only_at_their_store(browser: Browser) -> None:
    world = browser.world
    munich = world.location_id("ST-MUNICH")
    page = browser.open("berlin.manager", "/admin/fulfilment")
    # One store: nothing to choose.
    expect(page.get_by_label("Location", exact=True)).to_have_count(0)
    assert page.request.get(f"/admin/fulfilment?location={munich}").status == 403
    page.goto("/admin/fulfilment?tab=transfers")
    assert_accessible(page)
    analyst = browser.open("analyst", "/admin/fulfilment")
    expect(analyst.get_by_role("button", name="Start picking")).to_have_count(0)
