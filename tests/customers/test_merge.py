"""Merging two profiles of one person, and undoing it: nothing lost, nothing counted twice."""

from __future__ import annotations

import threading
import uuid
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from mercato.auth.permissions import Role
from mercato.customers import figures, service
from mercato.customers.models import CustomerFigures, CustomerMerge
from mercato.db import Database, utcnow
from mercato.event_types import typed
from mercato.events import Event
from tests.conftest import assert_problem
from tests.customers.conftest import SYSTEM, Shop, place_order, register
from tests.helpers import audit_entries, count, ok, outbox

pytestmark = pytest.mark.slow

Profile = dict[str, Any]
HOME = {"line1": "Torstraße 1", "city": "Berlin", "postal_code": "10119", "country": "DE"}
WORK = {"line1": "Hafenstr. 1", "city": "Hamburg", "postal_code": "20457", "country": "DE"}


def _profile(shop: Shop, customer_id: int) -> Profile:
    body: Profile = ok(shop.client.get(f"/v1/customers/{customer_id}/profile", headers=shop.staff))
    return body


def _comparable(profile: Profile) -> Profile:
    """The profile without what a merge and its undo legitimately touch (status, times)."""
    keep = {k: v for k, v in profile.items() if k not in ("status", "merged_into_id")}
    keep["identities"] = sorted(
        (i["id"], i["type"], i["value"], i["verified"]) for i in profile["identities"]
    )
    keep["addresses"] = sorted(
        (a["id"], a["line1"], a["default_shipping"]) for a in profile["addresses"]
    )
    return keep


def _two_profiles(shop: Shop) -> tuple[int, int, str]:
    """A: a web account with orders; B: a marketplace buyer with orders, same person."""
    body = register(
        shop, "ana@example.com", first_name="Ana", last_name="Lima", phone="+49 30 901820"
    )
    a = body["customer"]["id"]
    store = shop.store(body["token"])
    added = shop.client.post(
        "/v1/store/customers/me/addresses", headers=store, json={**HOME, "default_shipping": True}
    )
    assert added.status_code == 201, added.text
    ok(
        shop.client.patch(
            f"/v1/customers/{a}", headers=shop.staff, json={"groups": ["vip"], "tags": ["press"]}
        )
    )
    with shop.db.transaction() as session:
        b = service.resolve_identity(
            session,
            channel_id=shop.marketplace["id"],
            identities=[
                ("marketplace_buyer", "B-77", True),
                ("email", "ana.l@example.com", True),
                ("phone", "+4930901820", False),
            ],
            name="Ana Lima",
            address={**WORK, "name": "Ana"},
        )
        b.groups, b.tags, b.currency = ["members", "vip"], ["wholesale"], "EUR"
        b_id = b.id
    for amount in ("10.00", "20.00"):
        place_order(
            shop.db, channel_id=shop.web["id"], customer_id=a, currency="EUR", amounts=[amount]
        )
    place_order(
        shop.db,
        channel_id=shop.marketplace["id"],
        customer_id=b_id,
        currency="EUR",
        amounts=["5.00"],
    )
    place_order(
        shop.db,
        channel_id=shop.marketplace["id"],
        customer_id=b_id,
        currency="GBP",
        amounts=["7.00"],
    )
    shop.drain()
    return a, b_id, str(body["token"])


def _merge(shop: Shop, into: int, source: int) -> str:
    response = shop.client.post(
        f"/v1/customers/{into}/merge", json={"from": source}, headers=shop.staff
    )
    assert response.status_code == 201, response.text
    return str(response.json()["merge_id"])


