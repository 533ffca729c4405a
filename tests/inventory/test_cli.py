"""``mercato inventory verify`` and ``expire-holds`` against a real database."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import update
from typer.testing import CliRunner

from mercato.auth.principal import Principal
from mercato.cli import app
from mercato.db import Database, utcnow
from mercato.inventory import service as inventory
from mercato.inventory.models import Reservation, StockLevel
from tests.inventory.conftest import World, level

Stock = Callable[[int, int, int], None]


def _invoke(db: Database, *args: str) -> tuple[int, dict[str, object]]:
    result = CliRunner().invoke(app, ["inventory", *args, "--database-url", db.url])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, json.loads(result.stdout)


def test_verify_passes_then_catches_a_tampered_row(
    db: Database, world: World, stock: Stock
) -> None:
    v, w = world.variants[:2]
    stock(v, world.warehouse, 10)
    stock(w, world.store_a, 4)
    code, report = _invoke(db, "verify")
    assert (code, report) == (0, {"rows": 2, "ok": True, "mismatches": []})

    # Stock changed behind the ledger's back, as a hand-written UPDATE would.
    with db.transaction() as session:
        session.execute(
            update(StockLevel)
            .where(StockLevel.variant_id == w, StockLevel.location_id == world.store_a)
            .values(on_hand=StockLevel.on_hand + 3)
        )
    code, report = _invoke(db, "verify")
    assert code == 1 and report["ok"] is False
    assert report["mismatches"] == [
        {
            "variant_id": w,
            "location_id": world.store_a,
            "on_hand": 7,
            "ledger_on_hand": 4,
            "reserved": 0,
            "ledger_reserved": 0,
            "active_reservations": 0,
        }
    ]


def test_expire_holds_releases_only_what_is_due(db: Database, world: World, stock: Stock) -> None:
    v = world.variants[0]
    stock(v, world.warehouse, 10)
    with db.transaction() as session:
        ctx = inventory.Context(Principal.system("tests"), reference_type="cart")
        due, fresh = (
            inventory.hold(session, ctx, [inventory.HoldLine(v, qty, world.warehouse)])[0].id
            for qty in (3, 2)
        )
        session.execute(
            update(Reservation)
            .where(Reservation.id == due)
            .values(expires_at=utcnow() - timedelta(minutes=1))
        )
    assert level(db, v, world.warehouse).reserved == 5
    assert _invoke(db, "expire-holds") == (0, {"expired": 1})
    with db.read() as session:
        assert inventory.get_reservation(session, due).status == "expired"
        assert inventory.get_reservation(session, fresh).status == "held"
    assert level(db, v, world.warehouse).reserved == 2
    assert _invoke(db, "expire-holds") == (0, {"expired": 0})
    assert _invoke(db, "verify")[0] == 0
