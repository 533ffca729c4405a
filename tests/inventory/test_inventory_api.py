"""Inventory through the HTTP API: permissions, bad input, idempotency, shopper views."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from mercato.auth.permissions import Role
from mercato.db import Database
from tests.conftest import assert_problem
from tests.inventory.conftest import World, assert_ledger_consistent, level

pytestmark = pytest.mark.slow

Stock = Callable[[int, int, int], None]
Headers = dict[str, str]


def receipt(world: World, variant: int, quantity: int, location: int | None = None) -> dict:
    return {
        "location_id": location or world.warehouse,
        "lines": [{"variant_id": variant, "quantity": quantity, "reason": "receipt"}],
    }


def test_adjustment_and_levels(client: TestClient, owner_headers: Headers, world: World) -> None:
    v = world.variants[0]
    response = client.post(
        "/v1/inventory/adjustments", json=receipt(world, v, 12), headers=owner_headers
    )
    assert response.status_code == 201, response.text
    assert response.json()[0]["on_hand"] == 12
    got = client.get(f"/v1/inventory/levels/{v}/{world.warehouse}", headers=owner_headers).json()
    assert got["available"] == 12
    patched = client.patch(
        f"/v1/inventory/levels/{v}/{world.warehouse}",
        json={"safety_stock": 2, "low_stock_threshold": 5},
        headers=owner_headers,
    ).json()
    assert patched["available"] == 10 and patched["low_stock_threshold"] == 5
    moves = client.get(f"/v1/inventory/movements?variant_id={v}", headers=owner_headers).json()
    assert [m["reason"] for m in moves["items"]] == ["receipt"]
    assert moves["items"][0]["actor_type"] == "staff"


def test_adjustment_idempotency_key(
    client: TestClient, owner_headers: Headers, world: World, db: Database
) -> None:
    v = world.variants[0]
    headers = {**owner_headers, "Idempotency-Key": "receipt-42"}
    first = client.post("/v1/inventory/adjustments", json=receipt(world, v, 5), headers=headers)
    again = client.post("/v1/inventory/adjustments", json=receipt(world, v, 5), headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert level(db, v, world.warehouse).on_hand == 5
    other = client.post("/v1/inventory/adjustments", json=receipt(world, v, 6), headers=headers)
    assert_problem(other, 422, "idempotency-key-reused")
    assert level(db, v, world.warehouse).on_hand == 5


def test_bad_input_changes_nothing(
    client: TestClient, owner_headers: Headers, world: World, db: Database, stock: Stock
) -> None:
    v = world.variants[0]
    stock(v, world.warehouse, 3)
    cases = [
        (
            {
                "location_id": world.warehouse,
                "lines": [{"variant_id": v, "quantity": 0, "reason": "receipt"}],
            },
            422,
            "body.lines[0].quantity",
        ),
        (
            {
                "location_id": world.warehouse,
                "lines": [{"variant_id": v, "quantity": -1, "reason": "receipt"}],
            },
            422,
            "body.lines[0].quantity",
        ),
        (
            {
                "location_id": world.warehouse,
                "lines": [{"variant_id": 99999, "quantity": 1, "reason": "receipt"}],
            },
            422,
            "body.lines[0].variant_id",
        ),
        (
            {
                "location_id": 99999,
                "lines": [{"variant_id": v, "quantity": 1, "reason": "receipt"}],
            },
            422,
            "body.location_id",
        ),
        (
            {
                "location_id": world.warehouse,
                "lines": [{"variant_id": v, "quantity": 1, "reason": "reservation"}],
            },
            422,
            "body.lines[0].reason",
        ),
        (
            {
                "location_id": world.warehouse,
                "lines": [{"variant_id": v, "quantity": 1, "reason": "receipt"}],
                "colour": "red",
            },
            422,
            "body.colour",
        ),
    ]
    for body, status, field in cases:
        problem = assert_problem(
            client.post("/v1/inventory/adjustments", json=body, headers=owner_headers), status
        )
        assert field in [e["field"] for e in problem["errors"]], problem
    assert_problem(
        client.post(
            "/v1/inventory/adjustments",
            headers=owner_headers,
            json={
                "location_id": world.warehouse,
                "lines": [{"variant_id": v, "quantity": -4, "reason": "damage"}],
            },
        ),
        409,
        "insufficient-stock",
    )
    assert level(db, v, world.warehouse).on_hand == 3
    moves = client.get("/v1/inventory/movements", headers=owner_headers).json()["items"]
    assert len(moves) == 1


def test_reservation_lifecycle_over_http(
    client: TestClient, owner_headers: Headers, world: World, db: Database, stock: Stock
) -> None:
    v = world.variants[0]
    stock(v, world.store_a, 4)
    body = {
        "lines": [{"variant_id": v, "quantity": 3}],
        "channel_id": world.channel_id,
        "reference_type": "cart",
        "reference_id": "cart-1",
    }
    created = client.post(
        "/v1/inventory/reservations", json=body, headers={**owner_headers, "Idempotency-Key": "k1"}
    )
    assert created.status_code == 201, created.text
    (reservation,) = created.json()["reservations"]
    assert reservation["location_id"] == world.store_a and reservation["status"] == "held"
    retried = client.post(
        "/v1/inventory/reservations", json=body, headers={**owner_headers, "Idempotency-Key": "k1"}
    )
    assert retried.json() == created.json()
    assert level(db, v, world.store_a).reserved == 3
    too_many = client.post(
        "/v1/inventory/reservations",
        headers=owner_headers,
        json={**body, "lines": [{"variant_id": v, "quantity": 2}]},
    )
    problem = assert_problem(too_many, 409, "insufficient-stock")
    assert problem["available"] == 1
    rid = reservation["id"]
    allocated = client.post(
        f"/v1/inventory/reservations/{rid}/allocate",
        headers=owner_headers,
        json={"reference_type": "order", "reference_id": "o-1"},
    ).json()
    assert allocated["status"] == "allocated" and allocated["expires_at"] is None
    fulfilled = client.post(
        f"/v1/inventory/reservations/{rid}/fulfil", json={}, headers=owner_headers
    )
    assert fulfilled.json()["status"] == "fulfilled"
    snap = level(db, v, world.store_a)
    assert (snap.on_hand, snap.reserved) == (1, 0)
    assert_problem(
        client.post(f"/v1/inventory/reservations/{rid}/fulfil", json={}, headers=owner_headers), 409
    )
    assert_ledger_consistent(db)


def test_store_associate_scope(
    client: TestClient,
    make_staff: Callable[..., Headers],
    world: World,
    db: Database,
    stock: Stock,
) -> None:
    associate = make_staff(Role.STORE_ASSOCIATE, [world.store_a])
    v = world.variants[0]
    ok = client.post(
        "/v1/inventory/adjustments", json=receipt(world, v, 2, world.store_a), headers=associate
    )
    assert ok.status_code == 201
    denied = client.post(
        "/v1/inventory/adjustments", json=receipt(world, v, 2, world.store_b), headers=associate
    )
    assert_problem(denied, 403, "location-forbidden")
    count = client.post(
        "/v1/inventory/counts",
        headers=associate,
        json={"location_id": world.store_b, "lines": [{"variant_id": v, "counted": 1}]},
    )
    assert_problem(count, 403, "location-forbidden")
    stock(v, world.warehouse, 5)
    transfer = client.post(
        "/v1/inventory/transfers",
        headers=associate,
        json={
            "from_location_id": world.warehouse,
            "to_location_id": world.store_a,
            "ship": True,
            "lines": [{"variant_id": v, "quantity": 1}],
        },
    )
    assert_problem(transfer, 403, "location-forbidden")
    assert level(db, v, world.store_b).on_hand == 0
    analyst = make_staff(Role.ANALYST)
    assert client.get("/v1/inventory/levels", headers=analyst).status_code == 200
    assert_problem(
        client.post("/v1/inventory/adjustments", json=receipt(world, v, 1), headers=analyst),
        403,
        "forbidden",
    )


def test_transfer_count_and_purchase_order_over_http(
    client: TestClient, owner_headers: Headers, world: World, db: Database, stock: Stock
) -> None:
    v = world.variants[0]
    stock(v, world.warehouse, 10)
    transfer = client.post(
        "/v1/inventory/transfers",
        headers=owner_headers,
        json={
            "from_location_id": world.warehouse,
            "to_location_id": world.store_a,
            "lines": [{"variant_id": v, "quantity": 4}],
        },
    ).json()
    assert transfer["status"] == "draft"
    assert_problem(
        client.post(
            f"/v1/inventory/transfers/{transfer['id']}/receive", json={}, headers=owner_headers
        ),
        409,
    )
    shipped = client.post(
        f"/v1/inventory/transfers/{transfer['id']}/ship", headers=owner_headers
    ).json()
    assert shipped["status"] == "shipped"
    received = client.post(
        f"/v1/inventory/transfers/{transfer['id']}/receive",
        json={"lines": [{"variant_id": v, "quantity": 3}]},
        headers=owner_headers,
    ).json()
    assert received["discrepancies"] == [
        {"variant_id": v, "shipped": 4, "received": 3, "missing": 1}
    ]
    count = client.post(
        "/v1/inventory/counts",
        headers=owner_headers,
        json={"location_id": world.store_a, "lines": [{"variant_id": v, "counted": 2}]},
    ).json()
    assert count["lines"] == [{"variant_id": v, "expected": 3, "counted": 2, "difference": -1}]
    po = client.post(
        "/v1/inventory/purchase-orders",
        headers=owner_headers,
        json={
            "reference": "PO-7",
            "supplier": "Da Lat roastery",
            "location_id": world.warehouse,
            "lines": [{"variant_id": v, "quantity": 20}],
        },
    ).json()
    assert level(db, v, world.warehouse).incoming == 20
    receipt_ = client.post(
        f"/v1/inventory/purchase-orders/{po['id']}/receipts",
        headers=owner_headers,
        json={"lines": [{"variant_id": v, "quantity": 20}]},
    ).json()
    assert receipt_["status"] == "received"
    assert level(db, v, world.warehouse).on_hand == 26
    assert client.get("/v1/inventory/verify", headers=owner_headers).json()["ok"] is True


def test_shopper_availability_and_nearest_stores(
    client: TestClient, world: World, stock: Stock
) -> None:
    v, w = world.variants[:2]
    stock(v, world.store_a, 2)
    stock(v, world.store_b, 5)
    headers = {"X-Channel-Key": world.channel_key}
    got = client.get(f"/v1/store/availability?variant_ids={v},{w}", headers=headers).json()
    assert {x["variant_id"]: x["available"] for x in got["variants"]} == {v: 7, w: 0}
    # A shopper in Potsdam: Berlin first, then Munich.
    near = client.get(
        f"/v1/store/availability?variant_ids={v}&latitude=52.39&longitude=13.06", headers=headers
    ).json()
    assert [x["location_id"] for x in near["locations"]] == [world.store_a, world.store_b]
    assert near["locations"][0]["distance_km"] < 30 < near["locations"][1]["distance_km"]
    within = client.get(
        f"/v1/store/availability?variant_ids={v}&latitude=52.39&longitude=13.06&radius_km=100",
        headers=headers,
    ).json()
    assert [x["location_id"] for x in within["locations"]] == [world.store_a]
    assert_problem(client.get("/v1/store/availability?variant_ids=x", headers=headers), 422)
    assert_problem(
        client.get(f"/v1/store/availability?variant_ids={v}&latitude=1", headers=headers), 422
    )
    assert_problem(client.get(f"/v1/store/availability?variant_ids={v}"), 401)


def test_adjustment_records_its_channel(
    client: TestClient, owner_headers: Headers, world: World, db: Database
) -> None:
    v = world.variants[0]
    pos_sale = {
        "location_id": world.store_a,
        "channel_id": world.channel_id,
        "lines": [{"variant_id": v, "quantity": 2, "reason": "receipt"}],
    }
    response = client.post("/v1/inventory/adjustments", json=pos_sale, headers=owner_headers)
    assert response.status_code == 201, response.text
    plain = receipt(world, v, 1, world.store_a)
    assert client.post("/v1/inventory/adjustments", json=plain, headers=owner_headers).is_success
    moves = client.get(
        f"/v1/inventory/movements?location_id={world.store_a}", headers=owner_headers
    ).json()["items"]
    assert [m["channel_id"] for m in moves] == [None, world.channel_id]
    unknown = client.post(
        "/v1/inventory/adjustments", json={**pos_sale, "channel_id": 999999}, headers=owner_headers
    )
    problem = assert_problem(unknown, 422, "validation-error")
    assert [e["field"] for e in problem["errors"]] == ["body.channel_id"]
    assert level(db, v, world.store_a).on_hand == 3