def test_merge_moves_everything_and_undo_restores_exactly(shop: Shop) -> None:
    a, b, token_a = _two_profiles(shop)
    before_a, before_b = _profile(shop, a), _profile(shop, b)
    assert before_a["figures"]["order_count"] == 2
    assert before_b["figures"]["order_count"] == 2

    merged = shop.client.post(f"/v1/customers/{a}/merge", json={"from": b}, headers=shop.staff)
    assert merged.status_code == 201, merged.text
    record = merged.json()
    assert (record["into"], record["from"], record["status"]) == (a, b, "merged")
    # B's email and buyer id move; its unverified phone stays (A holds that number already).
    assert record["moved"] == {
        "identities": 2,
        "addresses": 1,
        "groups": 1,
        "tags": 1,
        "filled": 1,
        "orders": 2,
    }

    after = _profile(shop, a)
    assert sorted((i["type"], i["value"]) for i in after["identities"]) == [
        ("email", "ana.l@example.com"),
        ("email", "ana@example.com"),
        ("marketplace_buyer", "B-77"),
        ("phone", "+4930901820"),
    ]
    assert sorted(x["city"] for x in after["addresses"]) == ["Berlin", "Hamburg"]
    # A keeps its default address; the one that came along is not a second default.
    assert [x["city"] for x in after["addresses"] if x["default_shipping"]] == ["Berlin"]
    assert (after["groups"], after["tags"]) == (["vip", "members"], ["press", "wholesale"])
    assert after["currency"] == "EUR"  # A had none: taken from B
    assert after["merged_profile_ids"] == [b]
    assert after["figures"]["order_count"] == 4
    assert {(x["currency"], x["lifetime_value"]) for x in after["figures"]["lifetime_value"]} == {
        ("EUR", "35.00"),
        ("GBP", "7.00"),
    }
    gone = _profile(shop, b)
    assert (gone["status"], gone["merged_into_id"]) == ("merged", a)
    assert gone["figures"]["order_count"] == 0 and gone["identities"] == [
        i for i in before_b["identities"] if i["type"] == "phone"
    ]

    # Every way of finding B now answers with A.
    with shop.db.read() as session:
        found = service.find_by_email(session, "ana.l@example.com")
        assert found is not None and found.id == a
        assert service.customer_groups(session, b) == {"vip", "members"}
    listed = ok(shop.client.get("/v1/customers", headers=shop.staff))["items"]
    assert [c["id"] for c in listed] == [a]
    assert ok(shop.client.get("/v1/store/customers/me", headers=shop.store(token_a)))["id"] == a

    events = outbox(shop.db, "customer.merged")
    assert [e.data for e in events] == [{"into": a, "from": b, "merge_id": record["merge_id"]}]
    assert [e.entity_id for e in audit_entries(shop.db, "customer.merged")] == [str(a)]

    undone = ok(
        shop.client.post(f"/v1/customers/merges/{record['merge_id']}/undo", headers=shop.staff)
    )
    assert undone["status"] == "undone" and undone["undone_at"] is not None
    assert _comparable(_profile(shop, a)) == _comparable(before_a)
    assert _comparable(_profile(shop, b)) == _comparable(before_b)
    assert _profile(shop, b)["status"] == "active"
    assert [e.data for e in outbox(shop.db, "customer.merge_undone")] == [
        {"into": a, "from": b, "merge_id": record["merge_id"]}
    ]
    # The pair is suggested again, and B's orders count for B once more.
    place_order(
        shop.db, channel_id=shop.marketplace["id"], customer_id=b, currency="EUR", amounts=["1.00"]
    )
    shop.drain()
    assert _profile(shop, b)["figures"]["order_count"] == 3
    assert _profile(shop, a)["figures"]["order_count"] == 2


def test_orders_placed_for_a_merged_profile_count_for_the_survivor(shop: Shop) -> None:
    a, b, _ = _two_profiles(shop)
    merge_id = _merge(shop, a, b)
    place_order(
        shop.db, channel_id=shop.marketplace["id"], customer_id=b, currency="EUR", amounts=["2.00"]
    )
    shop.drain()
    assert _profile(shop, a)["figures"]["order_count"] == 5
    # Undo moves back what the merge moved; the new order stays where it was counted.
    ok(shop.client.post(f"/v1/customers/merges/{merge_id}/undo", headers=shop.staff))
    assert _profile(shop, a)["figures"]["order_count"] == 3
    assert _profile(shop, b)["figures"]["order_count"] == 2


def _state(db: Database) -> tuple[int, int, int]:
    with db.read() as session:
        merges = session.scalar(select(func.count()).select_from(CustomerMerge)) or 0
        figures_rows = session.scalar(select(func.count()).select_from(CustomerFigures)) or 0
    return merges, figures_rows, len(outbox(db))


