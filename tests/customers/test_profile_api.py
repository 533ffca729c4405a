"""The profile through the API: the customer's own edits, staff search, groups, redaction."""

from __future__ import annotations

from typing import Any

from mercato.auth.permissions import Role
from mercato.customers import service
from mercato.customers.models import CustomerAddress, CustomerIdentity
from tests.conftest import assert_problem
from tests.customers.conftest import Shop, register
from tests.helpers import LOCATION, audit_entries, count, created, ok, outbox

HOME = {"line1": "Torstraße 1", "city": "Berlin", "postal_code": "10119", "country": "de"}


def _me(shop: Shop, token: str) -> dict[str, Any]:
    body: dict[str, Any] = ok(shop.client.get("/v1/store/customers/me", headers=shop.store(token)))
    return body


def test_customers_edit_their_profile_and_preferences(shop: Shop) -> None:
    token = register(shop, "kai@example.com")["token"]
    store = created(
        shop.client.post(
            "/v1/locations", headers=shop.staff, json={**LOCATION, "code": "ST-1", "type": "store"}
        )
    )
    patch = {
        "first_name": "Kai",
        "last_name": "Berg",
        "phone": "+49 30 901821",
        "locale": "de_de",
        "currency": "jpy",
        "preferred_store_id": store["id"],
    }
    me = ok(shop.client.patch("/v1/store/customers/me", json=patch, headers=shop.store(token)))
    assert (me["first_name"], me["last_name"], me["phone"]) == ("Kai", "Berg", "+4930901821")
    assert (me["locale"], me["currency"], me["preferred_store_id"]) == ("de-DE", "JPY", store["id"])
    assert _me(shop, token) == me
    # null clears a field; fields not sent stay.
    me = ok(
        shop.client.patch(
            "/v1/store/customers/me", json={"currency": None}, headers=shop.store(token)
        )
    )
    assert me["currency"] is None and me["locale"] == "de-DE"
    with shop.db.read() as session:
        found = service.find_by_phone(session, "+4930901821")
        assert found is not None and found.id == me["id"]
        assert service.customer_locale(session, me["id"]) == "de-DE"
    events = [e.data for e in outbox(shop.db, "customer.updated")]
    assert events[0]["fields"] == sorted(patch)
    assert "Kai" not in repr(events)  # events name fields, never personal values


def test_bad_profile_edits_are_422_and_change_nothing(shop: Shop) -> None:
    token = register(shop, "kai@example.com", phone="+49 30 901820")["token"]
    before = _me(shop, token)
    identities = count(shop.db, CustomerIdentity)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"phone": "call me"}, "body.phone"),
        ({"phone": "+49 1", "first_name": "Kai"}, "body.phone"),
        ({"currency": "XXX"}, "body.currency"),
        ({"locale": "xx-Nowhere"}, "body.locale"),
        ({"preferred_store_id": 999999}, "body.preferred_store_id"),
        ({"groups": ["vip"]}, "body.groups"),
        ({"email": "new@example.com"}, "body.email"),
    ]
    for body, field in cases:
        problem = assert_problem(
            shop.client.patch("/v1/store/customers/me", json=body, headers=shop.store(token)), 422
        )
        assert field in [e["field"] for e in problem["errors"]], (body, problem)
    assert _me(shop, token) == before
    assert count(shop.db, CustomerIdentity) == identities
    assert outbox(shop.db, "customer.updated") == []


