"""``mercato bench checkout``: the full shopper flow over HTTP at several concurrency levels.

Each virtual shopper creates a cart on the Japanese web store of the demo business, adds
3 lines, sets a Tokyo address, picks the first delivery option, applies a code, gets a
card token from the test gateway and checks out. Per level the benchmark reports orders
per second (whole flows) and the latency of the checkout call itself.

Two same-run references make the figures comparable on a noisy machine:
``baseline_orders_per_s`` writes the same rows per order as bare SQL (no HTTP, no ORM,
8 threads), and ``queries_per_checkout`` counts the SQL statements the server runs for
one checkout call (SQLAlchemy engine events, in process; the simulated gateway's own
statements are reported apart as ``provider_queries``: they stand for a remote service).
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import event, text

from mercato import demo
from mercato.auth.principal import Principal
from mercato.bench.common import api_server, machine, percentile, scratch_database
from mercato.db import Database, utcnow
from mercato.inventory import service as inventory
from mercato.locations.models import Location
from mercato.promotions import service as promotions
from mercato.promotions.schemas import ActionIn, PromotionIn

CODE = "BENCH10"
ADDRESS = {
    "name": "Aiko Tanaka",
    "line1": "1-2-3 Jingumae",
    "city": "Shibuya-ku",
    "postal_code": "150-0001",
    "country": "JP",
}
CARD = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2031, "cvc": "123"}
POOL = 40  # variants shoppers pick from (hot rows, as in a real sale)
# One limited item makes ``oversold`` a measurement rather than a formality: a quarter of
# the shoppers want it, and each level restocks only a few units of it, so checkouts race
# for the last units and the losers must be refused, never sold stock that is not there.
SCARCE_SHARE = 0.25
SCARCE_UNITS_PER_LEVEL = 6


class SoldOut(Exception):
    """The checkout was refused because the limited item ran out: a correct answer."""


def _setup(database: Database) -> dict[str, Any]:
    credentials = demo.seed(database)
    actor = Principal.system("bench")
    with database.transaction() as session:
        warehouse = session.query(Location.id).filter(Location.code == "WH-TYO").scalar()
        free = inventory.availability_by_location(session, range(1, 2000), [warehouse])
        from mercato.pricing import service as pricing

        priced = pricing.resolve_prices(session, list(free), price_list="JP", currency="JPY")
        candidates = [v for v in sorted(free) if v in priced]
        pool, scarce = candidates[:POOL], candidates[POOL]
        # The limited item starts with nothing to sell anywhere; each level restocks it.
        everywhere = [location_id for (location_id,) in session.query(Location.id)]
        for location_id, units in (
            inventory.availability_by_location(session, [scarce], everywhere)
            .get(scarce, {})
            .items()
        ):
            inventory.adjust(
                session,
                inventory.Context(actor, reference_type="bench"),
                location_id,
                [inventory.AdjustmentLine(scarce, -units, inventory.Reason.DAMAGE)],
            )
        inventory.receive_bulk(
            session,
            inventory.Context(actor, reference_type="bench"),
            warehouse,
            [(v, 1_000_000) for v in pool],
        )
        promotion = promotions.create_promotion(
            session,
            actor,
            PromotionIn(
                name="Bench 10%",
                status="active",
                requires_code=True,
                action=ActionIn(type="percent_off_items", percent=Decimal(10)),
            ),
        )
        promotions.create_code(session, actor, promotion.id, CODE)
    return {
        "key": credentials.channel_keys["web-jp"],
        "pool": pool,
        "scarce": scarce,
        "warehouse": warehouse,
    }


def _restock_scarce(database: Database, world: dict[str, Any]) -> None:
    with database.transaction() as session:
        inventory.receive_bulk(
            session,
            inventory.Context(Principal.system("bench"), reference_type="bench"),
            world["warehouse"],
            [(world["scarce"], SCARCE_UNITS_PER_LEVEL)],
        )


def _scarce_figures(database: Database, world: dict[str, Any], restocked: int) -> dict[str, int]:
    """Units of the limited item on orders against the units that ever existed."""
    with database.read() as session:
        ordered = session.execute(
            text(
                "SELECT COALESCE(SUM(quantity - cancelled_quantity), 0) FROM order_lines "
                "WHERE variant_id = :v"
            ),
            {"v": world["scarce"]},
        ).scalar()
    return {"stock": restocked, "sold": int(ordered or 0)}


async def _flow(
    client: httpx.AsyncClient, pool: list[int], scarce: int, rng: random.Random
) -> float:
    """One shopper from empty cart to order; returns the checkout call's milliseconds."""
    cart = (await client.post("/v1/store/carts", json={})).json()
    token = cart["token"]
    lines = [(variant_id, rng.randint(1, 2)) for variant_id in rng.sample(pool, 3)]
    if rng.random() < SCARCE_SHARE:
        lines[0] = (scarce, 1)
    for variant_id, quantity in lines:
        r = await client.post(
            f"/v1/store/carts/{token}/lines",
            json={"variant_id": variant_id, "quantity": quantity},
        )
        r.raise_for_status()
    r = await client.patch(
        f"/v1/store/carts/{token}", json={"email": "bench@example.jp", "shipping_address": ADDRESS}
    )
    option = r.json()["shipping_options"][0]["option_id"]
    r = await client.patch(f"/v1/store/carts/{token}", json={"shipping_option_id": option})
    r.raise_for_status()
    r = await client.post(f"/v1/store/carts/{token}/codes", json={"code": CODE})
    total = r.json()["grand_total"]["amount"]
    card = (await client.post("/v1/store/payments/test-gateway/tokens", json=CARD)).json()
    started = time.perf_counter()
    r = await client.post(
        f"/v1/store/carts/{token}/checkout",
        headers={"Idempotency-Key": str(uuid.uuid4())},
        json={"payments": [{"method": "test_gateway", "amount": total, "token": card["token"]}]},
    )
    elapsed = (time.perf_counter() - started) * 1000
    if r.status_code == 409 and "insufficient-stock" in r.text:
        raise SoldOut()
    if r.status_code != 201:
        raise RuntimeError(f"checkout answered {r.status_code}: {r.text[:300]}")
    return elapsed