def test_bad_merges_are_refused_and_change_nothing(shop: Shop, make_staff: Any) -> None:
    a, b, _ = _two_profiles(shop)
    before = (_profile(shop, a), _profile(shop, b), _state(shop.db))

    problem = assert_problem(
        shop.client.post(f"/v1/customers/{a}/merge", json={"from": a}, headers=shop.staff), 422
    )
    assert [e["field"] for e in problem["errors"]] == ["body.from"]
    problem = assert_problem(
        shop.client.post(f"/v1/customers/{a}/merge", json={"from": 999999}, headers=shop.staff), 422
    )
    assert [e["field"] for e in problem["errors"]] == ["body.from"]
    for body in ({}, {"from": "x"}, {"from": b, "extra": 1}, {"from_id": b}, {"from": 0}):
        assert_problem(
            shop.client.post(f"/v1/customers/{a}/merge", json=body, headers=shop.staff), 422
        )
    assert_problem(
        shop.client.post("/v1/customers/999999/merge", json={"from": b}, headers=shop.staff), 404
    )
    analyst = make_staff(Role.ANALYST)
    problem = assert_problem(
        shop.client.post(f"/v1/customers/{a}/merge", json={"from": b}, headers=analyst), 403
    )
    assert problem["permission"] == "customers:write"
    assert_problem(
        shop.client.post(f"/v1/customers/merges/{uuid.uuid4()}/undo", headers=shop.staff), 404
    )
    assert (_profile(shop, a), _profile(shop, b), _state(shop.db)) == before

    _merge(shop, a, b)
    after_merge = (_profile(shop, a), _profile(shop, b), _state(shop.db))
    assert_problem(
        shop.client.post(f"/v1/customers/{a}/merge", json={"from": b}, headers=shop.staff),
        409,
        "already-merged",
    )
    assert_problem(
        shop.client.post(f"/v1/customers/{b}/merge", json={"from": a}, headers=shop.staff),
        409,
        "merged-profile",
    )
    c = register(shop, "carl@example.com")["customer"]["id"]
    assert_problem(
        shop.client.post(f"/v1/customers/{b}/merge", json={"from": c}, headers=shop.staff),
        409,
        "merged-profile",
    )
    assert (_profile(shop, a), _profile(shop, b)) == after_merge[:2]


def test_undo_must_follow_the_merges_in_reverse(shop: Shop) -> None:
    a, b, _ = _two_profiles(shop)
    c = register(shop, "carl@example.com")["customer"]["id"]
    first = _merge(shop, a, b)
    second = _merge(shop, c, a)
    assert _profile(shop, c)["figures"]["order_count"] == 4
    assert sorted(_profile(shop, c)["merged_profile_ids"]) == sorted([a, b])
    assert_problem(
        shop.client.post(f"/v1/customers/merges/{first}/undo", headers=shop.staff),
        409,
        "merge-not-latest",
    )
    ok(shop.client.post(f"/v1/customers/merges/{second}/undo", headers=shop.staff))
    assert_problem(
        shop.client.post(f"/v1/customers/merges/{second}/undo", headers=shop.staff),
        409,
        "already-undone",
    )
    ok(shop.client.post(f"/v1/customers/merges/{first}/undo", headers=shop.staff))
    counts = [_profile(shop, x)["figures"]["order_count"] for x in (a, b, c)]
    assert counts == [2, 2, 0]
    assert (
        ok(shop.client.get(f"/v1/customers/merges/{first}", headers=shop.staff))["status"]
        == "undone"
    )


def test_order_events_racing_a_merge_are_all_counted(shop: Shop, db: Database) -> None:
    """Order events for B arrive while staff merge B into A: every order ends up counted
    once, on A, however the two interleave."""
    a, b, _ = _two_profiles(shop)
    errors: list[BaseException] = []
    barrier = threading.Barrier(5)

    def orders(start: int) -> None:
        try:
            barrier.wait()
            for n in range(start, start + 10):
                event = typed(
                    Event(
                        str(uuid.uuid4()),
                        "order.placed",
                        utcnow(),
                        1,
                        {
                            "order_id": 5_000_000 + n,
                            "number": f"M{5_000_000 + n}",
                            "customer_id": b,
                            "channel_id": None,
                            "status": "placed",
                            "currency": "EUR",
                            "grand_total": "1.00",
                            "source": "import",
                        },
                    )
                )
                with db.transaction() as session:
                    figures.on_order_placed(session, event)
        except BaseException as exc:
            errors.append(exc)

    def merge() -> None:
        try:
            barrier.wait()
            with db.transaction() as session:
                service.merge(session, SYSTEM, a, b)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=orders, args=(n * 10,)) for n in range(4)]
    threads.append(threading.Thread(target=merge))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    with db.read() as session:
        eur = session.get(CustomerFigures, (a, "EUR"))
        assert eur is not None
        assert (eur.order_count, eur.lifetime_value) == (2 + 1 + 40, Decimal("75.00"))
        leftover = session.get(CustomerFigures, (b, "EUR"))
        assert leftover is None or leftover.order_count == 0
    assert count(db, CustomerMerge) == 1
