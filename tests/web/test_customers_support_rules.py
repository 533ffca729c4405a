"""What the customers and support pages allow each role, without a browser: a store
associate reads cases but cannot answer them, an erasure without its confirmation
changes nothing, a search by personal data is not run for the analyst."""

from __future__ import annotations

import json
import re
import uuid

from fastapi.testclient import TestClient

from tests.commerce.helpers import ok
from tests.demo_world import DemoWorld, staff_login
from tests.web.test_customers import _person


def _signed_in(world: DemoWorld, who: str) -> tuple[TestClient, str]:
    """A client with the staff cookie of ``who`` and the CSRF token its pages carry."""
    client = TestClient(world.client.app, follow_redirects=False)
    token = staff_login(world, who)["Authorization"].removeprefix("Bearer ")
    client.cookies.set("mercato_staff", token)
    page = client.get("/admin/account")
    found = re.search(r"hx-headers='([^']+)'", page.text)
    assert found is not None, page.text[:500]
    return client, json.loads(found.group(1))["X-CSRF-Token"]


def _case(world: DemoWorld, headers: dict[str, str]) -> dict[str, object]:
    body = {"subject": "Size exchange", "message": {"body": "Can I swap it for an M?"}}
    return ok(
        world.client.post(
            "/v1/store/support/cases",
            headers={**world.key("web-jp"), **headers, "Idempotency-Key": uuid.uuid4().hex},
            json=body,
        ),
        201,
    )


def test_a_store_associate_reads_cases_but_cannot_answer(demo_world: DemoWorld) -> None:
    person = _person(demo_world)
    case = _case(demo_world, person.headers)
    client, csrf = _signed_in(demo_world, "shibuya.associate")
    page = client.get(f"/admin/support/cases/{case['id']}")
    assert page.status_code == 200
    assert "Can I swap it for an M?" in page.text
    assert "Assign to me" not in page.text and 'name="body"' not in page.text
    for action, form in (
        ("messages", {"body": "Yes", "direction": "outbound", "channel": "web"}),
        ("assign", {"assignee": "me"}),
        ("status", {"status": "closed"}),
    ):
        answer = client.post(
            f"/admin/support/cases/{case['id']}/{action}", data={**form, "csrf_token": csrf}
        )
        assert answer.status_code == 403, action
    seen = ok(
        demo_world.client.get(
            f"/v1/store/support/cases/{case['id']}",
            headers={**demo_world.key("web-jp"), **person.headers},
        )
    )
    assert len(seen["messages"]) == 1 and seen["status"] == "new"


def test_an_erasure_without_its_confirmation_changes_nothing(demo_world: DemoWorld) -> None:
    person = _person(demo_world)
    client, csrf = _signed_in(demo_world, "owner")
    url = f"/admin/customers/{person.id}/privacy/erase"
    for form in (
        {"reason": "art. 17"},
        {"reason": "art. 17", "confirm_customer_id": str(person.id + 1)},
        {"reason": "", "confirm_customer_id": str(person.id)},
    ):
        answer = client.post(url, data={**form, "csrf_token": csrf})
        assert answer.status_code == 422
    staff = staff_login(demo_world, "owner")
    assert ok(demo_world.client.get(f"/v1/customers/{person.id}", headers=staff))["email"]
    # The support agent may not erase at all.
    agent, agent_csrf = _signed_in(demo_world, "support")
    refused = agent.post(
        url,
        data={"reason": "x", "confirm_customer_id": str(person.id), "csrf_token": agent_csrf},
    )
    assert refused.status_code == 403
    assert agent.get(f"/admin/customers/{person.id}/privacy").status_code == 403


def test_the_analyst_searching_by_email_sees_no_one_by_name(demo_world: DemoWorld) -> None:
    person = _person(demo_world)
    client, _csrf = _signed_in(demo_world, "analyst")
    page = client.get(f"/admin/customers?q={person.email}&by=email")
    assert page.status_code == 200
    assert person.email not in page.text and person.last_name not in page.text
    profile = client.get(f"/admin/customers/{person.id}")
    assert profile.status_code == 200
    for value in (person.email, person.phone, person.first_name, person.last_name):
        assert value not in profile.text