async def _level(
    base: str, key: str, pool: list[int], scarce: int, concurrency: int, flows: int
) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=concurrency * 2)
    async with httpx.AsyncClient(
        base_url=base, headers={"X-Channel-Key": key}, timeout=120, limits=limits
    ) as client:
        queue = list(range(flows))
        latencies: list[float] = []
        errors: list[str] = []
        sold_out = 0

        async def worker(seed: int) -> None:
            nonlocal sold_out
            rng = random.Random(seed)
            while queue:
                queue.pop()
                try:
                    latencies.append(await _flow(client, pool, scarce, rng))
                except SoldOut:
                    sold_out += 1
                except Exception as exc:  # counted, not fatal: the report says how many
                    errors.append(str(exc)[:200])

        started = time.perf_counter()
        await asyncio.gather(*(worker(n) for n in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {
        "concurrency": concurrency,
        "orders": len(latencies),
        "orders_per_s": round(len(latencies) / elapsed, 1),
        "checkout_p50_ms": round(percentile(latencies, 50), 1),
        "checkout_p99_ms": round(percentile(latencies, 99), 1),
        "rejected_sold_out": sold_out,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
    }


def _count_queries(
    database: Database, data_dir: Path, key: str, pool: list[int]
) -> tuple[int, int, list[str]]:
    from fastapi.testclient import TestClient

    from mercato.app import create_app
    from mercato.settings import Settings

    app = create_app(Settings(data_dir=data_dir, dispatcher_enabled=False), database=database)
    seen: list[str] = []

    def listener(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    with TestClient(app, headers={"X-Channel-Key": key}) as client:
        cart = client.post("/v1/store/carts", json={}).json()["token"]
        for variant_id in pool[:3]:
            client.post(
                f"/v1/store/carts/{cart}/lines", json={"variant_id": variant_id, "quantity": 1}
            )
        r = client.patch(
            f"/v1/store/carts/{cart}",
            json={"email": "count@example.jp", "shipping_address": ADDRESS},
        )
        option = r.json()["shipping_options"][0]["option_id"]
        client.patch(f"/v1/store/carts/{cart}", json={"shipping_option_id": option})
        total = client.post(f"/v1/store/carts/{cart}/codes", json={"code": CODE}).json()[
            "grand_total"
        ]["amount"]
        card = client.post("/v1/store/payments/test-gateway/tokens", json=CARD).json()["token"]
        event.listen(database.engine, "before_cursor_execute", listener)
        try:
            r = client.post(
                f"/v1/store/carts/{cart}/checkout",
                headers={"Idempotency-Key": str(uuid.uuid4())},
                json={"payments": [{"method": "test_gateway", "amount": total, "token": card}]},
            )
        finally:
            event.remove(database.engine, "before_cursor_execute", listener)
        if r.status_code != 201:
            raise RuntimeError(f"checkout answered {r.status_code}: {r.text[:300]}")
    # Transaction control is not work; PostgreSQL's driver does not even show it.
    work = [
        s
        for s in seen
        if not s.lstrip()
        .upper()
        .startswith(("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE"))
    ]
    provider = [s for s in work if "test_gateway_" in s]
    mercato = [s for s in work if "test_gateway_" not in s]
    return len(mercato), len(provider), mercato


_BASELINE_SQL = {
    "key": """
        INSERT INTO idempotency_keys (scope, key, request_hash, status_code, response,
                                      created_at)
        VALUES (:s, :k, 'x', 201, '{}', :now)""",
    "order": """
        INSERT INTO orders (number, channel_id, source, status, currency, tax_included,
                            subtotal, discount_total, shipping_total, tax_total, grand_total,
                            tax_breakdown, promotions, created_at, updated_at)
        VALUES (:n, :c, 'checkout', 'confirmed', 'JPY', true, 1, 0, 0, 0, 1, '[]', '[]',
                :now, :now)
        RETURNING id""",
    "hold": """
        UPDATE stock_levels SET reserved = reserved + 1
        WHERE variant_id = :v AND location_id = :l
          AND on_hand - reserved - safety_stock >= 1""",
    "movement": """
        INSERT INTO stock_movements (variant_id, location_id, reason, on_hand_delta,
                                     reserved_delta, actor_type, created_at)
        VALUES (:v, :l, 'reservation', 0, 1, 'bench', :now)""",
    "reservation": """
        INSERT INTO stock_reservations (variant_id, location_id, quantity, status,
                                        created_at, updated_at)
        VALUES (:v, :l, 1, 'allocated', :now, :now)""",
    "line": """
        INSERT INTO order_lines (order_id, line_no, variant_id, sku, name, tax_class,
                                 quantity, unit_price, subtotal, discount, tax, tax_rate,
                                 total, delivery_mode, status, cancelled_quantity,
                                 fulfilled_quantity, returned_quantity)
        VALUES (:o, :i, :v, 'SKU', 'Name', 'standard', 1, 1, 1, 0, 0, 0, 1, 'ship', 'open',
                0, 0, 0)""",
    "transition": """
        INSERT INTO order_transitions (order_id, to_status, actor_type, at)
        VALUES (:o, :s, 'bench', :now)""",
    "event": """
        INSERT INTO outbox_events (event_id, type, version, occurred_at, data, attempts)
        VALUES (:e, :t, 1, :now, '{}', 0)""",
}
_EVENTS = (
    "order.placed",
    "order.confirmed",
    "stock.changed",
    "stock.changed",
    "stock.changed",
    "payment.authorized",
)


def _baseline(database: Database, orders: int, threads: int, pool: list[int]) -> float:
    """The rows one checkout writes, as bare SQL statements in one transaction per order."""
    engine = database.engine.execution_options(sqlite_begin="IMMEDIATE")
    sql = {name: text(statement) for name, statement in _BASELINE_SQL.items()}
    with engine.begin() as conn:
        channel = conn.execute(text("SELECT id FROM channels WHERE code = 'web-jp'")).scalar()
        warehouse = conn.execute(text("SELECT id FROM locations WHERE code = 'WH-TYO'")).scalar()

    def one(n: int) -> None:
        now = utcnow()
        lines = sorted(random.Random(n).sample(pool, 3))  # lock order, as the service does
        number = f"B{uuid.uuid4().hex[:12]}"
        with engine.begin() as conn:
            conn.execute(sql["key"], {"s": "bench", "k": number, "now": now})
            order_id = conn.execute(sql["order"], {"n": number, "c": channel, "now": now}).scalar()
            for i, v in enumerate(lines):
                params = {"v": v, "l": warehouse, "now": now}
                conn.execute(sql["hold"], params)
                conn.execute(sql["movement"], params)
                conn.execute(sql["reservation"], params)
                conn.execute(sql["line"], {"o": order_id, "i": i, "v": v})
            for status in ("placed", "confirmed"):
                conn.execute(sql["transition"], {"o": order_id, "s": status, "now": now})
            for kind in _EVENTS:
                conn.execute(sql["event"], {"e": str(uuid.uuid4()), "t": kind, "now": now})

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as workers:
        list(workers.map(one, range(orders)))
    return orders / (time.perf_counter() - started)


def run(
    levels: list[int], flows_per_level: int | None, processes: int, database_url: str | None
) -> dict[str, Any]:
    with scratch_database(database_url) as (database, url, tmp):
        world = _setup(database)
        queries, provider_queries, statements = _count_queries(
            database, tmp, world["key"], world["pool"]
        )
        results = []
        restocked = 0
        shop = (world["key"], world["pool"], world["scarce"])
        with api_server(url, tmp, workers=processes) as base:
            # Warm-up: imports, statement caches, connection pools.
            asyncio.run(_level(base, *shop, 2, 6))
            for concurrency in levels:
                _restock_scarce(database, world)
                restocked += SCARCE_UNITS_PER_LEVEL
                flows = flows_per_level or max(40, concurrency * 6)
                results.append(asyncio.run(_level(base, *shop, concurrency, flows)))
        scarce = _scarce_figures(database, world, restocked)
        with database.read() as session:
            _, mismatches = inventory.verify(session)
            broken_rows = session.execute(
                text("SELECT COUNT(*) FROM stock_levels WHERE reserved > on_hand OR on_hand < 0")
            ).scalar()
        oversold = max(0, scarce["sold"] - scarce["stock"]) + int(broken_rows or 0)
        baseline = _baseline(database, 200, 8, world["pool"])
        return {
            "benchmark": "checkout",
            "database": database.dialect,
            "processes": processes,
            "levels": results,
            "errors": sum(level["errors"] for level in results),
            "oversold": oversold,
            "limited_item": {
                **scarce,
                "rejected_sold_out": sum(level["rejected_sold_out"] for level in results),
            },
            "ledger_ok": not mismatches,
            "queries_per_checkout": queries,
            "provider_queries": provider_queries,
            "baseline": "the rows of one checkout written as bare SQL, 8 threads",
            "baseline_orders_per_s": round(baseline, 1),
            "ratio_to_baseline_at_8": next(
                (
                    round(level["orders_per_s"] / baseline, 3)
                    for level in results
                    if level["concurrency"] == 8
                ),
                None,
            ),
            "machine": machine(),
            "statements": [s.split("\n")[0][:120] for s in statements],
        }
