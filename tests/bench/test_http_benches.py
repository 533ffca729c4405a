"""The HTTP benchmarks run end to end at a small size and print what the docs promise.

Figures are not checked (a shared machine makes them noise); the correctness each report
carries is: nothing oversold, no errors, the ledger still adds up.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from mercato.bench.cli import bench_app

pytestmark = pytest.mark.slow


def _bench(*args: str) -> dict[str, Any]:
    result = CliRunner().invoke(bench_app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


def test_flash_sale_sells_exactly_the_stock() -> None:
    report = _bench(
        "flash-sale", "--buyers", "40", "--stock", "12", "--locations", "3", "--processes", "1"
    )
    for key in (
        "buyers",
        "stock",
        "sold",
        "oversold",
        "rejected",
        "errors",
        "orders_per_s",
        "p50_ms",
        "p99_ms",
        "baseline_per_s",
        "ratio_to_baseline",
    ):
        assert key in report, key
    assert (report["buyers"], report["stock"]) == (40, 12)
    assert report["sold"] == 12
    assert report["rejected"] == 28
    assert report["oversold"] == 0
    assert report["errors"] == 0
    assert report["baseline_per_s"] > 0


def test_availability_reports_in_process_and_http_latency() -> None:
    report = _bench(
        "availability", "--variants", "400", "--locations", "20", "--stocked", "3",
        "--samples", "20",
    )  # fmt: skip
    assert (report["variants"], report["locations"]) == (400, 20)
    for key in ("in_process_p50_ms", "in_process_p99_ms", "http_p50_ms", "http_p99_ms"):
        assert report[key] > 0, key
    assert report["in_process_p50_ms"] <= report["in_process_p99_ms"]


def test_checkout_never_sells_the_limited_item_twice() -> None:
    report = _bench("checkout", "--concurrency", "4", "--flows", "24", "--processes", "1")
    (level,) = report["levels"]
    assert level["concurrency"] == 4
    assert level["orders"] + level["rejected_sold_out"] == 24
    assert report["errors"] == 0
    assert report["oversold"] == 0
    limited = report["limited_item"]
    assert limited["sold"] <= limited["stock"]
    assert report["ledger_ok"] is True
    assert 0 < report["queries_per_checkout"] <= 30
    assert report["baseline_orders_per_s"] > 0


def test_pages_reports_every_screen_before_and_after_copying_orders() -> None:
    from mercato.bench.pages import run

    result = run([0, 120], rounds=2, database_url=None)
    by_count: dict[int, list[dict[str, object]]] = {}
    for row in result["results"]:
        by_count.setdefault(int(row["orders"]), []).append(row)
    assert len(by_count) == 2 and max(by_count) == 120
    for rows in by_count.values():
        pages = {row["page"] for row in rows}
        assert {"home", "orders", "orders: search by number", "order", "settings"} <= pages
        assert all(float(str(row["p95_ms"])) > 0 for row in rows)
        assert all(row["status"] == 200 for row in rows), rows
