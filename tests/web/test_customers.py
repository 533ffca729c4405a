"""The customers screen in Chromium: a support agent finds a customer by phone and reads
the 360 page; duplicates are merged and the merge undone; a privacy export runs in the
background and downloads; an erasure shows what it keeps, asks for confirmation and
leaves no personal data on the page; the analyst sees pseudonymous records only."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass

from playwright.sync_api import Page, expect

from tests.commerce.helpers import ok
from tests.demo_world import DemoWorld, staff_login
from tests.helpers import drain
from tests.returns.conftest import place
from tests.web.browser import Browser, assert_accessible, screenshot


@dataclass
class Person:
    id: int
    email: str
    phone: str
    first_name: str
    last_name: str
    headers: dict[str, str]

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}"


def _phone() -> str:
    # A valid Japanese mobile number, different for each test run.
    return "+8190" + str(uuid.uuid4().int)[:8]


def _person(world: DemoWorld, phone: str | None = None, last_name: str | None = None) -> Person:
    """A shopper who registered on the Japanese web store, with a name and a phone."""
    tag = uuid.uuid4().hex[:8]
    email = f"cust-{tag}@example.com"
    phone = phone or _phone()
    first, last = "Hanako", last_name or f"Tanaka{tag}"
    response = world.client.post(
        "/v1/store/customers",
        headers=world.key("web-jp"),
        json={
            "email": email,
            "password": "a long password",
            "first_name": first,
            "last_name": last,
            "phone": phone,
        },
    )
    body = ok(response, 201)
    headers = {"Authorization": f"Bearer {body['token']}"}
    return Person(body["customer"]["id"], email, body["customer"]["phone"], first, last, headers)


def _grant_email_consent(world: DemoWorld, person: Person) -> None:
    body = {
        "changes": [{"purpose": "marketing_email", "granted": True, "wording_version": "2026-01"}]
    }
    ok(
        world.client.post(
            "/v1/store/consents", headers={**world.key("web-jp"), **person.headers}, json=body
        )
    )


def _no_personal_data(page: Page, person: Person) -> None:
    text = page.content()
    for value in (person.email, person.phone, person.first_name, person.last_name):
        assert value not in text, f"{value} is on {page.url}"


def test_a_support_agent_finds_a_customer_by_phone_and_sees_orders_and_consents(
    browser: Browser,
) -> None:
    world = browser.world
    person = _person(world)
    item = world.new_product({"WH-TYO": 5}, {"JP": {"JPY": "4200"}})
    order = place(world, [(item, 1)], customer=person.headers)
    _grant_email_consent(world, person)
    drain(world)

    page = browser.open("support", "/admin/customers")
    assert_accessible(page)
    screenshot(page, "customers")
    page.get_by_label("Find a customer").fill(person.phone)
    page.get_by_label("Search by").select_option("phone")
    page.get_by_role("button", name="Search").click()
    # One person found: her page opens at once.
    expect(page).to_have_url(re.compile(rf"/admin/customers/{person.id}$"))
    expect(page.get_by_role("heading", name=person.name)).to_be_visible()
    expect(page.get_by_test_id("profile")).to_contain_text(person.email)
    expect(page.get_by_test_id("orders")).to_contain_text(order.number)
    expect(page.get_by_test_id("orders")).to_contain_text("¥")
    consents = page.get_by_test_id("consents")
    expect(consents.get_by_role("row").filter(has_text="Marketing emails")).to_contain_text(
        "Granted"
    )
    page.get_by_role("button", name="History of consent decisions").click()
    expect(page.get_by_test_id("consent-history")).to_contain_text("2026-01")
    expect(page.get_by_test_id("identities")).to_contain_text(person.phone)
    expect(page.get_by_test_id("figures")).to_contain_text("Lifetime value (JPY)")
    assert_accessible(page)
    screenshot(page, "customer")

    # The same search by the whole name, in either order, and by email.
    page.goto(f"/admin/customers?q={person.last_name}+{person.first_name}&by=name")
    expect(page).to_have_url(re.compile(rf"/admin/customers/{person.id}$"))
    page.goto(f"/admin/customers?q={person.email}")
    expect(page).to_have_url(re.compile(rf"/admin/customers/{person.id}$"))


def test_two_suggested_duplicates_are_merged_and_the_merge_undone(browser: Browser) -> None:
    world = browser.world
    phone = _phone()
    keep = _person(world, phone=phone)
    duplicate = _person(world, phone=phone)

    page = browser.open("support", "/admin/customers/duplicates")
    expect(page.get_by_test_id("suggestions")).to_contain_text(duplicate.name)
    assert_accessible(page)
    page.goto(f"/admin/customers/{keep.id}")
    suggestions = page.get_by_test_id("customer-suggestions")
    expect(suggestions).to_contain_text(duplicate.name)
    suggestions.get_by_role("listitem").filter(has_text=duplicate.name).get_by_role(
        "button", name="Merge into this profile"
    ).click()
    expect(page.get_by_test_id("merge-banner")).to_contain_text(
        f"Customer {duplicate.id} was merged into this profile."
    )
    expect(page.get_by_test_id("identities")).to_contain_text(duplicate.email)
    staff = staff_login(world, "support")
    merged = ok(world.client.get(f"/v1/customers/{duplicate.id}", headers=staff))
    assert merged["status"] == "merged" and merged["merged_into_id"] == keep.id

    page.reload()  # without the flash message
    assert_accessible(page)

    page.get_by_role("button", name="Undo the merge").click()
    expect(page.locator("#flash")).to_contain_text("The merge was undone")
    expect(page.get_by_test_id("identities")).not_to_contain_text(duplicate.email)
    restored = ok(world.client.get(f"/v1/customers/{duplicate.id}", headers=staff))
    assert restored["status"] == "active"


def test_a_privacy_export_runs_with_progress_and_downloads(browser: Browser) -> None:
    person = _person(browser.world)
    page = browser.open("owner", f"/admin/customers/{person.id}")
    page.get_by_role("link", name="Privacy requests").click()
    assert_accessible(page)
    page.get_by_label("Reason (optional)").fill("Access request by email")
    page.get_by_role("button", name="Export the data").click()
    expect(page).to_have_url(re.compile(r"/admin/jobs/\d+$"))
    progress = page.locator("#job-progress")
    expect(progress).to_have_attribute("data-status", "succeeded")
    expect(page.get_by_test_id("job-lines")).to_contain_text("customers")
    with page.expect_download() as downloading:
        page.get_by_role("link", name=re.compile("Download")).click()
    document = json.loads(downloading.value.path().read_text(encoding="utf-8"))
    assert document["customer_id"] == person.id
    assert document["data"]["customers"]
    assert person.email in json.dumps(document)
    page.goto(f"/admin/customers/{person.id}/privacy")
    expect(page.get_by_test_id("privacy-requests")).to_contain_text("Access request by email")


def test_an_erasure_shows_what_is_kept_needs_confirmation_then_the_data_is_gone(
    browser: Browser,
) -> None:
    world = browser.world
    person = _person(world)
    # Points granted by staff: the loyalty ledger is an accounting record that stays.
    ok(
        world.client.post(
            f"/v1/loyalty/accounts/{person.id}/adjustments",
            headers={**staff_login(world, "owner"), "Idempotency-Key": uuid.uuid4().hex},
            json={"points": 50, "reason": "welcome gift"},
        ),
        201,
    )
    page = browser.open("owner", f"/admin/customers/{person.id}/privacy")
    expect(page.get_by_test_id("will-erase")).to_contain_text("Profile, identities and addresses")
    expect(page.get_by_test_id("will-keep")).to_contain_text("Loyalty points ledger")
    expect(page.get_by_test_id("will-keep")).to_contain_text("Orders keep their amounts")
    confirm = page.get_by_test_id("confirm-step")
    expect(confirm).to_be_hidden()
    page.get_by_label("Reason", exact=True).fill("Erasure request, art. 17")
    page.get_by_role("button", name="Erase this person's data…").click()
    expect(confirm).to_be_visible()
    assert_accessible(page)
    # A wrong number is refused and erases nothing.
    page.get_by_label(re.compile("Type the customer number")).fill("1")
    page.get_by_role("button", name="Erase for good").click()
    expect(page.locator("#confirm_customer_id-error")).to_contain_text(
        f"Type the customer number {person.id} to confirm."
    )
    staff = staff_login(world, "owner")
    assert (
        ok(world.client.get(f"/v1/customers/{person.id}", headers=staff))["email"] == person.email
    )

    page.get_by_label(re.compile("Type the customer number")).fill(str(person.id))
    page.get_by_role("button", name="Erase for good").click()
    expect(page).to_have_url(re.compile(rf"/admin/customers/{person.id}$"))
    expect(page.locator("#flash")).to_contain_text("personal data was erased")
    expect(page.get_by_role("heading", name=f"Customer {person.id}")).to_be_visible()
    _no_personal_data(page, person)
    page.goto(f"/admin/customers/{person.id}/privacy")
    expect(page.get_by_test_id("already-erased")).to_be_visible()


def test_the_analyst_sees_no_personal_data_on_the_customer_pages(browser: Browser) -> None:
    world = browser.world
    person = _person(world)
    item = world.new_product({"WH-TYO": 5}, {"JP": {"JPY": "3100"}})
    order = place(world, [(item, 1)], customer=person.headers)
    _grant_email_consent(world, person)
    drain(world)

    page = browser.open("analyst", f"/admin/customers/{person.id}")
    expect(page.get_by_role("heading", name=f"Customer {person.id}")).to_be_visible()
    expect(page.get_by_test_id("orders")).to_contain_text(order.number)
    expect(page.get_by_test_id("identities")).to_contain_text("hidden")
    _no_personal_data(page, person)
    expect(page.get_by_role("link", name="Privacy requests")).to_have_count(0)
    assert_accessible(page)

    page.goto("/admin/customers")
    expect(page.get_by_label("Find a customer")).to_have_count(0)
    _no_personal_data(page, person)
    # A search in the URL is not run for a role without customers:pii.
    page.goto(f"/admin/customers?q={person.email}")
    _no_personal_data(page, person)
    page.goto("/admin/customers/duplicates")
    _no_personal_data(page, person)
    assert page.request.get(f"/admin/customers/{person.id}/privacy").status == 403
    assert page.request.get("/admin/support").status == 403