def test_customers_manage_their_addresses(shop: Shop) -> None:
    token = register(shop, "kai@example.com")["token"]
    other = register(shop, "eva@example.com")["token"]
    mine = shop.store(token)
    home = created(
        shop.client.post(
            "/v1/store/customers/me/addresses",
            headers=mine,
            json={**HOME, "label": "home", "default_shipping": True},
        )
    )
    assert (home["country"], home["default_shipping"], home["label"]) == ("DE", True, "home")
    work = created(
        shop.client.post(
            "/v1/store/customers/me/addresses",
            headers=mine,
            json={
                "line1": "Hafenstr. 1",
                "city": "Hamburg",
                "country": "DE",
                "default_shipping": True,
                "default_billing": True,
            },
        )
    )
    listed = ok(shop.client.get("/v1/store/customers/me/addresses", headers=mine))["items"]
    # One default shipping address: the newer took over.
    assert [(a["id"], a["default_shipping"]) for a in listed] == [
        (home["id"], False),
        (work["id"], True),
    ]
    changed = ok(
        shop.client.patch(
            f"/v1/store/customers/me/addresses/{home['id']}",
            headers=mine,
            json={"line2": "3. OG", "label": "old home"},
        )
    )
    assert (changed["line2"], changed["label"], changed["line1"]) == (
        "3. OG",
        "old home",
        "Torstraße 1",
    )
    # The same place again is a conflict, however it is typed.
    assert_problem(
        shop.client.post(
            "/v1/store/customers/me/addresses",
            headers=mine,
            json={**HOME, "line1": "TORSTRASSE 1", "line2": "3. og"},
        ),
        409,
        "duplicate-address",
    )
    for bad, field in (
        ({**HOME, "country": "Germany"}, "body.country"),
        ({**HOME, "line1": ""}, "body.line1"),
        ({**HOME, "phone": "12"}, "body.phone"),
    ):
        problem = assert_problem(
            shop.client.post("/v1/store/customers/me/addresses", headers=mine, json=bad), 422
        )
        assert [e["field"] for e in problem["errors"]] == [field]
    assert_problem(
        shop.client.patch(
            f"/v1/store/customers/me/addresses/{home['id']}", headers=mine, json={"city": None}
        ),
        422,
    )
    # Another customer cannot see, change or delete them.
    theirs = shop.store(other)
    assert ok(shop.client.get("/v1/store/customers/me/addresses", headers=theirs))["items"] == []
    assert_problem(
        shop.client.patch(
            f"/v1/store/customers/me/addresses/{home['id']}", headers=theirs, json={"city": "Bonn"}
        ),
        404,
    )
    assert_problem(
        shop.client.delete(f"/v1/store/customers/me/addresses/{home['id']}", headers=theirs), 404
    )
    assert (
        shop.client.delete(
            f"/v1/store/customers/me/addresses/{home['id']}", headers=mine
        ).status_code
        == 204
    )
    left = ok(shop.client.get("/v1/store/customers/me/addresses", headers=mine))["items"]
    assert [a["id"] for a in left] == [work["id"]]
    assert count(shop.db, CustomerAddress) == 1


def test_staff_find_people_by_any_email_or_phone(shop: Shop, analyst: dict[str, str]) -> None:
    kai = register(shop, "kai@example.com", phone="+49 30 901820")["customer"]["id"]
    eva = register(shop, "eva@example.com")["customer"]["id"]
    # A second email and a phone, known from a POS sale: identities, not the login.
    added = shop.client.post(
        f"/v1/customers/{eva}/identities",
        headers=shop.staff,
        json={"type": "email", "value": "Eva.Work@Example.com"},
    )
    assert created(added)["value"] == "eva.work@example.com"
    created(
        shop.client.post(
            f"/v1/customers/{eva}/identities",
            headers=shop.staff,
            json={"type": "phone", "value": "+81 3-1234-5678", "verified": True},
        )
    )

    def ids(query: str) -> list[int]:
        return [
            c["id"]
            for c in ok(shop.client.get(f"/v1/customers?{query}", headers=shop.staff))["items"]
        ]

    assert ids("email=EVA.work@example.com") == [eva]
    assert ids("email=kai@example.com") == [kai]
    assert ids("phone=%2B4930901820") == [kai]
    assert ids("phone=%2B81%203%201234%205678") == [eva]
    assert ids("email=nobody@example.com") == []
    for query in ("email=kai@example.com", "phone=%2B4930901820"):
        problem = assert_problem(shop.client.get(f"/v1/customers?{query}", headers=analyst), 403)
        assert problem["permission"] == "customers:pii"
    # A verified phone belongs to one profile.
    taken = shop.client.post(
        f"/v1/customers/{kai}/identities",
        headers=shop.staff,
        json={"type": "phone", "value": "+81312345678", "verified": True},
    )
    assert assert_problem(taken, 409, "identity-taken")["customer_id"] == eva
    bad = shop.client.post(
        f"/v1/customers/{kai}/identities",
        headers=shop.staff,
        json={"type": "phone", "value": "not a number"},
    )
    assert [e["field"] for e in assert_problem(bad, 422)["errors"]] == ["body.value"]
    bad = shop.client.post(
        f"/v1/customers/{kai}/identities", headers=shop.staff, json={"type": "fax", "value": "1"}
    )
    assert [e["field"] for e in assert_problem(bad, 422)["errors"]] == ["body.type"]
    assert count(shop.db, CustomerIdentity) == 5


