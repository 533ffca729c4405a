"""Shipping abroad: the carrier quoted at checkout may not serve the location routing
picked; customs data comes from the catalogue, never made up; the value declared is net."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select

from mercato.orders.models import OrderNote
from mercato.shipping.models import ShippingLabel
from tests.commerce.conftest import DemoWorld
from tests.commerce.helpers import ok
from tests.conftest import assert_problem
from tests.fulfillment.conftest import NEW_YORK, item, level, order_of, place, staff, tasks


def _tokyo_only_order(world: DemoWorld, **customs: str | None) -> tuple[int, dict]:
    variant = item(world, {"WH-TYO": 3}, {"GLOBAL": {"USD": "900.00"}}, **customs)  # type: ignore[arg-type]
    order = place(
        world, "app", [{"variant_id": variant, "quantity": 1}], address=NEW_YORK, currency="USD"
    )
    return variant, order


def test_a_tokyo_parcel_to_new_york_goes_with_a_carrier_that_serves_the_route(
    demo_world: DemoWorld,
) -> None:
    client = demo_world.client
    variant, order = _tokyo_only_order(demo_world)
    # Only the Tokyo warehouse has the item: checkout quoted an international carrier from
    # Japan, not the domestic US one (see test_quote_and_route).
    assert order["shipping_option"]["carrier"] != "us-parcel"
    assert order["shipping_option"]["origin_country"] == "JP"
    [task] = tasks(demo_world, order["id"], "ship")
    assert task["location_id"] == demo_world.location_id("WH-TYO")
    # Staff naming a carrier that does not serve the route are told so, and nothing ships.
    problem = assert_problem(
        client.post(
            f"/v1/fulfillment/orders/{task['id']}/ship",
            headers=staff(demo_world),
            json={"carrier_code": "us-parcel", "service_code": "ground"},
        ),
        422,
    )
    assert problem["errors"][0]["field"] == "body.carrier_code"
    assert level(demo_world, variant, "WH-TYO").on_hand == 3
    shipped = ok(
        client.post(f"/v1/fulfillment/orders/{task['id']}/ship", headers=staff(demo_world), json={})
    )
    [shipment] = shipped["shipments"]
    assert shipment["carrier_code"] == order["shipping_option"]["carrier"]
    # The customs declaration: the catalogue's data and the net value of the goods.
    line = order_of(demo_world, order["id"])["lines"][0]
    [declared] = shipment["customs"]
    assert (declared["hs_code"], declared["origin_country"]) == ("610910", "PT")
    assert Decimal(line["tax"]) > 0  # New York sales tax, added on top at checkout
    net = Decimal(line["total"]) - Decimal(line["tax"])
    assert Decimal(declared["value"]) == net == Decimal("900.00")
    duty = shipment["duty_estimate"]
    assert duty is not None and duty["currency"] == "USD"
    assert {"duty", "import_tax", "de_minimis_applied"} <= set(duty)
    assert level(demo_world, variant, "WH-TYO").on_hand == 2
    assert order_of(demo_world, order["id"])["status"] == "fulfilled"
    with demo_world.database.read() as session:
        label = session.scalars(
            select(ShippingLabel).where(
                ShippingLabel.tracking_number == shipment["tracking_number"]
            )
        ).one()
        assert (label.origin_country, label.destination_country) == ("JP", "US")
        assert label.customs[0]["value"] == "900.00"
        notes = session.scalars(
            select(OrderNote.body).where(OrderNote.order_id == order["id"])
        ).all()
    # It left with the carrier quoted: nothing changed, nothing to explain.
    assert not any("Carrier changed" in n for n in notes)


def test_a_variant_without_customs_data_cannot_ship_abroad(demo_world: DemoWorld) -> None:
    client = demo_world.client
    variant, order = _tokyo_only_order(demo_world, hs_code=None, origin=None)
    [task] = tasks(demo_world, order["id"], "ship")
    problem = assert_problem(
        client.post(
            f"/v1/fulfillment/orders/{task['id']}/ship", headers=staff(demo_world), json={}
        ),
        409,
        "customs-data-missing",
    )
    fields = {e["field"] for e in problem["errors"]}
    assert fields == {
        f"variants[{variant}].hs_code",
        f"variants[{variant}].country_of_origin",
    }
    # Nothing moved: the units are still in Tokyo and held for the order.
    snapshot = level(demo_world, variant, "WH-TYO")
    assert (snapshot.on_hand, snapshot.reserved) == (3, 1)
    assert tasks(demo_world, order["id"], "ship")[0]["status"] == "open"
    assert order_of(demo_world, order["id"])["status"] == "allocated"
