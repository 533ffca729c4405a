"""The routing policy endpoint and the locations' daily capacity decide where orders go."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

import pytest
from sqlalchemy import func, select

from mercato.db import utcnow
from mercato.fulfillment import service as fulfillment
from mercato.fulfillment.models import FulfillmentLine, FulfillmentOrder
from mercato.locations.models import Location
from tests.commerce.conftest import SYSTEM, DemoWorld
from tests.commerce.helpers import ok
from tests.conftest import assert_problem
from tests.fulfillment.conftest import item, place, staff, tasks

pytestmark = pytest.mark.slow

MUNICH = {
    "name": "Jonas Weber",
    "line1": "Marienplatz 1",
    "city": "München",
    "postal_code": "80331",
    "country": "DE",
    "latitude": 48.137,
    "longitude": 11.575,
}


@pytest.fixture
def restore(demo_world: DemoWorld) -> Iterator[None]:
    """The demo business is shared by the session: its policy and capacities come back."""
    with demo_world.database.read() as session:
        capacities = {p.id: p.daily_capacity for p in session.scalars(select(Location))}
        policy = asdict(fulfillment.policy(session))
        days = fulfillment.pickup_days(session)
    yield
    with demo_world.database.transaction() as session:
        fulfillment.set_policy(session, SYSTEM, policy, days)
        for place_ in session.scalars(select(Location)):
            place_.daily_capacity = capacities[place_.id]


def _routed_to(world: DemoWorld, variant: int) -> str:
    order = place(world, "web-de", [{"variant_id": variant, "quantity": 1}], address=MUNICH)
    [task] = tasks(world, order["id"], "ship")
    codes = {world.location_id(c): c for c in ("WH-FRA", "ST-MUNICH", "ST-BERLIN")}
    return codes[task["location_id"]]


def _decision(world: DemoWorld, order_id: int) -> dict[str, Any]:
    page = ok(world.client.get(f"/v1/orders/{order_id}/routing", headers=staff(world)))
    decisions = page["items"]
    return dict(decisions[-1])


def test_the_policy_endpoint_changes_routing_decisions(
    demo_world: DemoWorld, restore: None
) -> None:
    client, owner = demo_world.client, staff(demo_world)
    variant = item(demo_world, {"WH-FRA": 5, "ST-MUNICH": 5}, {"EU": {"EUR": "30.00"}})
    # By default the store around the corner ships: cheaper than 300 km from Frankfurt.
    assert _routed_to(demo_world, variant) == "ST-MUNICH"
    body = ok(
        client.put(
            "/v1/fulfillment/policy",
            headers=owner,
            json={"policy": {"store_unit_penalty": 10}, "pickup_days": 3},
        )
    )
    assert body["policy"]["store_unit_penalty"] == 10 and body["pickup_days"] == 3
    assert ok(client.get("/v1/fulfillment/policy", headers=owner)) == body
    # A unit from a store now costs more than the distance: the warehouse ships.
    assert _routed_to(demo_world, variant) == "WH-FRA"
    # A rule instead of a weight: stores keep their last units for walk-in customers.
    ok(
        client.put(
            "/v1/fulfillment/policy", headers=owner, json={"policy": {"min_store_units": 10}}
        )
    )
    order = place(demo_world, "web-de", [{"variant_id": variant, "quantity": 1}], address=MUNICH)
    [task] = tasks(demo_world, order["id"], "ship")
    assert task["location_id"] == demo_world.location_id("WH-FRA")
    assert "WH-FRA" in _decision(demo_world, order["id"])["explanation"]
    ok(client.put("/v1/fulfillment/policy", headers=owner, json={"policy": {}}))
    assert _routed_to(demo_world, variant) == "ST-MUNICH"
    # Bad weights are refused and change nothing; analysts may not change the policy.
    before = ok(client.get("/v1/fulfillment/policy", headers=owner))
    problem = assert_problem(
        client.put("/v1/fulfillment/policy", headers=owner, json={"policy": {"cost_per_km": -1}}),
        422,
    )
    assert problem["errors"][0]["field"] == "body.policy"
    assert_problem(
        client.put("/v1/fulfillment/policy", headers=staff(demo_world, "analyst"), json={}),
        403,
    )
    assert ok(client.get("/v1/fulfillment/policy", headers=owner)) == before


def _units_today(world: DemoWorld, code: str) -> int:
    """What the location has been given to dispatch today, read from the database."""
    start = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    with world.database.read() as session:
        used = session.scalar(
            select(func.coalesce(func.sum(FulfillmentLine.quantity), 0))
            .join(FulfillmentOrder, FulfillmentOrder.id == FulfillmentLine.fulfillment_order_id)
            .where(
                FulfillmentOrder.location_id == world.location_id(code),
                FulfillmentOrder.created_at >= start,
                FulfillmentOrder.kind.in_(("ship", "transfer")),
                FulfillmentLine.status != "cancelled",
            )
        )
    return int(used or 0)


def _capacity(world: DemoWorld, code: str, units: int) -> None:
    ok(
        world.client.patch(
            f"/v1/locations/{world.location_id(code)}",
            headers=staff(world),
            json={"daily_capacity": units},
        )
    )


def test_daily_capacity_counts_the_work_already_given_today(
    demo_world: DemoWorld, restore: None
) -> None:
    variant = item(demo_world, {"WH-FRA": 5, "ST-MUNICH": 5}, {"EU": {"EUR": "30.00"}})
    used = _units_today(demo_world, "ST-MUNICH")
    _capacity(demo_world, "ST-MUNICH", used + 1)
    assert _routed_to(demo_world, variant) == "ST-MUNICH"
    # That order took the last unit of today's capacity: the next one goes elsewhere.
    assert _units_today(demo_world, "ST-MUNICH") == used + 1
    assert _routed_to(demo_world, variant) == "WH-FRA"
    _capacity(demo_world, "ST-MUNICH", used + 2)
    assert _routed_to(demo_world, variant) == "ST-MUNICH"
