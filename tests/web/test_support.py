"""The support inbox in Chromium: an agent takes a case, answers it and adds an internal
note; the customer reads the answer through the shopper API and never the note; the SLA
filter the home page links to; satisfaction after the case is closed; the analyst is kept
out."""

from __future__ import annotations

import json
import re
import uuid
from datetime import timedelta
from typing import Any

from playwright.sync_api import expect

from mercato.db import utcnow
from tests.commerce.helpers import ok
from tests.demo_world import DemoWorld, staff_login
from tests.helpers import drain
from tests.returns.conftest import place
from tests.web.browser import Browser, assert_accessible, screenshot
from tests.web.test_customers import Person, _person


def _shopper_case(world: DemoWorld, person: Person, order_id: int | None = None) -> dict[str, Any]:
    """The customer opens a case in the app's web store, about one of her orders."""
    subject = f"Where is my parcel {uuid.uuid4().hex[:6]}"
    body: dict[str, Any] = {"subject": subject, "message": {"body": "It has not arrived yet."}}
    if order_id is not None:
        body["order_id"] = order_id
    headers = {**world.key("web-jp"), **person.headers, "Idempotency-Key": uuid.uuid4().hex}
    return ok(world.client.post("/v1/store/support/cases", headers=headers, json=body), 201)


def _customer_view(world: DemoWorld, person: Person, case_id: int) -> dict[str, Any]:
    headers = {**world.key("web-jp"), **person.headers}
    return ok(world.client.get(f"/v1/store/support/cases/{case_id}", headers=headers))


def test_an_agent_answers_a_case_and_the_customer_sees_the_reply_not_the_note(
    browser: Browser,
) -> None:
    world = browser.world
    person = _person(world)
    item = world.new_product({"WH-TYO": 5}, {"JP": {"JPY": "2500"}})
    order = place(world, [(item, 1)], customer=person.headers)
    drain(world)
    case = _shopper_case(world, person, order.id)

    page = browser.open("support", "/admin/support?status=new&source=web")
    expect(page).to_have_url(re.compile(r"status=new&source=web"))
    row = page.get_by_test_id(f"case-{case['number']}")
    expect(row).to_contain_text(case["subject"])
    assert_accessible(page)
    screenshot(page, "support")
    row.get_by_role("link", name=case["number"]).click()

    expect(page.get_by_test_id("thread")).to_contain_text("It has not arrived yet.")
    expect(page.get_by_test_id("case-customer")).to_contain_text(person.email)
    expect(page.get_by_test_id("case-orders")).to_contain_text(order.number)
    expect(page.get_by_test_id("sla")).to_contain_text("Answer")
    assert_accessible(page)

    page.get_by_role("button", name="Assign to me").click()
    expect(page.get_by_test_id("assignee")).not_to_contain_text("Nobody yet")
    page.get_by_label("Your message").fill("It left our warehouse today; tracking follows.")
    page.get_by_label("Kind").select_option("outbound")
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#flash")).to_contain_text("Reply sent to the customer.")
    page.get_by_label("Your message").fill("Carrier was late this week, check again Friday.")
    page.get_by_label("Kind").select_option("internal")
    page.get_by_role("button", name="Send").click()
    thread = page.get_by_test_id("thread")
    expect(thread.locator("[data-direction=internal]")).to_contain_text("check again Friday")
    expect(thread.locator("[data-direction=outbound]")).to_contain_text("tracking follows")

    seen = _customer_view(world, person, case["id"])
    bodies = [m["body"] for m in seen["messages"]]
    assert "It left our warehouse today; tracking follows." in bodies
    assert not any("check again Friday" in b for b in bodies)

    # Closed, then rated by the customer: the inbox shows the satisfaction.
    page.get_by_label("New status").select_option("closed")
    page.get_by_role("button", name="Change status").click()
    expect(page.locator("#flash")).to_contain_text("Status changed.")
    rating = {"satisfaction": 4, "comment": "Quick answer"}
    headers = {**world.key("web-jp"), **person.headers, "Idempotency-Key": uuid.uuid4().hex}
    ok(
        world.client.post(
            f"/v1/store/support/cases/{case['id']}/rating", headers=headers, json=rating
        )
    )
    page.reload()
    expect(page.get_by_test_id("satisfaction")).to_contain_text("★★★★☆")
    expect(page.get_by_test_id("satisfaction")).to_contain_text("Quick answer")


def test_the_inbox_filters_cases_past_their_sla(browser: Browser) -> None:
    world = browser.world
    person = _person(world)
    app = world.client.app
    # Opened three days ago (the API's clock moved back): both due times have passed.
    app.state.support_clock = lambda: utcnow() - timedelta(days=3)  # type: ignore[attr-defined]
    try:
        late = ok(
            world.client.post(
                "/v1/support/cases",
                headers={**staff_login(world, "support"), "Idempotency-Key": uuid.uuid4().hex},
                json={
                    "customer_id": person.id,
                    "subject": f"Refund not received {uuid.uuid4().hex[:6]}",
                    "source": "phone",
                    "message": {"body": "Called twice", "direction": "inbound", "channel": "phone"},
                },
            ),
            201,
        )
    finally:
        del app.state.support_clock  # type: ignore[attr-defined]
    fresh = _shopper_case(world, person)

    page = browser.open("support", "/admin/support?sla=breached")
    expect(page.get_by_label("SLA")).to_have_value("breached")
    expect(page.get_by_test_id(f"case-{late['number']}")).to_contain_text("Overdue")
    expect(page.get_by_test_id(f"case-{fresh['number']}")).to_have_count(0)
    # The filters change the list in place and stay in the URL.
    page.get_by_label("Contact channel").select_option("phone")
    expect(page).to_have_url(re.compile(r"sla=breached.*source=phone|source=phone.*sla=breached"))
    expect(page.get_by_test_id(f"case-{late['number']}")).to_be_visible()
    page.get_by_label("SLA").select_option("")
    expect(page).not_to_have_url(re.compile("sla=breached"))
    page.get_by_label("Contact channel").select_option("web")
    expect(page).to_have_url(re.compile("source=web"))
    expect(page.get_by_test_id(f"case-{fresh['number']}")).to_be_visible()
    assert_accessible(page)


def test_only_support_writers_act_and_the_analyst_is_kept_out(browser: Browser) -> None:
    world = browser.world
    person = _person(world)
    case = _shopper_case(world, person)
    owner = browser.open("owner", f"/admin/support/cases/{case['id']}")
    expect(owner.get_by_role("button", name="Send")).to_be_visible()

    analyst = browser.open("analyst", "/admin/customers")
    nav = analyst.get_by_role("complementary", name="Screens")
    expect(nav.get_by_role("link", name="Support")).to_have_count(0)
    for path in ("/admin/support", f"/admin/support/cases/{case['id']}"):
        answer = analyst.request.get(path)
        assert answer.status == 403
        assert person.email not in answer.text() and person.last_name not in answer.text()
    headers = analyst.locator("body").get_attribute("hx-headers")
    assert headers is not None
    token = json.loads(headers)["X-CSRF-Token"]
    refused = analyst.request.post(
        f"/admin/support/cases/{case['id']}/messages",
        form={"body": "hello", "direction": "outbound", "csrf_token": token},
    )
    assert refused.status == 403
    assert len(_customer_view(world, person, case["id"])["messages"]) == 1
