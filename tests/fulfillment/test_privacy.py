"""Pick lists show the shipping address to staff who handle personal data only."""

from __future__ import annotations

import pytest

from tests.commerce.conftest import DemoWorld
from tests.commerce.helpers import BERLIN, ok
from tests.fulfillment.conftest import item, place, staff, tasks
from tests.helpers import all_items

pytestmark = pytest.mark.slow

PERSONAL = ("name", "line1", "line2", "city", "region", "postal_code", "phone", "email")


def test_an_analyst_sees_pick_lists_without_the_customers_address(
    demo_world: DemoWorld,
) -> None:
    client = demo_world.client
    variant = item(demo_world, {"WH-FRA": 2}, {"EU": {"EUR": "15.00"}})
    address = {**BERLIN, "phone": "+49301234567"}
    order = place(demo_world, "web-de", [{"variant_id": variant, "quantity": 1}], address=address)
    [task] = tasks(demo_world, order["id"], "ship")
    assert task["shipping_address"]["phone"] == "+49301234567"  # the owner handles parcels
    analyst = staff(demo_world, "analyst")
    seen = ok(client.get(f"/v1/fulfillment/orders/{task['id']}", headers=analyst))
    listed = next(
        t
        for t in all_items(
            client,
            f"/v1/fulfillment/orders?location_id={task['location_id']}&kind=ship&status=open",
            analyst,
        )
        if t["id"] == task["id"]
    )
    for view in (seen, listed):
        shown = view["shipping_address"]
        assert shown["country"] == "DE"
        assert all(shown.get(k) is None for k in PERSONAL), shown
        assert shown.get("latitude") is None and shown.get("longitude") is None
        assert view["lines"] == task["lines"]


def test_a_pick_list_finds_one_order_by_its_number(demo_world: DemoWorld) -> None:
    client = demo_world.client
    variant = item(demo_world, {"WH-FRA": 2}, {"EU": {"EUR": "15.00"}})
    order = place(demo_world, "web-de", [{"variant_id": variant, "quantity": 1}], address=BERLIN)
    [task] = tasks(demo_world, order["id"], "ship")
    owner = staff(demo_world, "owner")
    found = ok(client.get(f"/v1/fulfillment/orders?order_number={order['number']}", headers=owner))
    assert [t["id"] for t in found["items"]] == [task["id"]]
    none = ok(client.get("/v1/fulfillment/orders?order_number=NO-SUCH-1", headers=owner))
    assert none["items"] == []
