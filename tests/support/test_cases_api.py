"""Support cases through the API: shoppers, agents, the life cycle, SLAs, roles, bad input."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, func, select

from mercato.auth.models import AuditEntry
from mercato.auth.permissions import LOCATION_SCOPED_ROLES, ROLE_PERMISSIONS, Permission, Role
from mercato.auth.principal import Principal
from mercato.db import Database
from mercato.events import OutboxEvent
from mercato.support import api as support_api
from mercato.support import service
from mercato.support.models import SupportCase, SupportMessage
from tests.conftest import assert_problem
from tests.helpers import audit_entries, created, make_location, ok
from tests.support.conftest import START, Clock, Headers, MakeStaff, Shop, open_case, support_events

pytestmark = pytest.mark.slow


def _counts(db: Database) -> dict[str, int]:
    with db.read() as session:
        return {
            model.__tablename__: int(session.scalar(select(func.count()).select_from(model)) or 0)
            for model in (SupportCase, SupportMessage, OutboxEvent, AuditEntry)
        }


def _status(client: TestClient, agent: Headers, case_id: int, status: str) -> Any:
    return client.post(
        f"/v1/support/cases/{case_id}/status", json={"status": status}, headers=agent
    )


def _say(
    client: TestClient,
    agent: Headers,
    case_id: int,
    body: str,
    direction: str = "outbound",
    channel: str = "phone",
) -> dict[str, Any]:
    return created(
        client.post(
            f"/v1/support/cases/{case_id}/messages",
            headers=agent,
            json={"body": body, "direction": direction, "channel": channel},
        )
    )


# --- shoppers ------------------------------------------------------------------------------


def test_a_shopper_opens_a_case_about_her_order_and_follows_it(
    shop: Shop, make_staff: MakeStaff, clock: Clock
) -> None:
    client = shop.client
    customer_id, shopper = shop.customer()
    order_id, number = shop.order(customer_id)
    case = open_case(
        shop,
        shopper,
        order_number=number,
        message={
            "body": "Two bags ordered, one arrived.",
            "attachments": ["https://img.example.com/parcel.jpg"],
        },
    )
    assert case["status"] == "new" and case["source"] == "app"
    assert case["channel_id"] == shop.channel_id
    assert case["orders"] == [{"order_id": order_id, "number": number}]
    assert case["number"].startswith("C") and case["can_rate"] is False
    [first] = case["messages"]
    assert (first["direction"], first["channel"], first["author_type"]) == (
        "inbound",
        "app",
        "customer",
    )
    assert first["author_name"] == "Aiko"
    assert first["attachments"] == ["https://img.example.com/parcel.jpg"]
    assert "priority" not in case and "assignee_id" not in case  # staff matters

    agent = make_staff(Role.SUPPORT_AGENT)
    _say(client, agent, case["id"], "Checked the depot: the second bag is lost.", "internal")
    _say(client, agent, case["id"], "Sorry! A new bag leaves today.", "outbound", "email")
    assert ok(_status(client, agent, case["id"], "pending_customer"))["paused"] is True

    seen = ok(client.get(f"/v1/store/support/cases/{case['id']}", headers=shopper))
    assert [m["body"] for m in seen["messages"]] == [
        "Two bags ordered, one arrived.",
        "Sorry! A new bag leaves today.",
    ]
    assert seen["status"] == "pending_customer"
    # Her reply puts the case back in the agents' queue.
    reply = created(
        client.post(
            f"/v1/store/support/cases/{case['id']}/messages",
            json={"body": "Thank you!"},
            headers=shopper,
        )
    )
    assert (reply["direction"], reply["channel"]) == ("inbound", "app")
    assert (
        ok(client.get(f"/v1/store/support/cases/{case['id']}", headers=shopper))["status"] == "open"
    )
    listed = ok(client.get("/v1/store/support/cases", headers=shopper))
    assert [c["id"] for c in listed["items"]] == [case["id"]]
    assert listed["items"][0]["orders"][0]["number"] == number


def test_a_guest_case_keeps_an_email_and_a_known_email_links_the_customer(
    shop: Shop, make_staff: MakeStaff, clock: Clock
) -> None:
    client = shop.client
    _, guest_number = shop.order(None, "guest@example.com")
    case = open_case(shop, shop.store, email="Guest@Example.com", order_number=guest_number)
    agent = make_staff(Role.SUPPORT_AGENT)
    staff_view = ok(client.get(f"/v1/support/cases/{case['id']}", headers=agent))
    assert staff_view["customer_id"] is None and staff_view["email"] == "guest@example.com"
    assert staff_view["messages"][0]["author_type"] == "guest"
    # An agent taking an email from a registered customer files it on her account.
    customer_id, shopper = shop.customer("Hana")
    me = ok(client.get("/v1/store/customers/me", headers=shopper))
    by_email = created(
        client.post(
            "/v1/support/cases",
            headers=agent,
            json={
                "email": me["email"],
                "subject": "Invoice",
                "source": "email",
                "message": {
                    "body": "Please send an invoice.",
                    "direction": "inbound",
                    "channel": "email",
                },
            },
        )
    )
    assert (by_email["customer_id"], by_email["email"]) == (customer_id, None)
    mine = ok(client.get("/v1/store/support/cases", headers=shopper))["items"]
    assert [c["id"] for c in mine] == [by_email["id"]]


def test_a_retried_case_creation_opens_one_case(shop: Shop, clock: Clock) -> None:
    _, shopper = shop.customer()
    headers = {**shopper, "Idempotency-Key": "open-1"}
    body = {"subject": "Broken lid", "message": {"body": "The lid is cracked."}}
    first = shop.client.post("/v1/store/support/cases", json=body, headers=headers)
    again = shop.client.post("/v1/store/support/cases", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert first.json()["id"] == again.json()["id"]
    assert _counts(shop.db)["support_cases"] == 1
    assert len(support_events(shop.db, "support.case_opened")) == 1


# --- the life cycle ------------------------------------------------------------------------


ALL = [s.value for s in service.CaseStatus]


def test_every_status_change_is_a_listed_transition_and_others_are_409(
    shop: Shop, make_staff: MakeStaff, clock: Clock
) -> None:
    client = shop.client
    customer_id, _ = shop.customer()
    agent = make_staff(Role.SUPPORT_AGENT)
    for start in ALL:
        for target in ALL:
            case = created(
                client.post(
                    "/v1/support/cases",
                    headers=agent,
                    json={
                        "customer_id": customer_id,
                        "subject": f"{start}->{target}",
                        "source": "phone",
                    },
                )
            )
            if start != "new":
                ok(_status(client, agent, case["id"], start))
            before = _counts(shop.db)
            response = _status(client, agent, case["id"], target)
            legal = service.CaseStatus(target) in service.TRANSITIONS[service.CaseStatus(start)]
            if legal:
                assert ok(response)["status"] == target, (start, target)
                continue
            problem = assert_problem(response, 409, "invalid-case-transition")
            assert (problem["case_status"], problem["target_status"]) == (start, target)
            assert _counts(shop.db) == before, (start, target)  # nothing written
            now = ok(client.get(f"/v1/support/cases/{case['id']}", headers=agent))
            assert now["status"] == start


def test_status_changes_are_audited_and_published_without_message_text(
    shop: Shop, make_staff: MakeStaff, clock: Clock
) -> None:
    client = shop.client
    customer_id, shopper = shop.customer()
    case = open_case(shop, shopper, message={"body": "SECRET-BODY my address is 1 Main St"})
    agent = make_staff(Role.SUPPORT_AGENT)
    _say(client, agent, case["id"], "SECRET-NOTE internal", "internal")
    _say(client, agent, case["id"], "SECRET-REPLY hello")
    ok(
        client.post(
            f"/v1/support/cases/{case['id']}/status",
            headers=agent,
            json={"status": "resolved", "note": "parcel found"},
        )
    )
    ok(_status(client, agent, case["id"], "closed"))
    ok(
        client.post(
            f"/v1/store/support/cases/{case['id']}/rating",
            headers=shopper,
            json={"satisfaction": 4, "comment": "SECRET-COMMENT fine"},
        )
    )

    events = support_events(shop.db)
    assert [e.type for e in events] == [
        "support.case_opened",
        "support.message_added",  # hers
        "support.message_added",  # the note
        "support.message_added",  # the reply...
        "support.case_status_changed",  # ...opens the case
        "support.case_status_changed",  # resolved
        "support.case_status_changed",  # closed
        "support.case_rated",
    ]
    assert all(e.aggregate_id == str(case["id"]) for e in events)
    assert "SECRET" not in json.dumps([e.data for e in events])
    assert [
        (e.data["from_status"], e.data["to_status"])
        for e in events
        if e.type == "support.case_status_changed"
    ] == [("new", "open"), ("open", "resolved"), ("resolved", "closed")]
    assert events[-1].data["satisfaction"] == 4 and events[-1].data["commented"] is True
    assert events[0].data["customer_id"] == customer_id

    changes = [
        (a.action, a.changes.get("status"))
        for a in audit_entries(shop.db)
        if a.entity_type == "support_case"
    ]
    assert changes == [
        ("support.message_added", None),
        ("support.message_added", None),
        ("support.case_status_changed", ["new", "open"]),
        ("support.case_status_changed", ["open", "resolved"]),
        ("support.case_status_changed", ["resolved", "closed"]),
    ]  # the customer's own actions are not staff changes
    assert audit_entries(shop.db, "support.case_status_changed")[1].changes["note"] == (
        "parcel found"
    )


def test_agents_assign_reprioritise_retag_and_link_orders(
    shop: Shop, make_staff: MakeStaff, clock: Clock
) -> None:
    client = shop.client
    customer_id, shopper = shop.customer()
    order_id, number = shop.order(customer_id)
    case = open_case(shop, shopper)
    agent = make_staff(Role.SUPPORT_AGENT)
    agent_id = ok(client.get("/v1/auth/me", headers=agent))["user"]["id"]
    patched = ok(
        client.patch(
            f"/v1/support/cases/{case['id']}",
            headers=agent,
            json={
                "assignee_id": agent_id,
                "priority": "urgent",
                "tags": ["Delivery", "lost-parcel"],
            },
        )
    )
    assert patched["assignee_id"] == agent_id and patched["priority"] == "urgent"
    assert patched["tags"] == ["delivery", "lost-parcel"]
    linked = created(
        client.post(
            f"/v1/support/cases/{case['id']}/orders", headers=agent, json={"number": number}
        )
    )
    assert linked["orders"] == [{"order_id": order_id, "number": number}]
    assert_problem(
        client.post(
            f"/v1/support/cases/{case['id']}/orders", headers=agent, json={"order_id": order_id}
        ),
        409,
        "order-already-linked",
    )
    unassigned = ok(
        client.patch(f"/v1/support/cases/{case['id']}", headers=agent, json={"assignee_id": None})
    )
    assert unassigned["assignee_id"] is None
    [first, second] = audit_entries(shop.db, "support.case_updated")
    assert first.changes["assignee_id"] == [None, agent_id]
    assert first.changes["priority"] == ["normal", "urgent"]
    assert second.changes == {"assignee_id": [agent_id, None]}
    assigned = support_events(shop.db, "support.case_assigned")
    assert [e.data["assignee_id"] for e in assigned] == [agent_id, None]


def test_agents_search_cases(shop: Shop, make_staff: MakeStaff, clock: Clock) -> None:
    client = shop.client
    _, aiko_headers = shop.customer("Aiko")
    hana, hana_headers = shop.customer("Hana")
    order_id, _ = shop.order(hana)
    agent = make_staff(Role.SUPPORT_AGENT)
    agent_id = ok(client.get("/v1/auth/me", headers=agent))["user"]["id"]
    a = open_case(shop, aiko_headers)
    b = open_case(shop, hana_headers, order_id=order_id)
    clock.advance(hours=2)
    c = created(
        client.post(
            "/v1/support/cases",
            headers=agent,
            json={
                "customer_id": hana,
                "subject": "Refund",
                "source": "phone",
                "priority": "urgent",
                "tags": ["refund"],
                "assignee_id": agent_id,
            },
        )
    )
    ok(_status(client, agent, b["id"], "pending_customer"))

    def ids(**params: Any) -> list[int]:
        return [
            x["id"]
            for x in ok(client.get("/v1/support/cases", params=params, headers=agent))["items"]
        ]

    assert ids() == [c["id"], b["id"], a["id"]]
    assert ids(customer_id=hana) == [c["id"], b["id"]]
    assert ids(status=["new", "pending_customer"]) == [c["id"], b["id"], a["id"]]
    assert ids(status="pending_customer") == [b["id"]]
    assert ids(priority="urgent") == [c["id"]]
    assert ids(assignee_id=agent_id) == [c["id"]]
    assert ids(unassigned="true") == [b["id"], a["id"]]
    assert ids(tag="REFUND") == [c["id"]]
    assert ids(order_id=order_id) == [b["id"]]
    assert ids(source="phone") == [c["id"]]
    assert ids(channel_id=shop.channel_id) == [b["id"], a["id"]]
    # Urgent is due for a first response within the hour; normal within eight hours.
    clock.advance(hours=1, minutes=30)
    assert ids(overdue="true") == [c["id"]]
    clock.advance(hours=6)
    assert ids(overdue="true") == [c["id"], a["id"]]  # b waits on the customer
    assert ids(overdue="false") == [b["id"]]
    page = ok(client.get("/v1/support/cases", params={"limit": 2}, headers=agent))
    rest = ok(
        client.get("/v1/support/cases", params={"cursor": page["next_cursor"]}, headers=agent)
    )
    assert [x["id"] for x in page["items"] + rest["items"]] == [c["id"], b["id"], a["id"]]
    assert_problem(client.get("/v1/support/cases", params={"state": "new"}, headers=agent), 422)
    assert_problem(client.get("/v1/support/cases", params={"status": "stuck"}, headers=agent), 422)


# --- SLAs ----------------------------------------------------------------------------------


def test_due_times_follow_the_priority(shop: Shop, make_staff: MakeStaff, clock: Clock) -> None:
    customer_id, _ = shop.customer()
    agent = make_staff(Role.SUPPORT_AGENT)
    for priority in service.Priority:
        body = {
            "customer_id": customer_id,
            "subject": "Help",
            "source": "phone",
            "priority": priority.value,
        }
        case = created(shop.client.post("/v1/support/cases", headers=agent, json=body))
        first, resolution = service.DEFAULT_SLA[priority]
        assert _at(case["first_response_due_at"]) == START + timedelta(minutes=first), priority
        assert _at(case["resolution_due_at"]) == START + timedelta(minutes=resolution), priority
        assert case["sla_breached"] is False and case["overdue"] is False


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_the_sla_table_is_configurable_and_a_new_priority_moves_the_due_times(
    shop: Shop, make_staff: MakeStaff, owner_headers: Headers, clock: Clock
) -> None:
    client = shop.client
    customer_id, _ = shop.customer()
    agent = make_staff(Role.SUPPORT_AGENT)
    policies = ok(client.get("/v1/support/sla-policies", headers=agent))["items"]
    assert [(p["priority"], p["first_response_minutes"], p["default"]) for p in policies] == [
        ("low", 1440, True),
        ("normal", 480, True),
        ("high", 240, True),
        ("urgent", 60, True),
    ]
    changed = ok(
        client.put(
            "/v1/support/sla-policies/high",
            headers=owner_headers,
            json={"first_response_minutes": 30, "resolution_minutes": 120},
        )
    )
    assert changed == {
        "priority": "high",
        "first_response_minutes": 30,
        "resolution_minutes": 120,
        "default": False,
    }
    assert audit_entries(shop.db, "support.sla_policy_changed")[0].changes == {
        "first_response_minutes": [240, 30],
        "resolution_minutes": [1440, 120],
    }
    body = {"first_response_minutes": 90, "resolution_minutes": 60}
    problem = assert_problem(
        client.put("/v1/support/sla-policies/low", json=body, headers=owner_headers), 422
    )
    assert problem["errors"][0]["field"] == "body.resolution_minutes"
    assert_problem(
        client.put("/v1/support/sla-policies/asap", json=body, headers=owner_headers), 422
    )

    case = created(
        client.post(
            "/v1/support/cases",
            headers=agent,
            json={"customer_id": customer_id, "subject": "Help", "source": "phone"},
        )
    )
    clock.advance(minutes=10)
    high = ok(
        client.patch(f"/v1/support/cases/{case['id']}", headers=agent, json={"priority": "high"})
    )
    # Due times count from the opening, with the new priority's targets.
    assert _at(high["first_response_due_at"]) == START + timedelta(minutes=30)
    assert _at(high["resolution_due_at"]) == START + timedelta(minutes=120)


def test_waiting_on_the_customer_stops_the_sla_clock(
    shop: Shop, make_staff: MakeStaff, clock: Clock
) -> None:
    client = shop.client
    _, shopper = shop.customer()
    case = open_case(shop, shopper)
    agent = make_staff(Role.SUPPORT_AGENT)
    clock.advance(hours=1)
    ok(_status(client, agent, case["id"], "pending_customer"))
    clock.advance(hours=30)  # far past every normal due time, but it is her turn
    waiting = ok(client.get(f"/v1/support/cases/{case['id']}", headers=agent))
    assert waiting["overdue"] is False and waiting["paused"] is True
    with shop.db.transaction() as session:
        assert service.mark_sla_breaches(session, clock.now) == 0
    created(
        client.post(
            f"/v1/store/support/cases/{case['id']}/messages",
            headers=shopper,
            json={"body": "Here is the photo."},
        )
    )
    resumed = ok(client.get(f"/v1/support/cases/{case['id']}", headers=agent))
    assert resumed["status"] == "open" and resumed["paused"] is False
    assert _at(resumed["first_response_due_at"]) == START + timedelta(hours=8 + 30)
    assert _at(resumed["resolution_due_at"]) == START + timedelta(hours=72 + 30)


def test_breaches_are_flagged_once_and_published(
    shop: Shop, make_staff: MakeStaff, clock: Clock
) -> None:
    client = shop.client
    _, shopper = shop.customer()
    slow = open_case(shop, shopper)
    answered = open_case(shop, shopper)
    agent = make_staff(Role.SUPPORT_AGENT)
    _say(client, agent, answered["id"], "On it.")
    clock.advance(hours=7, minutes=59)
    with shop.db.transaction() as session:
        assert service.mark_sla_breaches(session, clock.now) == 0
    clock.advance(minutes=2)
    assert ok(client.get(f"/v1/support/cases/{slow['id']}", headers=agent))["overdue"] is True
    with shop.db.transaction() as session:
        assert service.mark_sla_breaches(session, clock.now) == 1
    with shop.db.transaction() as session:
        assert service.mark_sla_breaches(session, clock.now) == 0  # once
    [breach] = support_events(shop.db, "support.sla_breached")
    assert breach.data["case_id"] == slow["id"] and breach.data["kind"] == "first_response"
    assert _at(breach.data["due_at"]) == START + timedelta(hours=8)
    flagged = ok(client.get(f"/v1/support/cases/{slow['id']}", headers=agent))
    assert flagged["sla_breached"] is True
    assert _at(flagged["first_response_breached_at"]) == clock.now
    # The answered case breaches its resolution target after three days.
    clock.advance(days=3)
    with shop.db.transaction() as session:
        assert service.mark_sla_breaches(session, clock.now) == 2
    kinds = sorted(
        (e.data["case_id"], e.data["kind"]) for e in support_events(shop.db, "support.sla_breached")
    )
    assert kinds == sorted(
        [(slow["id"], "first_response"), (slow["id"], "resolution"), (answered["id"], "resolution")]
    )


def test_a_late_reply_or_resolution_counts_as_a_breach(
    shop: Shop, make_staff: MakeStaff, clock: Clock
) -> None:
    client = shop.client
    _, shopper = shop.customer()
    case = open_case(shop, shopper)
    agent = make_staff(Role.SUPPORT_AGENT)
    clock.advance(hours=9)  # nobody ran the breach job in between
    _say(client, agent, case["id"], "Sorry for the wait.")
    clock.advance(days=3)
    resolved = ok(_status(client, agent, case["id"], "resolved"))
    assert _at(resolved["first_response_breached_at"]) == START + timedelta(hours=9)
    assert _at(resolved["resolution_breached_at"]) == clock.now
    assert [e.data["kind"] for e in support_events(shop.db, "support.sla_breached")] == [
        "first_response",
        "resolution",
    ]


def test_the_breach_job_runs_with_the_dispatcher(
    app: Any, shop: Shop, make_staff: MakeStaff, clock: Clock
) -> None:
    _, shopper = shop.customer()
    clock.now = START.replace(year=2020)  # opened long ago: past every due time today
    case = open_case(shop, shopper)
    app.state.dispatcher.run_periodic(force=True)
    kinds = {
        e.data["kind"]
        for e in support_events(shop.db, "support.sla_breached")
        if e.data["case_id"] == case["id"]
    }
    assert kinds == {"first_response", "resolution"}


# --- roles ---------------------------------------------------------------------------------


def test_each_role_reads_and_writes_as_its_permissions_say(
    shop: Shop, make_staff: MakeStaff, owner_headers: Headers, clock: Clock
) -> None:
    client = shop.client
    customer_id, shopper = shop.customer()
    case = open_case(shop, shopper)
    location = make_location(client, owner_headers, "ST-1")["id"]
    reads = [
        f"/v1/support/cases/{case['id']}",
        "/v1/support/cases",
        f"/v1/support/customers/{customer_id}/overview",
        "/v1/support/sla-policies",
        f"/v1/support/cases/by-number/{case['number']}",
    ]
    note = {"body": "noted", "direction": "internal", "channel": "store"}
    for role in Role:
        headers = make_staff(role, [location] if role in LOCATION_SCOPED_ROLES else [])
        granted = ROLE_PERMISSIONS[role]
        for path in reads:
            response = client.get(path, headers=headers)
            if Permission.SUPPORT_READ in granted:
                assert response.status_code == 200, (role, path, response.text)
            else:
                assert assert_problem(response, 403)["permission"] == "support:read", role
        written = client.post(
            f"/v1/support/cases/{case['id']}/messages", headers=headers, json=note
        )
        if Permission.SUPPORT_WRITE in granted:
            assert written.status_code == 201, (role, written.text)
        else:
            assert assert_problem(written, 403)["permission"] == "support:write", role
    assert_problem(client.get("/v1/support/cases"), 401)


def test_store_associates_read_but_do_not_write(
    shop: Shop, make_staff: MakeStaff, owner_headers: Headers, clock: Clock
) -> None:
    client = shop.client
    _, shopper = shop.customer()
    case = open_case(shop, shopper)
    location = make_location(client, owner_headers, "ST-1")["id"]
    associate = make_staff(Role.STORE_ASSOCIATE, [location])
    assert ok(client.get(f"/v1/support/cases/{case['id']}", headers=associate))["id"] == case["id"]
    before = _counts(shop.db)
    for response in (
        _status(client, associate, case["id"], "open"),
        client.patch(
            f"/v1/support/cases/{case['id']}", json={"priority": "high"}, headers=associate
        ),
        client.put(
            "/v1/support/sla-policies/low",
            headers=associate,
            json={"first_response_minutes": 5, "resolution_minutes": 10},
        ),
    ):
        assert assert_problem(response, 403)["permission"] == "support:write"
    assert _counts(shop.db) == before


def test_roles_without_personal_data_access_see_cases_redacted(shop: Shop, clock: Clock) -> None:
    customer_id, shopper = shop.customer()
    case = open_case(shop, shopper, message={"body": "Call me on +49 30 1234"})
    no_pii = Principal(
        kind="staff", id=99, role=Role.ANALYST, permissions=frozenset({Permission.SUPPORT_READ})
    )
    with shop.db.read() as session:
        row = service.get_case(session, case["id"])
        thread = service.messages(session, row.id, include_internal=True)
        redacted = support_api.case_out(row, no_pii, clock.now, (), thread)
        full = support_api.case_out(row, Principal.system("tests"), clock.now, (), thread)
    assert redacted.subject is None and redacted.email is None
    assert [(m.body, m.author_name, m.attachments) for m in redacted.messages] == [(None, None, [])]
    assert full.messages[0].body == "Call me on +49 30 1234"
    assert full.customer_id == redacted.customer_id == customer_id


# --- bad input -----------------------------------------------------------------------------


def test_bad_input_is_a_clear_4xx_and_changes_nothing(
    shop: Shop, make_staff: MakeStaff, clock: Clock
) -> None:
    client = shop.client
    aiko, aiko_headers = shop.customer("Aiko")
    hana, hana_headers = shop.customer("Hana")
    _, hanas_order = shop.order(hana)
    agent = make_staff(Role.SUPPORT_AGENT)
    analyst = make_staff(Role.ANALYST)
    hanas_case = open_case(shop, hana_headers)
    before = _counts(shop.db)
    message = {"body": "Hello"}

    def field_of(response: Any, status: int = 422) -> str:
        return str(assert_problem(response, status)["errors"][0]["field"])

    store = "/v1/store/support/cases"
    assert (
        field_of(
            client.post(
                store,
                headers=aiko_headers,
                json={"subject": "?", "message": message, "order_id": 999_999},
            )
        )
        == "body.order_id"
    )
    # Another customer's order is as unknown to her as a missing one.
    problem = assert_problem(
        client.post(
            store,
            headers=aiko_headers,
            json={"subject": "?", "message": message, "order_number": hanas_order},
        ),
        422,
    )
    assert problem["errors"] == [{"field": "body.order_number", "reason": "unknown order"}]
    assert (
        field_of(
            client.post(
                store, headers=aiko_headers, json={"subject": "?", "message": {"body": "   "}}
            )
        )
        == "body.message.body"
    )
    assert (
        field_of(client.post(store, headers=aiko_headers, json={"subject": "", "message": message}))
        == "body.subject"
    )
    assert (
        field_of(
            client.post(
                store,
                headers=aiko_headers,
                json={
                    "subject": "?",
                    "message": {"body": "x", "attachments": ["file:///etc/passwd"]},
                },
            )
        )
        == "body.message.attachments[0]"
    )
    assert (
        field_of(
            client.post(
                store,
                headers=aiko_headers,
                json={"subject": "?", "message": message, "priority": "urgent"},
            )
        )
        == "body.priority"
    )
    assert (
        field_of(client.post(store, headers=shop.store, json={"subject": "?", "message": message}))
        == "body.email"
    )
    assert_problem(
        client.post(
            store,
            headers={**shop.store, "Authorization": "Bearer nope"},
            json={"subject": "?", "message": message},
        ),
        401,
    )
    assert_problem(client.post(store, json={"subject": "?", "message": message}), 401)

    theirs = f"{store}/{hanas_case['id']}"
    assert_problem(client.get(theirs, headers=aiko_headers), 404)
    assert_problem(client.post(f"{theirs}/messages", headers=aiko_headers, json=message), 404)
    assert_problem(
        client.post(f"{theirs}/rating", headers=aiko_headers, json={"satisfaction": 5}), 404
    )
    assert_problem(client.get(f"{store}/999999", headers=aiko_headers), 404)
    assert (
        field_of(client.post(f"{theirs}/messages", headers=hana_headers, json={"body": ""}))
        == "body.body"
    )
    assert_problem(
        client.post(f"{theirs}/rating", headers=hana_headers, json={"satisfaction": 5}),
        409,
        "case-not-closed",
    )
    assert (
        field_of(client.post(f"{theirs}/rating", headers=hana_headers, json={"satisfaction": 6}))
        == "body.satisfaction"
    )

    staff = "/v1/support/cases"
    assert (
        field_of(
            client.post(
                staff,
                headers=agent,
                json={"customer_id": 999_999, "subject": "?", "source": "phone"},
            )
        )
        == "body.customer_id"
    )
    assert (
        field_of(client.post(staff, headers=agent, json={"subject": "?", "source": "phone"}))
        == "body.customer_id"
    )
    assert (
        field_of(
            client.post(
                staff, headers=agent, json={"customer_id": aiko, "subject": "?", "source": "fax"}
            )
        )
        == "body.source"
    )
    assert (
        field_of(
            client.post(
                staff,
                headers=agent,
                json={
                    "customer_id": aiko,
                    "subject": "?",
                    "source": "phone",
                    "orders": [{"number": hanas_order}],
                },
            )
        )
        == "body.orders[0]"
    )
    assert (
        field_of(
            client.post(
                staff,
                headers=agent,
                json={"customer_id": aiko, "subject": "?", "source": "phone", "channel_id": 999},
            )
        )
        == "body.channel_id"
    )
    analyst_id = ok(client.get("/v1/auth/me", headers=analyst))["user"]["id"]
    assert (
        field_of(
            client.patch(
                f"{staff}/{hanas_case['id']}", headers=agent, json={"assignee_id": analyst_id}
            )
        )
        == "body.assignee_id"
    )
    assert (
        field_of(
            client.post(
                f"{staff}/{hanas_case['id']}/messages",
                headers=agent,
                json={"body": "x", "direction": "sideways", "channel": "phone"},
            )
        )
        == "body.direction"
    )
    assert_problem(
        client.post(
            f"{staff}/999999/messages",
            headers=agent,
            json={"body": "x", "direction": "outbound", "channel": "phone"},
        ),
        404,
    )
    assert_problem(client.get(f"{staff}/by-number/CNOPE-0000", headers=agent), 404)
    assert_problem(client.get("/v1/support/customers/999999/overview", headers=agent), 404)
    assert _counts(shop.db) == before


def test_a_closed_case_takes_one_rating_and_no_more_messages(
    shop: Shop, make_staff: MakeStaff, clock: Clock
) -> None:
    client = shop.client
    _, shopper = shop.customer()
    case = open_case(shop, shopper)
    agent = make_staff(Role.SUPPORT_AGENT)
    ok(_status(client, agent, case["id"], "closed"))
    url = f"/v1/store/support/cases/{case['id']}"
    assert ok(client.get(url, headers=shopper))["can_rate"] is True
    rated = ok(
        client.post(
            f"{url}/rating", headers=shopper, json={"satisfaction": 2, "comment": "  Slow.  "}
        )
    )
    assert (rated["satisfaction"], rated["satisfaction_comment"], rated["can_rate"]) == (
        2,
        "Slow.",
        False,
    )
    before = _counts(shop.db)
    assert_problem(
        client.post(f"{url}/rating", headers=shopper, json={"satisfaction": 5}),
        409,
        "case-already-rated",
    )
    assert_problem(
        client.post(f"{url}/messages", headers=shopper, json={"body": "Hello?"}), 409, "case-closed"
    )
    assert_problem(
        client.post(
            f"/v1/support/cases/{case['id']}/messages",
            headers=agent,
            json={"body": "x", "direction": "outbound", "channel": "email"},
        ),
        409,
        "case-closed",
    )
    assert _counts(shop.db) == before
    assert ok(client.get(url, headers=shopper))["satisfaction"] == 2
    # Agents may still leave internal notes on a closed case.
    _say(client, agent, case["id"], "Follow-up: refunded shipping.", "internal")


def test_the_agent_console_reads_in_a_fixed_number_of_queries(
    shop: Shop, make_staff: MakeStaff, clock: Clock
) -> None:
    client = shop.client
    customer_id, shopper = shop.customer()
    agent = make_staff(Role.SUPPORT_AGENT)
    url = f"/v1/support/customers/{customer_id}/overview"

    def statements() -> int:
        seen: list[str] = []

        def count(*args: Any) -> None:
            seen.append(args[2])

        event.listen(shop.db.engine, "before_cursor_execute", count)
        try:
            ok(client.get(url, headers=agent))
        finally:
            event.remove(shop.db.engine, "before_cursor_execute", count)
        return len(seen)

    order_id, number = shop.order(customer_id)
    open_case(shop, shopper, order_id=order_id)
    few = statements()
    for n in range(4):
        case = open_case(shop, shopper, order_id=order_id)
        for i in range(5):
            _say(client, agent, case["id"], f"Reply {n}.{i}")
        if n % 2:
            ok(_status(client, agent, case["id"], "closed"))
    overview = ok(client.get(url, headers=agent))
    assert statements() == few
    assert len(overview["open_cases"]) == 3 and len(overview["recent_cases"]) == 2
    assert all(len(c["messages"]) == service.OVERVIEW_MESSAGES for c in overview["open_cases"][:2])
    assert [m["body"] for m in overview["open_cases"][0]["messages"]] == [
        "Reply 2.2",
        "Reply 2.3",
        "Reply 2.4",
    ]
    assert all(
        c["orders"] == [{"order_id": order_id, "number": number}]
        for c in overview["open_cases"] + overview["recent_cases"]
    )
    assert [o["number"] for o in overview["recent_orders"]] == [number]
    assert overview["recent_orders"][0]["lines"] == [
        {"sku": "BEANS-1", "name": "Organic coffee beans", "quantity": 2, "total": "25.00"}
    ]
