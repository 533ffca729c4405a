"""Before an erasure the privacy officer sees, per domain, what it would erase and what it
keeps (accounting records such as the loyalty ledger), and what blocks it; the preview
changes nothing and logs no request."""

from __future__ import annotations

import uuid

from tests.commerce.conftest import DemoWorld
from tests.commerce.helpers import ok, register
from tests.conftest import assert_problem
from tests.returns.conftest import place, staff_login


def test_the_preview_lists_what_is_erased_kept_and_blocking(demo_world: DemoWorld) -> None:
    client, owner = demo_world.client, staff_login(demo_world)
    shopper = register(client, demo_world.key("web-jp"), f"pv-{uuid.uuid4().hex[:8]}@example.com")
    me = ok(client.get("/v1/store/customers/me", headers={**demo_world.key("web-jp"), **shopper}))
    customer_id = me["id"]
    ok(
        client.post(
            f"/v1/loyalty/accounts/{customer_id}/adjustments",
            headers={**owner, "Idempotency-Key": uuid.uuid4().hex},
            json={"points": 20, "reason": "goodwill"},
        ),
        201,
    )
    preview = ok(client.get(f"/v1/customers/{customer_id}/privacy/erasure-preview", headers=owner))
    shares = {d["domain"]: d for d in preview["domains"]}
    assert shares["customers"]["erases"] is True and shares["customers"]["records"] >= 1
    assert shares["loyalty"]["erases"] is False and shares["loyalty"]["records"] >= 1
    assert preview["blocking"] == [] and preview["already_erased"] is False

    item = demo_world.new_product({"WH-TYO": 3}, {"JP": {"JPY": "3000"}})
    order = place(demo_world, [(item, 1)], customer=shopper)
    blocked = ok(client.get(f"/v1/customers/{customer_id}/privacy/erasure-preview", headers=owner))
    assert [b["number"] for b in blocked["blocking"]] == [order.number]
    logged = ok(client.get(f"/v1/privacy/requests?customer_id={customer_id}", headers=owner))
    assert logged["items"] == []

    analyst = staff_login(demo_world, "analyst")
    assert_problem(
        client.get(f"/v1/customers/{customer_id}/privacy/erasure-preview", headers=analyst), 403
    )
