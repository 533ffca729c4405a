"""Addresses without coordinates are placed on the map offline (postal code, else city, else
country): routing measures real distances and says where they come from, and "stores near
you" works from a postal code."""

from __future__ import annotations

import re
from typing import Any

from tests.commerce.conftest import DemoWorld
from tests.commerce.helpers import add, new_cart, ok
from tests.fulfillment.conftest import item, place, staff, tasks

# As a shopper types it: no coordinates.
BERLIN_MITTE = {
    "name": "Lena Schmidt",
    "line1": "Torstraße 1",
    "city": "Berlin",
    "postal_code": "10119",
    "country": "DE",
}


def _decisions(world: DemoWorld, order_id: int) -> list[dict[str, Any]]:
    body = ok(world.client.get(f"/v1/orders/{order_id}/routing", headers=staff(world)))
    return list(body if isinstance(body, list) else body["items"])


def test_a_berlin_address_is_a_few_km_from_the_berlin_store(demo_world: DemoWorld) -> None:
    variant = item(demo_world, {"ST-BERLIN": 3, "WH-FRA": 3}, {"EU": {"EUR": "30.00"}})
    order = place(
        demo_world, "web-de", [{"variant_id": variant, "quantity": 1}], address=BERLIN_MITTE
    )
    # The order keeps where its address lies and how that was found.
    address = order["shipping_address"]
    assert address["coordinates_source"] == "postal_code"
    assert (round(address["latitude"]), round(address["longitude"])) == (53, 13)
    # The store around the corner ships, not the warehouse 420 km away.
    [task] = tasks(demo_world, order["id"], "ship")
    assert task["location_id"] == demo_world.location_id("ST-BERLIN")
    explanation = _decisions(demo_world, order["id"])[-1]["explanation"]
    assert "1000 km" not in explanation
    found = re.search(r"ST-BERLIN: [^\n]*?, (\d+) km \(([^)]*\))\)", explanation)
    assert found is not None, explanation
    assert int(found.group(1)) < 10
    assert found.group(2) == "distance from postal code 10119 (GeoNames)"


def test_nearby_stores_from_a_tokyo_postal_code(demo_world: DemoWorld) -> None:
    client, key = demo_world.client, demo_world.key("web-jp")
    variant = item(
        demo_world, {"ST-OSAKA": 2, "WH-TYO": 2, "ST-SHIBUYA": 2}, {"JP": {"JPY": "3000"}}
    )
    # 150-0001 is Jingumae, Shibuya: the Shibuya store, then the Koto warehouse, then Osaka.
    body = ok(
        client.get(
            "/v1/store/availability",
            headers=key,
            params={"variant_ids": str(variant), "postal_code": "150-0001"},
        )
    )
    assert body["coordinates_source"] == "postal_code"
    codes = {demo_world.location_id(c): c for c in ("ST-SHIBUYA", "WH-TYO", "ST-OSAKA")}
    ranked = [(codes[x["location_id"]], x["distance_km"]) for x in body["locations"]]
    assert [code for code, _ in ranked] == ["ST-SHIBUYA", "WH-TYO", "ST-OSAKA"]
    assert ranked[0][1] < 3 and ranked[1][1] < 20 and 350 < ranked[2][1] < 450
    # A cart shipping to that postal code lists the pickup stores nearest first as well.
    token = new_cart(client, key)["token"]
    add(client, key, token, variant)
    ok(
        client.patch(
            f"/v1/store/carts/{token}",
            headers=key,
            json={
                "shipping_address": {
                    "name": "Aiko Tanaka",
                    "line1": "1-2-3 Jingumae",
                    "city": "渋谷区",
                    "postal_code": "150-0001",
                    "country": "JP",
                }
            },
        )
    )
    options = ok(client.get(f"/v1/store/carts/{token}/delivery-options", headers=key))
    stores = options["lines"][0]["pickup_stores"]
    assert [codes[s["location_id"]] for s in stores] == ["ST-SHIBUYA", "ST-OSAKA"]
    assert stores[0]["distance_km"] < 3


def test_an_unknown_postal_code_falls_back_to_the_city_then_the_country(
    demo_world: DemoWorld,
) -> None:
    client, key = demo_world.client, demo_world.key("web-de")
    variant = item(demo_world, {"ST-BERLIN": 1}, {"EU": {"EUR": "30.00"}})

    def nearby(**where: str) -> dict[str, Any]:
        params = {"variant_ids": str(variant), **where}
        return ok(client.get("/v1/store/availability", headers=key, params=params))

    by_city = nearby(postal_code="00000", city="Berlin")
    assert by_city["coordinates_source"] == "city"
    assert by_city["locations"][0]["distance_km"] < 5
    by_country = nearby(postal_code="00000", city="Nowhere-on-the-map")
    assert by_country["coordinates_source"] == "country"
    # The centre of Germany: between the Berlin store and Frankfurt, hundreds of km away.
    assert 200 < by_country["locations"][0]["distance_km"] < 500
    problem = client.get(
        "/v1/store/availability",
        headers=key,
        params={"variant_ids": str(variant), "city": "Berlin", "country": "XX"},
    )
    assert problem.status_code == 422
    assert problem.json()["errors"][0]["field"] == "query.country"
