"""The customer timeline: every interaction on every channel, from every domain."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from mercato.customers import service, timeline
from mercato.db import utcnow
from tests.conftest import assert_problem
from tests.customers.conftest import Shop, cancel_order, place_order, register
from tests.helpers import LOCATION, created, make_channel, ok, outbox


@pytest.fixture
def support_source() -> Iterator[list[int]]:
    """A source registered the way the support domain registers its own."""
    asked: list[int] = []
    at = utcnow() + timedelta(hours=1)  # the newest thing that happened

    def messages(
        session: Session, customer_id: int, since: datetime | None, limit: int
    ) -> list[timeline.TimelineEntry]:
        asked.append(customer_id)
        return [
            timeline.TimelineEntry(
                at=at,
                kind="support_message",
                channel_id=None,
                summary="Where is my parcel?",
                ref_type="case",
                ref_id="7",
            )
        ][:limit]

    original = timeline.SOURCES.get("support")
    timeline.register_timeline_source("support", messages)
    yield asked
    if original is None:
        timeline.SOURCES.remove("support")
    else:
        timeline.register_timeline_source("support", original)


def test_timeline_shows_orders_store_visits_carts_and_profile_changes(
    shop: Shop, support_source: list[int]
) -> None:
    body = register(shop, "kai@example.com")
    kai = body["customer"]["id"]
    cart = shop.client.post("/v1/store/carts", json={}, headers=shop.store(body["token"]))
    assert cart.status_code == 201, cart.text
    store = created(
        shop.client.post(
            "/v1/locations", headers=shop.staff, json={**LOCATION, "code": "ST-9", "type": "store"}
        )
    )
    pos = make_channel(
        shop.client,
        shop.staff,
        "pos-9",
        type="pos",
        currencies=["EUR"],
        locations=[{"location_id": store["id"], "priority": 0}],
    )
    online = place_order(
        shop.db, channel_id=shop.web["id"], customer_id=kai, currency="EUR", amounts=["12.50"]
    )
    visit = place_order(
        shop.db, channel_id=pos["id"], customer_id=kai, currency="EUR", amounts=["3.00"]
    )
    cancel_order(shop.db, online.id)
    ok(shop.client.patch(f"/v1/customers/{kai}", headers=shop.staff, json={"tags": ["x"]}))
    place_order(shop.db, channel_id=shop.web["id"], customer_id=None, currency="EUR", amounts=["1"])

    entries = ok(shop.client.get(f"/v1/customers/{kai}/timeline", headers=shop.staff))["items"]
    kinds = [(e["source"], e["kind"]) for e in entries]
    assert kinds[0] == ("support", "support_message")
    assert sorted(kinds) == sorted(
        [
            ("support", "support_message"),
            ("profile", "profile.updated"),
            ("orders", "store_visit"),
            ("orders", "order"),
            ("carts", "cart"),
            ("profile", "identity.added"),
            ("profile", "profile.registered"),
        ]
    )
    times = [e["at"] for e in entries]
    assert times == sorted(times, reverse=True)
    by_kind = {e["kind"]: e for e in entries}
    assert by_kind["order"]["channel_id"] == shop.web["id"]
    assert by_kind["order"]["data"]["status"] == "cancelled"
    assert by_kind["order"]["ref_id"] == str(online.id)
    assert by_kind["store_visit"]["channel_id"] == pos["id"]
    assert by_kind["store_visit"]["data"]["number"] == visit.number
    assert cart.json()["customer_id"] == kai
    started = outbox(shop.db, "cart.created")[0].data
    assert by_kind["cart"]["ref_id"] == str(started["cart_id"])
    assert by_kind["cart"]["channel_id"] == shop.web["id"]
    assert by_kind["profile.updated"]["data"] == {"fields": ["tags"]}

    limited = ok(shop.client.get(f"/v1/customers/{kai}/timeline?limit=2", headers=shop.staff))
    limited = limited["items"]
    assert limited == entries[:2]
    later = (utcnow() + timedelta(minutes=30)).isoformat().replace("+00:00", "Z")
    since = ok(
        shop.client.get(
            f"/v1/customers/{kai}/timeline", params={"since": later}, headers=shop.staff
        )
    )["items"]
    # Only the support source's entry is that recent (it ignores ``since`` itself).
    assert [e["kind"] for e in since] == ["support_message"]


def test_timeline_of_a_merged_profile_includes_what_is_still_filed_under_it(
    shop: Shop, support_source: list[int], analyst: dict[str, str]
) -> None:
    a = register(shop, "a@example.com")["customer"]["id"]
    b = register(shop, "b@example.com")["customer"]["id"]
    place_order(shop.db, channel_id=shop.web["id"], customer_id=b, currency="EUR", amounts=["4"])
    created(shop.client.post(f"/v1/customers/{a}/merge", json={"from": b}, headers=shop.staff))
    support_source.clear()
    entries = ok(shop.client.get(f"/v1/customers/{a}/timeline", headers=analyst))["items"]
    assert sorted(support_source) == [a, b]
    assert [e["kind"] for e in entries if e["source"] == "orders"] == ["order"]
    assert "profile.merged" in [e["kind"] for e in entries]
    # No personal data in entries: analysts may read the timeline.
    assert "b@example.com" not in repr(entries)


def test_timeline_bad_requests(shop: Shop) -> None:
    kai = register(shop, "kai@example.com")["customer"]["id"]
    assert_problem(shop.client.get("/v1/customers/999999/timeline", headers=shop.staff), 404)
    for query in ("limit=0", "limit=201", "since=yesterday", "before=2020-01-01"):
        assert_problem(
            shop.client.get(f"/v1/customers/{kai}/timeline?{query}", headers=shop.staff), 422
        )
    assert_problem(shop.client.get(f"/v1/customers/{kai}/timeline"), 401)


def test_sources_are_named_and_replaceable() -> None:
    assert {"orders", "carts", "profile"} <= set(timeline.timeline_sources())
    original = timeline.SOURCES["profile"]
    try:
        timeline.register_timeline_source("profile", lambda s, c, since, limit: [])
        assert timeline.SOURCES["profile"] is not original
    finally:
        timeline.register_timeline_source("profile", original)
    assert service.register_timeline_source is timeline.register_timeline_source