def test_staff_manage_groups_and_tags_used_by_pricing(
    shop: Shop, make_staff: Any, analyst: dict[str, str]
) -> None:
    kai = register(shop, "kai@example.com", first_name="Kai")["customer"]["id"]
    profile = ok(
        shop.client.patch(
            f"/v1/customers/{kai}",
            headers=shop.staff,
            json={"groups": [" vip ", "members", "vip"], "tags": ["press"]},
        )
    )
    assert (profile["groups"], profile["tags"]) == (["vip", "members"], ["press"])
    with shop.db.read() as session:
        assert service.customer_groups(session, kai) == {"vip", "members"}
    entry = audit_entries(shop.db, "customer.updated")[-1]
    assert entry.changes["fields"] == ["groups", "tags"]

    # Names are personal data: changing them needs customers:pii, and the audit log
    # records that they changed, not what to.
    integration = make_staff(Role.INTEGRATION)
    problem = assert_problem(
        shop.client.patch(f"/v1/customers/{kai}", headers=integration, json={"last_name": "Berg"}),
        403,
    )
    assert problem["permission"] == "customers:pii"
    ok(shop.client.patch(f"/v1/customers/{kai}", headers=integration, json={"tags": []}))
    ok(shop.client.patch(f"/v1/customers/{kai}", headers=shop.staff, json={"last_name": "Berg"}))
    entry = audit_entries(shop.db, "customer.updated")[-1]
    assert entry.changes["fields"] == ["last_name"] and "Berg" not in repr(entry.changes)
    problem = assert_problem(
        shop.client.patch(f"/v1/customers/{kai}", headers=analyst, json={"tags": ["x"]}), 403
    )
    assert problem["permission"] == "customers:write"
    assert_problem(
        shop.client.patch(f"/v1/customers/{kai}", headers=shop.staff, json={"groups": [""]}), 422
    )
    assert_problem(
        shop.client.patch("/v1/customers/999999", headers=shop.staff, json={"tags": []}), 404
    )


def test_analysts_see_profiles_without_personal_data(shop: Shop, analyst: dict[str, str]) -> None:
    body = register(
        shop,
        "kai@example.com",
        first_name="Kai",
        last_name="Berg",
        phone="+49 30 901820",
        locale="de-DE",
    )
    kai = body["customer"]["id"]
    created(
        shop.client.post(
            "/v1/store/customers/me/addresses", headers=shop.store(body["token"]), json=HOME
        )
    )
    ok(shop.client.patch(f"/v1/customers/{kai}", headers=shop.staff, json={"groups": ["vip"]}))
    full = ok(shop.client.get(f"/v1/customers/{kai}/profile", headers=shop.staff))
    seen = ok(shop.client.get(f"/v1/customers/{kai}/profile", headers=analyst))
    assert full["email"] == "kai@example.com" and full["addresses"][0]["line1"] == "Torstraße 1"
    # The address is placed on the map from its postal code (staff with customers:pii see it).
    assert full["addresses"][0]["coordinates_source"] == "postal_code"
    assert full["addresses"][0]["latitude"] is not None
    for field in ("email", "phone", "first_name", "last_name"):
        assert seen[field] is None
    assert [i["value"] for i in seen["identities"]] == [None, None]
    assert [i["type"] for i in seen["identities"]] == ["email", "phone"]
    address = seen["addresses"][0]
    assert address["country"] == "DE"
    assert all(address[f] is None for f in ("line1", "city", "postal_code", "name", "phone"))
    # Where someone lives, to a hundred metres, is personal data too.
    assert all(address[f] is None for f in ("latitude", "longitude", "coordinates_source"))
    assert (seen["groups"], seen["locale"], seen["figures"]) == (["vip"], "de-DE", full["figures"])
    text = repr(seen)
    for secret in ("kai@example.com", "Berg", "901820", "Torstraße"):
        assert secret not in text
    support = {
        k: v
        for k, v in ok(shop.client.get(f"/v1/customers/{kai}/profile", headers=shop.staff)).items()
    }
    assert support == full
    assert_problem(shop.client.get("/v1/customers/999999/profile", headers=analyst), 404)


def test_customer_locale_falls_back_to_the_channel(shop: Shop) -> None:
    kai = register(shop, "kai@example.com")["customer"]["id"]
    with shop.db.read() as session:
        assert service.customer_locale(session, kai) == "de-DE"  # the web-de channel's
    ok(shop.client.patch(f"/v1/customers/{kai}", headers=shop.staff, json={"locale": "ja-JP"}))
    with shop.db.read() as session:
        assert service.customer_locale(session, kai) == "ja-JP"
        profile = service.customer_profile(session, kai)
        assert profile.email == "kai@example.com" and profile.locale == "ja-JP"
