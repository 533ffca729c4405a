"""What a failed payment gives back, and that no transaction is open while the payment
provider is being asked."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection

from mercato.inventory import service as inventory
from mercato.payments import providers
from mercato.payments.providers import AuthorizeRequest, ProviderResult, SimulatedGateway
from tests.commerce.conftest import DemoWorld
from tests.commerce.helpers import TOKYO, add, card_token, new_cart, ok, ship_to
from tests.commerce.test_checkout_abandoned import _balance, _gift_card, _one_use_code
from tests.conftest import assert_problem

pytestmark = pytest.mark.slow


def _available(world: DemoWorld, variant_id: int) -> int:
    with world.database.read() as session:
        return inventory.availability(session, [variant_id], [world.location_id("WH-TYO")])[
            variant_id
        ]


def _coded_cart(world: DemoWorld, item: int, code: str) -> tuple[str, Decimal]:
    client, key = world.client, world.key("web-jp")
    token = new_cart(client, key)["token"]
    add(client, key, token, item, 1)
    ship_to(client, key, token, TOKYO)
    cart = ok(client.post(f"/v1/store/carts/{token}/codes", headers=key, json={"code": code}))
    assert cart["promotions"][0]["code"] == code
    return str(token), Decimal(cart["grand_total"]["amount"])


def _split(world: DemoWorld, gift: str, total: Decimal, card: str) -> list[dict[str, Any]]:
    return [
        {"method": "gift_card", "amount": "700", "gift_card_code": gift},
        {
            "method": "test_gateway",
            "amount": str(total - 700),
            "token": card_token(world.client, world.key("web-jp"), card),
        },
    ]


def _checkout(world: DemoWorld, token: str, payments: list[dict[str, Any]]) -> Any:
    return world.client.post(
        f"/v1/store/carts/{token}/checkout",
        headers={**world.key("web-jp"), "Idempotency-Key": str(uuid.uuid4())},
        json={"payments": payments},
    )


def test_a_decline_gives_back_the_one_use_code_the_gift_card_and_the_stock(
    demo_world: DemoWorld,
) -> None:
    item = demo_world.new_product({"WH-TYO": 1}, {"JP": {"JPY": "6000"}})
    code = _one_use_code(demo_world)
    gift = _gift_card(demo_world, "700")
    token, total = _coded_cart(demo_world, item, code)

    declined = _checkout(demo_world, token, _split(demo_world, gift, total, "no-funds"))
    assert_problem(declined, 402, "payment-declined")
    assert _available(demo_world, item) == 1
    assert _balance(demo_world, gift) == 700
    # The code is free again: another shopper can apply it and pay with it.
    other_item = demo_world.new_product({"WH-TYO": 1}, {"JP": {"JPY": "6000"}})
    other, other_total = _coded_cart(demo_world, other_item, code)
    tender = {
        "method": "test_gateway",
        "amount": str(other_total),
        "token": card_token(demo_world.client, demo_world.key("web-jp")),
    }
    placed = ok(_checkout(demo_world, other, [tender]), 201)
    assert placed["promotions"][0]["code"] == code
    # Used once now: the first cart cannot have it any more.
    retry = ok(demo_world.client.get(f"/v1/store/carts/{token}", headers=demo_world.key("web-jp")))
    assert retry["codes"] == [{"code": code, "applied": False, "reason": "usage-limit-reached"}], (
        retry["codes"]
    )


class _Probe(SimulatedGateway):
    """The test gateway, looking at the database from its own connection while asked."""

    seen: list[dict[str, Any]] = []

    def authorize(self, request: AuthorizeRequest) -> ProviderResult:
        url = self.database.engine.url
        sqlite = url.get_backend_name() == "sqlite"
        # timeout 0: a write that would have to wait for a lock fails at once instead.
        other = create_engine(url, connect_args={"timeout": 0} if sqlite else {})
        try:
            with other.connect() as conn:
                _Probe.seen.append(_look(conn, request.reference, sqlite))
                conn.rollback()
        finally:
            other.dispose()
        return super().authorize(request)


def _look(conn: Connection, number: str, sqlite: bool) -> dict[str, Any]:
    found: dict[str, Any] = {
        "order": conn.execute(
            text("SELECT status FROM orders WHERE number = :n"), {"n": number}
        ).scalar(),
        "holds": conn.execute(
            text(
                "SELECT count(*) FROM stock_reservations WHERE reference_type = 'order'"
                " AND reference_id = :n AND status = 'held'"
            ),
            {"n": number},
        ).scalar(),
        "payments": sorted(
            conn.execute(text("SELECT status FROM payments WHERE reference = :n"), {"n": number})
            .scalars()
            .all()
        ),
    }
    lock = "" if sqlite else " NOWAIT"
    try:
        if not sqlite:
            for table, where in (
                ("orders", "number = :n"),
                ("payments", "reference = :n"),
                ("stock_reservations", "reference_id = :n"),
                (
                    "stock_levels",
                    "variant_id IN (SELECT variant_id FROM stock_reservations"
                    " WHERE reference_id = :n)",
                ),
            ):
                conn.execute(
                    text(f"SELECT 1 FROM {table} WHERE {where} FOR UPDATE{lock}"), {"n": number}
                )
            found["idle_in_transaction"] = conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()"
                )
            ).scalar()
        # A write from another connection goes through at once: nothing holds a lock.
        conn.execute(
            text(
                "UPDATE carts SET version = version"
                " WHERE id = (SELECT cart_id FROM orders WHERE number = :n)"
            ),
            {"n": number},
        )
        found["write"] = "ok"
    except Exception as exc:  # recorded, asserted by the test
        found["write"] = repr(exc)
    return found


def test_no_transaction_is_open_while_the_provider_is_asked(
    demo_world: DemoWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    item = demo_world.new_product({"WH-TYO": 2}, {"JP": {"JPY": "3300"}})
    gift = _gift_card(demo_world, "700")
    client, key = demo_world.client, demo_world.key("web-jp")
    token = new_cart(client, key)["token"]
    add(client, key, token, item, 1)
    total = Decimal(ship_to(client, key, token, TOKYO)["grand_total"]["amount"])
    payments = _split(demo_world, gift, total, "ok")
    monkeypatch.setitem(providers.PROVIDERS, "test_gateway", providers.ProviderSpec(_Probe))
    monkeypatch.setattr(_Probe, "seen", [])
    placed = ok(_checkout(demo_world, token, payments), 201)
    expected: dict[str, Any] = {
        "order": "pending_payment",
        "holds": 1,
        "payments": ["captured", "pending"],  # the gift card is spent in step 1
        "write": "ok",
    }
    if demo_world.database.dialect == "postgresql":
        expected["idle_in_transaction"] = 0
    assert _Probe.seen == [expected]
    assert placed["status"] == "confirmed"


def test_a_failure_cut_off_before_its_voids_is_finished_by_the_sweep(
    demo_world: DemoWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process commits the decline, then stops before giving the gift card back."""
    from mercato.db import utcnow
    from mercato.flows import checkout
    from mercato.payments import service as payments

    item = demo_world.new_product({"WH-TYO": 1}, {"JP": {"JPY": "6000"}})
    gift = _gift_card(demo_world, "700")
    token = new_cart(demo_world.client, demo_world.key("web-jp"))["token"]
    add(demo_world.client, demo_world.key("web-jp"), token, item, 1)
    total = Decimal(
        ship_to(demo_world.client, demo_world.key("web-jp"), token, TOKYO)["grand_total"]["amount"]
    )

    def stopped(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the process stopped here")

    monkeypatch.setattr(checkout.payments, "void_payments", stopped)
    with pytest.raises(RuntimeError, match="stopped here"):
        _checkout(demo_world, token, _split(demo_world, gift, total, "no-funds"))
    monkeypatch.undo()
    assert _balance(demo_world, gift) == 0  # spent, and nobody gave it back
    assert _available(demo_world, item) == 1  # holds went with the failure's transaction

    # Within the grace period the sweep leaves it to the failing process.
    checkout.finish_compensations(demo_world.database)
    assert _balance(demo_world, gift) == 0
    later = utcnow() + checkout.COMPENSATION_GRACE + timedelta(seconds=1)
    voided = checkout.finish_compensations(demo_world.database, now=later)
    assert _balance(demo_world, gift) == 700
    with demo_world.database.read() as session:
        statuses = {payments.get_payment(session, pid).status for pid in voided}
    assert statuses <= {"voided", "refunded"}
    # A second sweep finds nothing left to give back.
    assert not set(voided) & set(checkout.finish_compensations(demo_world.database, now=later))
