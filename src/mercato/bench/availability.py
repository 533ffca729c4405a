"""``mercato bench availability``: available-to-promise for a 5-line cart over a big network.

Builds ``variants`` variants stocked at ``stocked`` random locations each, out of
``locations`` locations that one channel sells from, then times the availability of 5
random variants summed over the channel's locations three ways: the bare SQL statement
on a raw driver connection (the baseline), the service call with a fresh session per call
(in-process) and ``GET /v1/store/availability`` over HTTP with a channel key.

The stock rows are written directly (no ledger movements): this benchmark measures reads.
"""

from __future__ import annotations

import random
import time
import uuid
from typing import Any

import httpx
from sqlalchemy import insert, select

from mercato.auth.principal import Principal
from mercato.bench.common import api_server, machine, percentile, scratch_database
from mercato.catalog.models import Product, Variant
from mercato.channels import service as channels
from mercato.channels.schemas import ChannelIn, ChannelLocationIn, ChannelType
from mercato.db import Database, utcnow
from mercato.inventory import service as inventory
from mercato.inventory.models import StockLevel
from mercato.locations.models import Location

CHUNK = 20_000
LINES = 5


def _build(
    database: Database, n_variants: int, n_locations: int, stocked: int, rng: random.Random
) -> tuple[list[int], str]:
    run = uuid.uuid4().hex[:6]
    now = utcnow()
    with database.transaction() as session:
        session.execute(
            insert(Location),
            [
                {
                    "code": f"AV-{run}-{i}",
                    "name": f"Location {i}",
                    "type": "store",
                    "country": "DE",
                    "timezone": "Europe/Berlin",
                    "latitude": 47 + rng.random() * 8,
                    "longitude": 6 + rng.random() * 9,
                    "opening_hours": {},
                    "can_ship": True,
                    "can_pickup": True,
                    "can_ship_from_store": True,
                    "can_accept_returns": True,
                    "active": True,
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(n_locations)
            ],
        )
        place_ids = list(
            session.scalars(
                select(Location.id).where(Location.code.like(f"AV-{run}-%")).order_by(Location.id)
            )
        )
        per_product = 5
        n_products = (n_variants + per_product - 1) // per_product
        for start in range(0, n_products, CHUNK):
            session.execute(
                insert(Product),
                [
                    {
                        "code": f"AV-{run}-{p}",
                        "name": f"Product {p}",
                        "status": "active",
                        "tax_class": "standard",
                        "media_urls": [],
                        "attributes": {},
                        "search_text": f"av-{run}-{p}",
                        "created_at": now,
                        "updated_at": now,
                    }
                    for p in range(start, min(start + CHUNK, n_products))
                ],
            )
        product_ids = list(
            session.scalars(
                select(Product.id).where(Product.code.like(f"AV-{run}-%")).order_by(Product.id)
            )
        )
        for start in range(0, n_variants, CHUNK):
            session.execute(
                insert(Variant),
                [
                    {
                        "product_id": product_ids[v // per_product],
                        "sku": f"AV-{run}-{v}",
                        "options": {},
                        "position": v % per_product,
                        "active": True,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for v in range(start, min(start + CHUNK, n_variants))
                ],
            )
        variant_ids = list(
            session.scalars(
                select(Variant.id).where(Variant.sku.like(f"AV-{run}-%")).order_by(Variant.id)
            )
        )
    rows: list[dict[str, Any]] = []
    for variant_id in variant_ids:
        for place in rng.sample(place_ids, min(stocked, len(place_ids))):
            rows.append(
                {
                    "variant_id": variant_id,
                    "location_id": place,
                    "on_hand": rng.randint(0, 40),
                    "reserved": 0,
                    "safety_stock": 0,
                    "incoming": 0,
                    "updated_at": now,
                }
            )
        if len(rows) >= CHUNK:
            _flush(database, rows)
    _flush(database, rows)
    actor = Principal.system("bench")
    with database.transaction() as session:
        channel = channels.create_channel(
            session,
            actor,
            ChannelIn(
                code=f"av-{run}",
                name="Availability bench",
                type=ChannelType.WEB,
                default_locale="en",
                currencies=["EUR"],
                locations=[
                    ChannelLocationIn(location_id=p, priority=i) for i, p in enumerate(place_ids)
                ],
            ),
        )
        _, key = channels.issue_key(session, actor, channel.id, "bench")
    return variant_ids, key


def _flush(database: Database, rows: list[dict[str, Any]]) -> None:
    if rows:
        with database.transaction() as session:
            session.execute(insert(StockLevel), rows)
        rows.clear()


def _baseline(database: Database, samples: list[list[int]], place_ids: list[int]) -> list[float]:
    """The same statement and the same location filter on the raw driver connection."""
    mark = "?" if database.dialect == "sqlite" else "%s"
    places = frozenset(place_ids)
    timings = []
    raw = database.engine.raw_connection()
    try:
        cursor = raw.cursor()
        for ids in samples:
            sql = (
                "SELECT variant_id, location_id, on_hand - reserved - safety_stock "
                f"FROM stock_levels WHERE variant_id IN ({','.join(mark for _ in ids)}) "
                "AND on_hand - reserved - safety_stock > 0"
            )
            started = time.perf_counter()
            cursor.execute(sql, ids)
            totals = dict.fromkeys(ids, 0)
            for variant_id, location_id, free in cursor.fetchall():
                if location_id in places:
                    totals[variant_id] += free
            timings.append((time.perf_counter() - started) * 1000)
            raw.rollback()
    finally:
        raw.close()
    return timings


def run(
    n_variants: int,
    n_locations: int,
    stocked: int,
    samples: int,
    database_url: str | None,
    seed: int,
) -> dict[str, Any]:
    rng = random.Random(seed)
    with scratch_database(database_url) as (database, url, tmp):
        started = time.perf_counter()
        variant_ids, key = _build(database, n_variants, n_locations, stocked, rng)
        build_s = time.perf_counter() - started
        with database.read() as session:
            context = channels.context_for_key(session, key)
        places = list(context.location_order)
        carts = [rng.sample(variant_ids, LINES) for _ in range(samples)]
        baseline = _baseline(database, carts, places)
        in_process = []
        for ids in carts:
            t0 = time.perf_counter()
            with database.read() as session:
                inventory.availability(session, ids, places)
            in_process.append((time.perf_counter() - t0) * 1000)
        over_http = []
        with (
            api_server(url, tmp) as base,
            httpx.Client(base_url=base, headers={"X-Channel-Key": key}, timeout=30) as client,
        ):
            for ids in carts[: min(samples, 50)]:  # warm-up
                client.get(
                    "/v1/store/availability", params={"variant_ids": ",".join(map(str, ids))}
                )
            for ids in carts:
                t0 = time.perf_counter()
                response = client.get(
                    "/v1/store/availability", params={"variant_ids": ",".join(map(str, ids))}
                )
                over_http.append((time.perf_counter() - t0) * 1000)
                if response.status_code != 200:
                    raise RuntimeError(f"availability answered {response.status_code}")
        base_p50 = percentile(baseline, 50)
        return {
            "benchmark": "availability",
            "database": database.dialect,
            "variants": n_variants,
            "locations": n_locations,
            "stocked_locations_per_variant": stocked,
            "stock_rows": n_variants * min(stocked, n_locations),
            "cart_lines": LINES,
            "samples": samples,
            "build_s": round(build_s, 1),
            "baseline": "the same statement and location filter on the raw driver connection",
            "baseline_p50_ms": round(base_p50, 3),
            "baseline_p99_ms": round(percentile(baseline, 99), 3),
            "in_process_p50_ms": round(percentile(in_process, 50), 3),
            "in_process_p99_ms": round(percentile(in_process, 99), 3),
            "http_p50_ms": round(percentile(over_http, 50), 3),
            "http_p99_ms": round(percentile(over_http, 99), 3),
            "in_process_ratio_to_baseline": round(percentile(in_process, 50) / base_p50, 2)
            if base_p50
            else None,
            "machine": machine(),
        }
