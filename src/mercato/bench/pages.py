"""Back office pages: server time per page on the demo business, and the order list and
search when the business has many orders.

The demo business is loaded (with its first orders placed through the API), then its
orders are copied (with new numbers, spread over 90 days) until there are ``orders`` of
them: a bulk copy, as a data migration would load them, because placing 100,000 orders
one by one would take hours. A signed-in owner then asks every screen ``rounds`` times,
in process: wall and CPU time per request, p50 and p95.
"""

from __future__ import annotations

import gc
import re
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any, cast

from fastapi.testclient import TestClient
from sqlalchemy import Table, func, select, text

from mercato import demo, demo_history
from mercato.app import create_app
from mercato.bench.common import machine, percentile, scratch_database
from mercato.db import Database, utcnow
from mercato.orders.models import Order, OrderLine
from mercato.settings import Settings

BATCH = 2000


def _copy_orders(database: Database, target: int) -> int:
    """Copy the placed orders (and their lines) until there are ``target`` orders."""
    orders, lines = cast(Table, Order.__table__), cast(Table, OrderLine.__table__)
    with database.read() as session:
        templates = [dict(row) for row in session.execute(select(orders)).mappings()]
        template_lines = [dict(row) for row in session.execute(select(lines)).mappings()]
        next_order = (session.scalar(select(func.max(orders.c.id))) or 0) + 1
        next_line = (session.scalar(select(func.max(lines.c.id))) or 0) + 1
    if not templates:
        raise RuntimeError("the demo placed no orders to copy")
    lines_of: dict[int, list[dict[str, Any]]] = {}
    for line in template_lines:
        lines_of.setdefault(line["order_id"], []).append(line)
    missing = target - len(templates)
    now = utcnow()
    made = 0
    while made < missing:
        order_rows: list[dict[str, Any]] = []
        line_rows: list[dict[str, Any]] = []
        for _ in range(min(BATCH, missing - made)):
            source = templates[made % len(templates)]
            placed = now - timedelta(minutes=(made * 37) % (90 * 24 * 60))
            copy = {**source, "id": next_order, "number": f"B{next_order:09d}"}
            copy.update(placed_at=placed, created_at=placed, updated_at=placed)
            copy["external_id"] = None
            order_rows.append(copy)
            for line in lines_of.get(source["id"], []):
                line_rows.append({**line, "id": next_line, "order_id": next_order})
                next_line += 1
            next_order += 1
            made += 1
        with database.transaction() as session:
            session.execute(orders.insert(), order_rows)
            if line_rows:
                session.execute(lines.insert(), line_rows)
    if database.dialect == "postgresql":
        with database.transaction() as session:
            for table in ("orders", "order_lines"):
                session.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"(SELECT max(id) FROM {table}))"
                    )
                )
    return len(templates) + made


def _sign_in(client: TestClient, email: str, password: str) -> None:
    page = client.get("/admin/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None
    answer = client.post(
        "/admin/login",
        data={"email": email, "password": password, "csrf_token": token.group(1)},
        follow_redirects=False,
    )
    if answer.status_code != 303:
        raise RuntimeError(f"signing in failed: {answer.status_code}")


def _pages(database: Database) -> Iterator[tuple[str, str]]:
    with database.read() as session:
        first = session.execute(select(Order.id, Order.number).order_by(Order.id).limit(1)).one()
        email = session.scalar(select(Order.email).where(Order.id == first.id))
    yield "home", "/admin/"
    yield "orders", "/admin/orders"
    yield "orders: search by number", f"/admin/orders?q={first.number}"
    if email:
        yield "orders: search by email", f"/admin/orders?q={email}"
    yield "orders: filter on hold", "/admin/orders?status=on_hold"
    yield "order", f"/admin/orders/{first.id}"
    yield "fulfilment", "/admin/fulfilment"
    yield "inventory", "/admin/inventory"
    yield "catalog", "/admin/catalog"
    yield "customers", "/admin/customers"
    yield "support", "/admin/support"
    yield "promotions", "/admin/promotions"
    yield "settings", "/admin/settings"


def _measure(client: TestClient, path: str, rounds: int) -> dict[str, Any]:
    walls: list[float] = []
    cpus: list[float] = []
    status = 0
    for _ in range(rounds):
        wall, cpu = time.perf_counter(), time.process_time()
        answer = client.get(path)
        walls.append((time.perf_counter() - wall) * 1000)
        cpus.append((time.process_time() - cpu) * 1000)
        status = answer.status_code
    return {
        "status": status,
        "p50_ms": round(percentile(walls, 50), 1),
        "p95_ms": round(percentile(walls, 95), 1),
        "cpu_p50_ms": round(percentile(cpus, 50), 1),
        "cpu_p95_ms": round(percentile(cpus, 95), 1),
    }


def run(orders: list[int], rounds: int, database_url: str | None) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    with scratch_database(database_url) as (database, _url, data_dir):
        credentials = demo.seed(database)
        settings = Settings(data_dir=data_dir, dispatcher_enabled=False)
        history = demo_history.add_history(
            database,
            settings,
            credentials.channel_keys,
            credentials.staff_email,
            credentials.staff_password,
        )
        app = create_app(settings, database)
        for target in sorted(orders):
            count = _copy_orders(database, target) if target > history.orders else history.orders
            # Loading the business left this process a heap a server does not have; a full
            # collection then scanned it all now and then (a 270 ms request in twenty).
            # Collect once and leave what survives out of later collections.
            gc.collect()
            gc.freeze()
            with TestClient(app) as client:
                _sign_in(client, credentials.staff_email, credentials.staff_password)
                for name, path in _pages(database):
                    client.get(path)  # warm: templates compiled, caches filled
                    results.append(
                        {"orders": count, "page": name, **_measure(client, path, rounds)}
                    )
        dialect = database.dialect
    return {
        "benchmark": "pages",
        "database": dialect,
        "rounds": rounds,
        "machine": machine(),
        "results": results,
    }
