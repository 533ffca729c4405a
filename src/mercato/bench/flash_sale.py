"""``mercato bench flash-sale``: many buyers race for a few units through the HTTP API.

One variant has ``stock`` units spread over ``locations`` locations that one channel sells
from. ``buyers`` concurrent clients each try to buy one unit (a stock hold through
``POST /v1/inventory/reservations``, sourced from the channel's locations) against
``processes`` API processes. The same holds are then done as bare SQL (the conditional
UPDATE, the reservation and the ledger row, no HTTP, no ORM) at the same concurrency
limit, so the result is a ratio that survives a noisy machine.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from sqlalchemy import text

from mercato.auth import service as auth_service
from mercato.auth.permissions import Role
from mercato.auth.principal import Principal
from mercato.bench.common import api_server, machine, percentile, scratch_database
from mercato.catalog import service as catalog
from mercato.catalog.schemas import ProductIn, ProductStatus, VariantIn
from mercato.channels import service as channels
from mercato.channels.schemas import ChannelIn, ChannelLocationIn, ChannelType
from mercato.db import Database, utcnow
from mercato.inventory import service as inventory
from mercato.locations import service as locations
from mercato.locations.schemas import Address, Capabilities, LocationIn, LocationType


def _spread(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def _setup(database: Database, stock: int, n_locations: int) -> dict[str, Any]:
    run = uuid.uuid4().hex[:8]
    actor = Principal.system("bench")
    with database.transaction() as session:
        place_ids = [
            locations.create_location(
                session,
                actor,
                LocationIn(
                    code=f"FS-{run}-{i}",
                    name=f"Flash sale location {i}",
                    type=LocationType.STORE if i else LocationType.WAREHOUSE,
                    address=Address(country="DE"),
                    timezone="Europe/Berlin",
                    latitude=50.0 + i / 10,
                    longitude=8.5 + i / 10,
                    capabilities=Capabilities(ship=True, pickup=True),
                ),
            ).id
            for i in range(n_locations)
        ]
        product = catalog.create_product(
            session,
            actor,
            ProductIn(
                code=f"FS-{run}",
                name="Limited drop sneaker",
                status=ProductStatus.ACTIVE,
                variants=[VariantIn(sku=f"FS-{run}-API"), VariantIn(sku=f"FS-{run}-SQL")],
            ),
        )
        api_variant, sql_variant = (v.id for v in product.variants)
        channel = channels.create_channel(
            session,
            actor,
            ChannelIn(
                code=f"fs-{run}",
                name="Flash sale",
                type=ChannelType.WEB,
                default_locale="en",
                currencies=["EUR"],
                locations=[
                    ChannelLocationIn(location_id=p, priority=i) for i, p in enumerate(place_ids)
                ],
            ),
        )
        user = auth_service.create_user(
            session,
            actor,
            email=f"bench-{run}@example.com",
            name="Bench",
            password=uuid.uuid4().hex,
            role=Role.INTEGRATION,
        )
        token = auth_service.issue_api_token(session, actor, user.id, "flash-sale bench")
        ctx = inventory.Context(actor, reference_type="bench")
        for place, units in zip(place_ids, _spread(stock, n_locations), strict=True):
            if units:
                inventory.receive_bulk(
                    session, ctx, place, [(api_variant, units), (sql_variant, units)]
                )
    return {
        "locations": place_ids,
        "api_variant": api_variant,
        "sql_variant": sql_variant,
        "channel_id": channel.id,
        "token": token,
    }


async def _buyers(
    url: str, token: str, body: dict[str, Any], buyers: int
) -> list[tuple[int, float]]:
    limits = httpx.Limits(max_connections=buyers, max_keepalive_connections=buyers)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(
        base_url=url, limits=limits, timeout=120, headers=headers
    ) as client:
        gate = asyncio.Event()

        async def buyer(n: int) -> tuple[int, float]:
            await gate.wait()
            started = time.perf_counter()
            try:
                response = await client.post(
                    "/v1/inventory/reservations",
                    json=body,
                    headers={"Idempotency-Key": f"buyer-{n}"},
                )
                status = response.status_code
            except httpx.HTTPError:
                status = 0
            return status, (time.perf_counter() - started) * 1000

        tasks = [asyncio.create_task(buyer(n)) for n in range(buyers)]
        await asyncio.sleep(0.2)
        gate.set()
        return list(await asyncio.gather(*tasks))


def _bare_sql_holds(
    database: Database, variant_id: int, place_ids: list[int], attempts: int, concurrency: int
) -> tuple[int, float]:
    """The same holds as plain SQL statements: conditional UPDATE, reservation, ledger row."""
    hold = text(
        "UPDATE stock_levels SET reserved = reserved + 1, updated_at = :now "
        "WHERE variant_id = :v AND location_id = :l "
        "AND on_hand - reserved - safety_stock >= 1"
    )
    reserve = text(
        "INSERT INTO stock_reservations (variant_id, location_id, quantity, status, "
        "created_at, updated_at) VALUES (:v, :l, 1, 'held', :now, :now)"
    )
    ledger = text(
        "INSERT INTO stock_movements (variant_id, location_id, reason, on_hand_delta, "
        "reserved_delta, actor_type, created_at) VALUES (:v, :l, 'reservation', 0, 1, "
        "'system', :now)"
    )
    engine = database.engine.execution_options(sqlite_begin="IMMEDIATE")

    def attempt(_: int) -> bool:
        now = utcnow()
        with engine.begin() as conn:
            for place in place_ids:
                params = {"v": variant_id, "l": place, "now": now}
                if conn.execute(hold, params).rowcount:
                    conn.execute(reserve, params)
                    conn.execute(ledger, params)
                    return True
        return False

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        won = sum(pool.map(attempt, range(attempts)))
    return won, time.perf_counter() - started


def run(
    buyers: int, stock: int, n_locations: int, processes: int, database_url: str | None
) -> dict[str, Any]:
    with scratch_database(database_url) as (database, url, tmp):
        world = _setup(database, stock, n_locations)
        body = {
            "lines": [{"variant_id": world["api_variant"], "quantity": 1}],
            "channel_id": world["channel_id"],
            "reference_type": "flash-sale",
        }
        with api_server(url, tmp, workers=processes) as base:
            started = time.perf_counter()
            results = asyncio.run(_buyers(base, world["token"], body, buyers))
            elapsed = time.perf_counter() - started
        sold = sum(1 for status, _ in results if status == 201)
        rejected = sum(1 for status, _ in results if status == 409)
        errors = len(results) - sold - rejected
        error_statuses: dict[str, int] = {}
        for status, _ in results:
            if status not in (201, 409):
                error_statuses[str(status)] = error_statuses.get(str(status), 0) + 1
        with database.read() as session:
            held = sum(
                inventory.get_level(session, world["api_variant"], p).reserved
                for p in world["locations"]
            )
            _, mismatches = inventory.verify(session)
        baseline_won, baseline_elapsed = _bare_sql_holds(
            database, world["sql_variant"], world["locations"], buyers, min(buyers, 16)
        )
        orders_per_s = sold / elapsed if elapsed else 0.0
        baseline_per_s = baseline_won / baseline_elapsed if baseline_elapsed else 0.0
        latencies = [ms for _, ms in results]
        return {
            "benchmark": "flash-sale",
            "database": database.dialect,
            "operation": "stock hold of 1 unit through POST /v1/inventory/reservations",
            "buyers": buyers,
            "stock": stock,
            "locations": n_locations,
            "processes": processes,
            "sold": sold,
            "oversold": max(0, max(sold, held) - stock),
            "rejected": rejected,
            "errors": errors,
            "error_statuses": error_statuses,
            "ledger_ok": not mismatches,
            "elapsed_s": round(elapsed, 3),
            "orders_per_s": round(orders_per_s, 1),
            "requests_per_s": round(buyers / elapsed, 1) if elapsed else 0.0,
            "p50_ms": round(percentile(latencies, 50), 2),
            "p99_ms": round(percentile(latencies, 99), 2),
            "baseline": "the same holds as bare SQL statements, 16 threads, no HTTP",
            "baseline_sold": baseline_won,
            "baseline_per_s": round(baseline_per_s, 1),
            "ratio_to_baseline": round(orders_per_s / baseline_per_s, 3)
            if baseline_per_s
            else None,
            "machine": machine(),
        }
