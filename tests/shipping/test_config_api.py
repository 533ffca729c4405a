"""The staff API for carriers, services, zones and rate tables: CRUD, audit, 422s, permissions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mercato.auth.models import AuditEntry
from mercato.auth.permissions import LOCATION_SCOPED_ROLES, ROLE_PERMISSIONS, Permission, Role
from mercato.db import Database
from mercato.shipping.models import (
    CarrierCountry,
    RateBracket,
    RateTable,
    ShippingCarrier,
    ShippingService,
    ShippingZone,
    ZoneMember,
)
from tests.conftest import assert_problem
from tests.helpers import audit_entries, count, created, make_location, ok

pytestmark = pytest.mark.slow

Headers = dict[str, str]
CARRIER = {
    "code": "post-jp",
    "name": "Post JP",
    "tracking_prefix": "pj",
    "timezone": "Asia/Tokyo",
    "ships_from": ["JP"],
    "ships_to": ["jp", "SG"],
    "webhook_secret": "x" * 20,
}
SHIPPING_TABLES = (
    ShippingCarrier,
    CarrierCountry,
    ShippingService,
    ShippingZone,
    ZoneMember,
    RateTable,
    RateBracket,
    AuditEntry,
)


def snapshot(db: Database) -> dict[str, int]:
    return {model.__tablename__: count(db, model) for model in SHIPPING_TABLES}


@pytest.fixture
def setup(client: TestClient, owner_headers: Headers) -> dict[str, Any]:
    carrier = created(client.post("/v1/shipping/carriers", json=CARRIER, headers=owner_headers))
    service = created(
        client.post(
            f"/v1/shipping/carriers/{carrier['id']}/services",
            headers=owner_headers,
            json={
                "code": "standard",
                "name": "Standard",
                "level": "standard",
                "min_days": 1,
                "max_days": 2,
            },
        )
    )
    zone = created(
        client.post(
            "/v1/shipping/zones",
            headers=owner_headers,
            json={"code": "jp", "name": "Japan", "members": [{"country": "JP"}]},
        )
    )
    table = created(
        client.post(
            "/v1/shipping/rate-tables",
            headers=owner_headers,
            json={
                "service_id": service["id"],
                "zone_id": zone["id"],
                "origin_country": "JP",
                "currency": "JPY",
                "brackets": [{"up_to_g": 2000, "price": "800"}, {"up_to_g": 5000, "price": 1100}],
                "per_extra_kg": "120",
                "free_over": "5000",
            },
        )
    )
    return {"carrier": carrier, "service": service, "zone": zone, "table": table}


def test_crud_and_audit(
    client: TestClient, owner_headers: Headers, setup: dict[str, Any], db: Database
) -> None:
    carrier, table = setup["carrier"], setup["table"]
    assert carrier["tracking_prefix"] == "PJ" and carrier["ships_to"] == ["JP", "SG"]
    assert carrier["has_webhook_secret"] is True and "webhook_secret" not in carrier
    assert carrier["services"] == []
    assert table["brackets"] == [
        {"up_to_g": 2000, "price": "800"},
        {"up_to_g": 5000, "price": "1100"},
    ]
    assert (table["carrier_code"], table["service_code"], table["zone_code"]) == (
        "post-jp",
        "standard",
        "jp",
    )
    assert table["free_over"] == "5000" and table["origin_country"] == "JP"
    fetched = ok(client.get(f"/v1/shipping/carriers/{carrier['id']}", headers=owner_headers))
    assert [s["code"] for s in fetched["services"]] == ["standard"]
    patched = ok(
        client.patch(
            f"/v1/shipping/carriers/{carrier['id']}",
            headers=owner_headers,
            json={"webhook_secret": None, "ships_to": ["JP"], "active": False},
        )
    )
    assert patched["has_webhook_secret"] is False and patched["ships_to"] == ["JP"]
    assert patched["active"] is False
    service = ok(
        client.patch(
            f"/v1/shipping/services/{setup['service']['id']}",
            headers=owner_headers,
            json={"max_days": 4, "scope": "domestic"},
        )
    )
    assert (service["max_days"], service["scope"]) == (4, "domestic")
    zone = ok(
        client.patch(
            f"/v1/shipping/zones/{setup['zone']['id']}",
            headers=owner_headers,
            json={
                "members": [
                    {"country": "JP", "region": "JP-47"},
                    {"country": "JP", "postal_prefix": "900-"},
                ]
            },
        )
    )
    assert zone["members"] == [
        {"country": "JP", "region": "47", "postal_prefix": None},
        {"country": "JP", "region": None, "postal_prefix": "900"},
    ]
    replaced = ok(
        client.put(
            f"/v1/shipping/rate-tables/{table['id']}",
            headers=owner_headers,
            json={
                "service_id": setup["service"]["id"],
                "zone_id": setup["zone"]["id"],
                "currency": "JPY",
                "brackets": [{"up_to_g": 1000, "price": "700"}],
            },
        )
    )
    assert replaced["origin_country"] is None and replaced["per_extra_kg"] is None
    assert [
        t["id"]
        for t in ok(
            client.get(
                f"/v1/shipping/rate-tables?service_id={setup['service']['id']}",
                headers=owner_headers,
            )
        )["items"]
    ] == [table["id"]]
    in_use = client.delete(f"/v1/shipping/zones/{setup['zone']['id']}", headers=owner_headers)
    assert_problem(in_use, 409, "zone-in-use")
    assert (
        client.delete(f"/v1/shipping/rate-tables/{table['id']}", headers=owner_headers).status_code
        == 204
    )
    assert (
        client.delete(
            f"/v1/shipping/zones/{setup['zone']['id']}", headers=owner_headers
        ).status_code
        == 204
    )
    assert count(db, RateBracket) == 0 and count(db, ZoneMember) == 0
    actions = [e.action for e in audit_entries(db) if e.action.startswith("shipping.")]
    assert actions == [
        "shipping.carrier_created",
        "shipping.service_created",
        "shipping.zone_created",
        "shipping.rate_table_created",
        "shipping.carrier_updated",
        "shipping.service_updated",
        "shipping.zone_updated",
        "shipping.rate_table_replaced",
        "shipping.rate_table_deleted",
        "shipping.zone_deleted",
    ]
    secret_change = audit_entries(db, "shipping.carrier_updated")[0].changes
    assert secret_change["webhook_secret"] == "removed"
    assert "x" * 20 not in str([e.changes for e in audit_entries(db)])


def _bracket_table(setup: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "service_id": setup["service"]["id"],
        "zone_id": setup["zone"]["id"],
        "currency": "JPY",
        "brackets": [{"up_to_g": 1000, "price": "500"}],
        **fields,
    }


BAD_REQUESTS: list[tuple[str, str, Callable[[dict[str, Any]], Any], str, int]] = [
    (
        "POST",
        "/v1/shipping/rate-tables",
        lambda s: _bracket_table(
            s, brackets=[{"up_to_g": 2000, "price": "800"}, {"up_to_g": 1000, "price": "700"}]
        ),
        "body.brackets[1].up_to_g",
        422,
    ),
    (
        "POST",
        "/v1/shipping/rate-tables",
        lambda s: _bracket_table(
            s, brackets=[{"up_to_g": 1000, "price": "800"}, {"up_to_g": 1000, "price": "900"}]
        ),
        "body.brackets[1].up_to_g",
        422,
    ),
    (
        "POST",
        "/v1/shipping/rate-tables",
        lambda s: _bracket_table(s, brackets=[{"up_to_g": 1000, "price": "800.5"}]),
        "body.brackets[0].price",
        422,
    ),
    (
        "POST",
        "/v1/shipping/rate-tables",
        lambda s: _bracket_table(s, currency="EUR", free_over="10.001"),
        "body.free_over",
        422,
    ),
    (
        "POST",
        "/v1/shipping/rate-tables",
        lambda s: _bracket_table(s, currency="ABC"),
        "body.currency",
        422,
    ),
    (
        "POST",
        "/v1/shipping/rate-tables",
        lambda s: _bracket_table(s, origin_country="XX"),
        "body.origin_country",
        422,
    ),
    (
        "POST",
        "/v1/shipping/rate-tables",
        lambda s: _bracket_table(s, brackets=[{"up_to_g": 1000, "price": "-1"}]),
        "body.brackets[0].price",
        422,
    ),
    (
        "POST",
        "/v1/shipping/rate-tables",
        lambda s: _bracket_table(s, brackets=[]),
        "body.brackets",
        422,
    ),
    (
        "POST",
        "/v1/shipping/rate-tables",
        lambda s: _bracket_table(s, remote_surcharge="300"),
        "body.remote_surcharge",
        422,
    ),
    (
        "POST",
        "/v1/shipping/rate-tables",
        lambda s: _bracket_table(s, service_id=999),
        "body.service_id",
        422,
    ),
    (
        "POST",
        "/v1/shipping/rate-tables",
        lambda s: _bracket_table(s, zone_id=999),
        "body.zone_id",
        422,
    ),
    (
        "POST",
        "/v1/shipping/rate-tables",
        lambda s: _bracket_table(s, origin_country="JP", brackets=[{"up_to_g": 1, "price": "1"}]),
        "",
        409,
    ),  # the same service, origin, zone and currency as the existing table
    (
        "POST",
        "/v1/shipping/carriers",
        lambda s: {**CARRIER, "code": "other", "tracking_prefix": "OT", "ships_to": ["JP", "XX"]},
        "body.ships_to[1]",
        422,
    ),
    (
        "POST",
        "/v1/shipping/carriers",
        lambda s: {**CARRIER, "code": "other", "tracking_prefix": "P1"},
        "body.tracking_prefix",
        422,
    ),
    (
        "POST",
        "/v1/shipping/carriers",
        lambda s: {**CARRIER, "code": "other", "tracking_prefix": "OT", "adapter": "acme"},
        "body.adapter",
        422,
    ),
    (
        "POST",
        "/v1/shipping/carriers",
        lambda s: {**CARRIER, "code": "other", "tracking_prefix": "OT", "timezone": "Mars/Base"},
        "body.timezone",
        422,
    ),
    (
        "POST",
        "/v1/shipping/carriers",
        lambda s: {**CARRIER, "code": "other", "tracking_prefix": "OT", "webhook_secret": "short"},
        "body.webhook_secret",
        422,
    ),
    ("POST", "/v1/shipping/carriers", lambda s: {**CARRIER, "tracking_prefix": "OT"}, "", 409),
    ("POST", "/v1/shipping/carriers", lambda s: {**CARRIER, "code": "other"}, "", 409),
    (
        "PATCH",
        "/v1/shipping/carriers/{carrier}",
        lambda s: {"ships_from": []},
        "body.ships_from",
        422,
    ),
    ("PATCH", "/v1/shipping/services/{service}", lambda s: {"min_days": 5}, "body.max_days", 422),
    (
        "POST",
        "/v1/shipping/carriers/{carrier}/services",
        lambda s: {"code": "fast", "name": "Fast", "level": "warp", "min_days": 1, "max_days": 1},
        "body.level",
        422,
    ),
    (
        "POST",
        "/v1/shipping/zones",
        lambda s: {"code": "z", "name": "Z", "members": [{"country": "US", "region": "ZZ"}]},
        "body.members[0].region",
        422,
    ),
    (
        "POST",
        "/v1/shipping/zones",
        lambda s: {"code": "z", "name": "Z", "members": [{"country": "US"}, {"country": "us"}]},
        "body.members[1]",
        422,
    ),
    (
        "POST",
        "/v1/shipping/zones",
        lambda s: {
            "code": "z",
            "name": "Z",
            "members": [{"country": "US", "region": "CA", "postal_prefix": "9"}],
        },
        "body.members[0]",
        422,
    ),
    (
        "POST",
        "/v1/shipping/zones",
        lambda s: {"code": "z", "name": "Z", "members": [{"country": "US", "postal_prefix": "9?"}]},
        "body.members[0].postal_prefix",
        422,
    ),
    (
        "POST",
        "/v1/shipping/zones",
        lambda s: {"code": "Bad Code", "name": "Z", "members": [{"country": "US"}]},
        "body.code",
        422,
    ),
    (
        "POST",
        "/v1/shipping/zones",
        lambda s: {"code": "jp", "name": "again", "members": [{"country": "JP"}]},
        "",
        409,
    ),
    (
        "PATCH",
        "/v1/shipping/zones/{zone}",
        lambda s: {"members": [], "colour": "red"},
        "body.colour",
        422,
    ),
]


def test_bad_input_is_a_problem_naming_the_field_and_changes_nothing(
    client: TestClient, owner_headers: Headers, setup: dict[str, Any], db: Database
) -> None:
    before = snapshot(db)
    ids = {
        "carrier": setup["carrier"]["id"],
        "service": setup["service"]["id"],
        "zone": setup["zone"]["id"],
    }
    for method, path, body, field, status in BAD_REQUESTS:
        response = client.request(
            method, path.format(**ids), json=body(setup), headers=owner_headers
        )
        problem = assert_problem(response, status)
        if field:
            assert field in [e["field"] for e in problem["errors"]], (path, problem)
    assert snapshot(db) == before
    assert_problem(client.get("/v1/shipping/carriers/999", headers=owner_headers), 404)
    assert_problem(client.get("/v1/shipping/rate-tables?colour=red", headers=owner_headers), 422)


def test_quote_endpoint(client: TestClient, owner_headers: Headers, setup: dict[str, Any]) -> None:
    body = {
        "origin_country": "JP",
        "destination": {"country": "JP", "postal_code": "100-0001"},
        "total_weight_g": 6500,
        "order_value": "4999",
        "currency": "JPY",
        "at": "2026-03-06T09:00:00+09:00",
    }
    (option,) = ok(client.post("/v1/shipping/quotes", json=body, headers=owner_headers))["options"]
    assert option["amount"] == "1340" and option["currency"] == "JPY"  # 1100 + 2 x 120
    assert option["earliest_delivery"] == "2026-03-09" and option["latest_delivery"] == "2026-03-10"
    assert (
        ok(
            client.post(
                "/v1/shipping/quotes",
                headers=owner_headers,
                json={**body, "destination": {"country": "SG"}},
            )
        )["options"]
        == []
    )
    bad = client.post(
        "/v1/shipping/quotes", headers=owner_headers, json={**body, "order_value": "10.5"}
    )
    assert assert_problem(bad, 422)["errors"][0]["field"] == "body.order_value"
    both = client.post("/v1/shipping/quotes", headers=owner_headers, json={**body, "parcels": [1]})
    assert assert_problem(both, 422)["errors"][0]["field"] == "body.parcels"


def test_permissions(
    client: TestClient,
    owner_headers: Headers,
    make_staff: Callable[..., Headers],
    setup: dict[str, Any],
) -> None:
    home = make_location(client, owner_headers, "HOME")["id"]
    assert_problem(client.get("/v1/shipping/carriers"), 401, "missing-token")
    for role in Role:
        headers = make_staff(role, [home] if role in LOCATION_SCOPED_ROLES else None)
        granted = ROLE_PERMISSIONS[role]
        read = client.get("/v1/shipping/zones", headers=headers)
        if Permission.SHIPPING_READ in granted:
            assert read.status_code == 200, (role, read.text)
        else:
            assert assert_problem(read, 403)["permission"] == "shipping:read"
        write = client.post(
            "/v1/shipping/zones",
            headers=headers,
            json={
                "code": f"z-{role.value.replace('_', '-')}",
                "name": "Z",
                "members": [{"country": "FR"}],
            },
        )
        if Permission.SHIPPING_WRITE in granted:
            assert write.status_code == 201, (role, write.text)
        else:
            problem = assert_problem(write, 403, "forbidden")
            assert problem["permission"] == "shipping:write"
            assert "shipping:write" in problem["detail"]
    zones = ok(client.get("/v1/shipping/zones", headers=owner_headers))["items"]
    written = {z["code"] for z in zones}
    assert "z-analyst" not in written and "z-support-agent" not in written
