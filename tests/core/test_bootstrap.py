"""Every entry point gets the same registrations: the server and each ``mercato`` command
(``mercato.bootstrap``). A command runs in a process where no application was built."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from mercato import bootstrap
from mercato.auth.principal import Principal
from mercato.db import Database, utcnow
from mercato.events import Dispatcher
from mercato.loyalty import service as loyalty
from mercato.orders.models import Order
from mercato.payments import providers
from mercato.payments.models import Payment
from tests.commerce.helpers import TOKYO, add, card_token, new_cart, ok, register, ship_to
from tests.demo_world import DemoWorld

SYSTEM = Principal.system("tests")


def mercato_command(*args: str) -> subprocess.CompletedProcess[str]:
    """``mercato ARGS`` in a new Python process, with the suite's environment."""
    return subprocess.run(
        [sys.executable, "-m", "mercato", *args],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _shopper_with_points(world: DemoWorld, points: int) -> tuple[dict[str, str], int]:
    key = world.key("web-jp")
    me = {**key, **register(world.client, key, f"points-{uuid.uuid4().hex[:8]}@example.com")}
    customer_id = int(ok(world.client.get("/v1/store/customers/me", headers=me))["id"])
    with world.database.transaction() as session:
        loyalty.earn(session, SYSTEM, customer_id, points, reference_type="test", reference_id="T")
    return me, customer_id


def _points_and_3ds_checkout(world: DemoWorld, me: dict[str, str], item: int) -> dict[str, Any]:
    """A checkout paying 100 points (taken at once) and the rest by a card still waiting
    for 3-D Secure: the order waits for its payment, the points are spent meanwhile."""
    client = world.client
    token = new_cart(client, me)["token"]
    add(client, me, token, item, 1)
    cart = ship_to(client, me, token, TOKYO)
    rest = str(int(cart["grand_total"]["amount"]) - 100)
    tenders = [
        {"method": "loyalty_points", "amount": "100"},
        {"method": "test_gateway", "amount": rest, "token": card_token(client, me, "3ds")},
    ]
    return ok(
        client.post(
            f"/v1/store/carts/{token}/checkout",
            headers={**me, "Idempotency-Key": str(uuid.uuid4())},
            json={"payments": tenders},
        ),
        202,
    )


def _balance(database: Database, customer_id: int) -> int:
    with database.read() as session:
        return loyalty.balance_of(session, customer_id)


def _payments(database: Database, number: str) -> dict[str, str]:
    with database.read() as session:
        rows = session.execute(
            select(Payment.method, Payment.status).where(Payment.reference == number)
        )
        return {method: status for method, status in rows}


@pytest.mark.slow
def test_abandon_stale_voids_a_points_payment_in_a_process_of_its_own(
    demo_world: DemoWorld,
) -> None:
    item = demo_world.new_product({"WH-TYO": 2}, {"JP": {"JPY": "3000"}})
    me, customer_id = _shopper_with_points(demo_world, 500)
    pending = _points_and_3ds_checkout(demo_world, me, item)
    number = pending["number"]
    assert _balance(demo_world.database, customer_id) == 400
    assert _payments(demo_world.database, number)["loyalty_points"] == "captured"
    with demo_world.database.transaction() as session:
        session.execute(
            update(Order)
            .where(Order.number == number)
            .values(created_at=utcnow() - timedelta(minutes=20))
        )

    url = demo_world.database.engine.url.render_as_string(hide_password=False)
    done = mercato_command(
        "checkout", "abandon-stale", "--database-url", url, "--older-than", "900"
    )

    assert done.returncode == 0, done.stderr
    assert number in json.loads(done.stdout)["orders"]
    assert "no payment provider" not in done.stderr, done.stderr
    # Points are taken when authorised, so giving them back is a refund.
    assert _payments(demo_world.database, number)["loyalty_points"] in ("voided", "refunded")
    assert _balance(demo_world.database, customer_id) == 500


def test_bootstrap_twice_wires_a_dispatcher_once(db: Database) -> None:
    dispatcher = bootstrap.bootstrap(db)
    handlers = len(dispatcher.handlers_for("order.placed"))
    jobs = len(dispatcher._periodic)
    assert handlers > 0 and jobs > 0
    assert bootstrap.wire(dispatcher) is dispatcher
    bootstrap.bootstrap(db)  # a second dispatcher: the first keeps what it had
    assert len(dispatcher.handlers_for("order.placed")) == handlers
    assert len(dispatcher._periodic) == jobs
    assert "loyalty_points" in providers.provider_names()


def test_subscribing_loyalty_registers_no_payment_provider(
    db: Database, monkeypatch: Any
) -> None:
    monkeypatch.delitem(providers.PROVIDERS, "loyalty_points")
    bootstrap.wire(Dispatcher(db))
    assert "loyalty_points" not in providers.provider_names()
