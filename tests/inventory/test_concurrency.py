"""Many buyers, one variant: never oversold, the ledger always equals on hand.

Threads against SQLite and PostgreSQL, and two separate API processes on one database.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from mercato.auth import service as auth_service
from mercato.auth.permissions import Role
from mercato.auth.principal import Principal
from mercato.db import Database
from mercato.inventory import service as inventory
from tests.inventory.conftest import World, assert_ledger_consistent, level
from tests.servers import api_processes

Stock = Callable[[int, int, int], None]


def _hold_one(db: Database, world: World, variant: int) -> bool:
    try:
        with db.transaction() as session:
            inventory.hold(
                session,
                inventory.Context(Principal.system("buyer")),
                [inventory.HoldLine(variant, 1)],
                candidate_locations=world.locations,
            )
        return True
    except inventory.InsufficientStock:
        return False


def test_many_threads_never_oversell(db: Database, world: World, stock: Stock) -> None:
    v = world.variants[0]
    stock(v, world.warehouse, 5)
    stock(v, world.store_a, 4)
    stock(v, world.store_b, 3)
    start = threading.Barrier(16)

    def buyer(_: int) -> bool:
        start.wait()
        return _hold_one(db, world, v)

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(buyer, range(16)))
    assert sum(results) == 12
    for loc in world.locations:
        snap = level(db, v, loc)
        assert snap.reserved == snap.on_hand and snap.available == 0
    assert_ledger_consistent(db)


def test_sales_holds_and_releases_racing(db: Database, world: World, stock: Stock) -> None:
    """Store sales, online holds and releases interleave; invariants hold at every step."""
    v = world.variants[1]
    stock(v, world.store_a, 20)
    sold = []

    def store_sale(_: int) -> None:
        try:
            with db.transaction() as session:
                inventory.adjust(
                    session,
                    inventory.Context(Principal.system("pos")),
                    world.store_a,
                    [inventory.AdjustmentLine(v, -1, inventory.Reason.SALE)],
                )
            sold.append(1)
        except inventory.InsufficientStock:
            pass

    def hold_and_release(_: int) -> None:
        try:
            with db.transaction() as session:
                held = inventory.hold(
                    session,
                    inventory.Context(Principal.system("web")),
                    [inventory.HoldLine(v, 2, world.store_a)],
                )
            with db.transaction() as session:
                inventory.release(session, inventory.Context(Principal.system("web")), [held[0].id])
        except inventory.InsufficientStock:
            pass

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: store_sale(i) if i % 2 else hold_and_release(i), range(40)))
    snap = level(db, v, world.store_a)
    assert snap.reserved == 0 and snap.on_hand == 20 - len(sold) >= 0
    assert_ledger_consistent(db)


@pytest.mark.slow
def test_two_api_processes_never_oversell(
    db: Database, world: World, stock: Stock, tmp_path: Path
) -> None:
    v = world.variants[2]
    stock(v, world.warehouse, 10)
    stock(v, world.store_a, 7)
    stock(v, world.store_b, 8)
    with db.transaction() as session:
        user = auth_service.create_user(
            session,
            Principal.system("tests"),
            email="erp@example.com",
            name="ERP",
            password="long enough password",
            role=Role.INTEGRATION,
        )
        token = auth_service.issue_api_token(session, Principal.system("tests"), user.id, "bench")
    url = db.engine.url.render_as_string(hide_password=False).replace("+psycopg", "")
    body = {"lines": [{"variant_id": v, "quantity": 1}], "channel_id": world.channel_id}
    with api_processes(url, 2, tmp_path) as urls:
        start = threading.Barrier(24)

        def buyer(n: int) -> int:
            with httpx.Client(
                base_url=urls[n % 2], timeout=60, headers={"Authorization": f"Bearer {token}"}
            ) as http:
                start.wait()
                statuses = []
                for _ in range(3):
                    statuses.append(http.post("/v1/inventory/reservations", json=body).status_code)
                return sum(1 for s in statuses if s == 201) * 1000 + sum(
                    1 for s in statuses if s not in (201, 409)
                )

        with ThreadPoolExecutor(24) as pool:
            outcomes = list(pool.map(buyer, range(24)))
    won = sum(o // 1000 for o in outcomes)
    errors = sum(o % 1000 for o in outcomes)
    assert errors == 0
    assert won == 25
    for loc in world.locations:
        assert level(db, v, loc).available == 0
    assert_ledger_consistent(db)
