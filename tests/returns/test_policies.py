"""Return policies: precedence, window, non-returnable categories, store returns, approval."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from mercato.catalog import service as catalog
from mercato.channels import service as channels
from mercato.db import utcnow
from mercato.events import Event
from mercato.returns import service
from mercato.returns.models import FulfilmentDate, Return
from tests.commerce.conftest import DemoWorld
from tests.commerce.helpers import ok
from tests.conftest import assert_problem
from tests.returns.conftest import (
    deliver,
    fulfil,
    line,
    place,
    product,
    receive,
    staff_login,
    start_return,
)


def _channel_id(world: DemoWorld, code: str) -> int:
    with world.database.read() as session:
        found = channels.channel_by_code(session, code)
        assert found is not None
        return found.id


def _category_id(world: DemoWorld, code: str) -> int:
    with world.database.read() as session:
        found = catalog.category_by_code(session, code)
        assert found is not None
        return found.id


def _returns_of(world: DemoWorld, order_id: int) -> int:
    with world.database.read() as session:
        query = select(func.count()).select_from(Return).where(Return.order_id == order_id)
        return int(session.scalar(query) or 0)


def test_the_most_specific_policy_wins(demo_world: DemoWorld) -> None:
    client, staff = demo_world.client, staff_login(demo_world)
    web_jp, app = _channel_id(demo_world, "web-jp"), _channel_id(demo_world, "app")

    def effective(channel_id: int, country: str) -> int:
        found = ok(
            client.get(
                f"/v1/return-policies/effective?channel_id={channel_id}&country={country}",
                headers=staff,
            )
        )
        return int(found["days_allowed"])

    assert effective(web_jp, "JP") == service.DEFAULT_DAYS  # built in
    made = {}
    scopes: list[tuple[int, dict[str, Any]]] = [
        (10, {}),
        (20, {"country": "JP"}),
        (30, {"channel_id": web_jp}),
        (40, {"channel_id": web_jp, "country": "jp"}),
    ]
    for days, scope in scopes:
        made[days] = ok(
            client.post("/v1/return-policies", headers=staff, json={"days_allowed": days, **scope}),
            201,
        )
    assert made[40]["scope"] == f"channel:{web_jp}|country:JP"
    assert effective(web_jp, "JP") == 40  # channel + country
    assert effective(web_jp, "SG") == 30  # channel
    assert effective(app, "JP") == 20  # country
    assert effective(app, "SG") == 10  # the stored default
    ok(
        client.patch(
            f"/v1/return-policies/{made[20]['id']}", headers=staff, json={"days_allowed": 21}
        )
    )
    assert effective(app, "JP") == 21
    assert client.delete(f"/v1/return-policies/{made[40]['id']}", headers=staff).status_code == 204
    assert effective(web_jp, "JP") == 30
    listed: list[dict[str, Any]] = client.get("/v1/return-policies", headers=staff).json()["items"]
    assert sorted(p["days_allowed"] for p in listed) == [10, 21, 30]
    assert_problem(
        client.post(
            "/v1/return-policies", headers=staff, json={"days_allowed": 5, "channel_id": web_jp}
        ),
        409,
        "return-policy-exists",
    )


def test_policy_input_is_checked(demo_world: DemoWorld) -> None:
    client, staff = demo_world.client, staff_login(demo_world)
    bad = [
        ({"days_allowed": 30, "restocking_fee_percent": "101"}, "body.restocking_fee_percent"),
        ({"days_allowed": 30, "restocking_fee_percent": "2.555"}, "body.restocking_fee_percent"),
        ({"days_allowed": -1}, "body.days_allowed"),
        ({"days_allowed": 30, "country": "XX"}, "body.country"),
        ({"days_allowed": 30, "channel_id": 10**8}, "body.channel_id"),
        (
            {"days_allowed": 30, "non_returnable_category_ids": [10**8]},
            "body.non_returnable_category_ids",
        ),
        ({"days_allowed": 30, "surprise": True}, "body.surprise"),
    ]
    for body, field in bad:
        problem = assert_problem(client.post("/v1/return-policies", headers=staff, json=body), 422)
        assert problem["errors"][0]["field"] == field, (body, problem)
    assert client.get("/v1/return-policies", headers=staff).json()["items"] == []
    analyst = staff_login(demo_world, "analyst")
    denied = assert_problem(
        client.post("/v1/return-policies", headers=analyst, json={"days_allowed": 30}), 403
    )
    assert denied["permission"] == "orders:write"


def test_the_window_counts_from_the_last_fulfilment(demo_world: DemoWorld) -> None:
    staff = staff_login(demo_world)
    ok(
        demo_world.client.post(
            "/v1/return-policies", headers=staff, json={"days_allowed": 30, "country": "JP"}
        ),
        201,
    )
    item = product(demo_world, {"ONE": {"JPY": "1500"}}, {"WH-TYO": 5})
    order = place(demo_world, [(item["ONE"], 2)])
    fulfil(demo_world, order)
    # The order.fulfilled event reaches the returns domain's subscriber: it keeps the date.
    assert deliver(demo_world, order.id, service.FULFILMENT_EVENTS) == 1

    def fulfilled(days_ago: int) -> None:
        with demo_world.database.transaction() as session:
            done = session.execute(
                update(FulfilmentDate)
                .where(FulfilmentDate.order_id == order.id)
                .values(fulfilled_at=utcnow() - timedelta(days=days_ago))
            )
            assert done.rowcount == 1  # type: ignore[attr-defined]

    fulfilled(31)
    body = {"order_number": order.number, "lines": [line(order, item["ONE"], 1, "changed_mind")]}
    problem = assert_problem(
        demo_world.client.post("/v1/returns", headers=staff, json=body),
        422,
        "return-window-expired",
    )
    assert problem["days_allowed"] == 30
    assert _returns_of(demo_world, order.id) == 0
    fulfilled(29)
    ok(demo_world.client.post("/v1/returns", headers=staff, json=body), 201)


def test_fulfilment_dates_keep_the_latest_event(demo_world: DemoWorld) -> None:
    order_id = 10**9 + uuid.uuid4().int % 10**6
    now = utcnow()
    with demo_world.database.transaction() as session:
        for days in (0, 3):  # delivered today, then a late copy of the fulfilment event
            service.record_fulfilment(
                session,
                Event(
                    str(uuid.uuid4()),
                    "order.fulfilled",
                    now - timedelta(days=days),
                    1,
                    {
                        "order_id": order_id,
                        "number": f"M{order_id}",
                        "channel_id": 1,
                        "customer_id": None,
                        "status": "fulfilled",
                        "currency": "JPY",
                        "grand_total": "1500",
                        "source": "checkout",
                    },
                ).typed(),
            )
    with demo_world.database.read() as session:
        found = session.get(FulfilmentDate, order_id)
        assert found is not None and abs(found.fulfilled_at - now) < timedelta(seconds=1)


@pytest.mark.slow
def test_non_returnable_categories_include_their_subcategories(demo_world: DemoWorld) -> None:
    staff = staff_login(demo_world)
    web_jp = _channel_id(demo_world, "web-jp")
    ok(
        demo_world.client.post(
            "/v1/return-policies",
            headers=staff,
            json={
                "days_allowed": 30,
                "channel_id": web_jp,
                "non_returnable_category_ids": [_category_id(demo_world, "coffee")],
            },
        ),
        201,
    )
    beans = product(
        demo_world, {"250G": {"JPY": "1800"}}, {"WH-TYO": 5}, category="organic-coffee-beans"
    )
    mug = product(demo_world, {"ONE": {"JPY": "1800"}}, {"WH-TYO": 5}, category="mugs")
    order = place(demo_world, [(beans["250G"], 1), (mug["ONE"], 1)])
    fulfil(demo_world, order)
    body = {
        "order_number": order.number,
        "lines": [
            line(order, mug["ONE"], 1, "changed_mind"),
            line(order, beans["250G"], 1, "changed_mind"),
        ],
    }
    problem = assert_problem(
        demo_world.client.post("/v1/returns", headers=staff, json=body), 422, "not-returnable"
    )
    assert [e["field"] for e in problem["errors"]] == ["body.lines[1].order_line_id"]
    assert _returns_of(demo_world, order.id) == 0
    # The same item sold by another channel falls under the default policy.
    other = place(demo_world, [(beans["250G"], 1)], channel="marketplace-jp")
    fulfil(demo_world, other)
    start_return(demo_world, staff, other, [line(other, beans["250G"], 1, "changed_mind")])


@pytest.mark.slow
def test_store_returns_and_manual_approval(demo_world: DemoWorld) -> None:
    client, staff = demo_world.client, staff_login(demo_world)
    ok(
        client.post(
            "/v1/return-policies",
            headers=staff,
            json={
                "days_allowed": 30,
                "country": "JP",
                "accept_store_returns": False,
                "auto_approve": False,
            },
        ),
        201,
    )
    item = product(demo_world, {"ONE": {"JPY": "2200"}}, {"WH-TYO": 5})
    order = place(demo_world, [(item["ONE"], 2)])
    fulfil(demo_world, order)
    ret = start_return(demo_world, staff, order, [line(order, item["ONE"], 1, "other")])
    assert ret["status"] == "requested" and ret["policy"]["country"] == "JP"
    assert_problem(receive(demo_world, staff, ret, "WH-TYO"), 409, "illegal-transition")
    approved = ok(client.post(f"/v1/returns/{ret['id']}/approve", headers=staff, json={}))
    assert approved["status"] == "approved"
    assert_problem(receive(demo_world, staff, ret, "ST-SHIBUYA"), 422, "store-returns-not-accepted")
    assert ok(receive(demo_world, staff, ret, "WH-TYO"))["status"] == "inspected"

    second = start_return(demo_world, staff, order, [line(order, item["ONE"], 1, "other")])
    assert_problem(client.post(f"/v1/returns/{second['id']}/reject", headers=staff, json={}), 422)
    rejected = ok(
        client.post(f"/v1/returns/{second['id']}/reject", headers=staff, json={"reason": "worn"})
    )
    assert rejected["status"] == "rejected"
    assert rejected["timeline"][-1]["reason"] == "worn"
