"""Store staff read the stock of their own locations only; everyone else reads it all."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mercato.auth.permissions import Role
from tests.conftest import assert_problem
from tests.inventory.conftest import World

pytestmark = pytest.mark.slow

Stock = Callable[[int, int, int], None]
Headers = dict[str, str]


def _post(client: TestClient, path: str, body: dict[str, Any], headers: Headers) -> Any:
    response = client.post(path, json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def _get(client: TestClient, path: str, headers: Headers) -> Any:
    response = client.get(path, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def test_store_staff_read_only_their_locations(
    client: TestClient,
    owner_headers: Headers,
    make_staff: Callable[..., Headers],
    world: World,
    stock: Stock,
) -> None:
    v = world.variants[0]
    for place in world.locations:
        stock(v, place, 5)

    def transfer(to: int) -> int:
        body = {
            "from_location_id": world.warehouse,
            "to_location_id": to,
            "lines": [{"variant_id": v, "quantity": 1}],
        }
        return int(_post(client, "/v1/inventory/transfers", body, owner_headers)["id"])

    def hold(place: int) -> int:
        body = {"lines": [{"variant_id": v, "quantity": 1, "location_id": place}]}
        held = _post(client, "/v1/inventory/reservations", body, owner_headers)
        return int(held["reservations"][0]["id"])

    def purchase_order(place: int) -> int:
        body = {
            "reference": f"PO-{place}",
            "supplier": "Roastery",
            "location_id": place,
            "lines": [{"variant_id": v, "quantity": 3}],
        }
        return int(_post(client, "/v1/inventory/purchase-orders", body, owner_headers)["id"])

    to_a, to_b = transfer(world.store_a), transfer(world.store_b)
    held_a, held_b = hold(world.store_a), hold(world.store_b)
    po_a, po_b = purchase_order(world.store_a), purchase_order(world.store_b)

    for role in (Role.STORE_ASSOCIATE, Role.STORE_MANAGER):
        staff = make_staff(role, [world.store_a])
        levels = _get(client, "/v1/inventory/levels", staff)["items"]
        assert {x["location_id"] for x in levels} == {world.store_a}
        moves = _get(client, "/v1/inventory/movements?limit=200", staff)["items"]
        assert moves and {m["location_id"] for m in moves} == {world.store_a}
        transfers = _get(client, "/v1/inventory/transfers", staff)["items"]
        assert [t["id"] for t in transfers] == [to_a]
        # Their own documents read as usual.
        _get(client, f"/v1/inventory/levels/{v}/{world.store_a}", staff)
        _get(client, f"/v1/inventory/transfers/{to_a}", staff)
        _get(client, f"/v1/inventory/reservations/{held_a}", staff)
        _get(client, f"/v1/inventory/purchase-orders/{po_a}", staff)
        listed = _get(client, "/v1/inventory/purchase-orders?status=open", staff)["items"]
        assert [p["id"] for p in listed] == [po_a]
        # Another store's: the 403 a write there gets.
        for path in [
            f"/v1/inventory/levels?location_id={world.store_b}",
            f"/v1/inventory/movements?location_id={world.store_b}",
            f"/v1/inventory/levels/{v}/{world.store_b}",
            f"/v1/inventory/transfers/{to_b}",
            f"/v1/inventory/reservations/{held_b}",
            f"/v1/inventory/purchase-orders/{po_b}",
            f"/v1/inventory/purchase-orders?location_id={world.store_b}",
        ]:
            assert_problem(client.get(path, headers=staff), 403, "location-forbidden")

    # Roles not tied to stores read everything.
    for headers in (owner_headers, make_staff(Role.ANALYST)):
        levels = _get(client, "/v1/inventory/levels", headers)["items"]
        assert {x["location_id"] for x in levels} == set(world.locations)
        _get(client, f"/v1/inventory/transfers/{to_b}", headers)
        _get(client, f"/v1/inventory/reservations/{held_b}", headers)
        _get(client, f"/v1/inventory/purchase-orders/{po_b}", headers)
        listed = _get(client, "/v1/inventory/purchase-orders", headers)["items"]
        assert [p["id"] for p in listed] == [po_b, po_a]
        at_b = _get(client, f"/v1/inventory/purchase-orders?location_id={world.store_b}", headers)
        assert [p["id"] for p in at_b["items"]] == [po_b]
        moves = _get(client, f"/v1/inventory/movements?location_id={world.store_b}", headers)
        assert moves["items"]
