"""What every benchmark shares: a scratch database, API processes, latency percentiles."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

from mercato import migrate
from mercato.db import Database


def percentile(samples: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (``p`` in 0..100) of ``samples``; 0.0 when empty."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def machine() -> dict[str, object]:
    return {"cpus": os.cpu_count(), "python": sys.version.split()[0], "platform": sys.platform}


@contextmanager
def scratch_database(database_url: str | None) -> Iterator[tuple[Database, str, Path]]:
    """A new, migrated database for one benchmark run, dropped afterwards.

    SQLite by default (a file in a temporary directory). With a PostgreSQL URL the
    benchmark creates a database of its own next to the one named (the role needs
    CREATEDB) so that runs never mix with each other or with real data.
    """
    with tempfile.TemporaryDirectory(prefix="mercato-bench-") as tmp:
        if database_url is None:
            url = f"sqlite:///{Path(tmp) / 'bench.db'}"
            with _migrated(url) as database:
                yield database, url, Path(tmp)
            return
        with _postgres_scratch(database_url) as url, _migrated(url) as database:
            yield database, url, Path(tmp)


@contextmanager
def _migrated(url: str) -> Iterator[Database]:
    database = Database(url)
    try:
        migrate.upgrade(database.engine)
        yield database
    finally:
        database.dispose()


@contextmanager
def _postgres_scratch(database_url: str) -> Iterator[str]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = make_url(database_url.replace("postgresql://", "postgresql+psycopg://", 1))
    name = f"mercato_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield (
            base.set(database=name)
            .render_as_string(hide_password=False)
            .replace("postgresql+psycopg://", "postgresql://", 1)
        )
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def api_server(database_url: str, data_dir: Path, workers: int = 1) -> Iterator[str]:
    """``uvicorn`` with ``workers`` API processes on one port, against ``database_url``."""
    port = free_port()
    env = {**os.environ, "MERCATO_DATABASE_URL": database_url, "MERCATO_DATA_DIR": str(data_dir)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "mercato.app:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=None if os.environ.get("MERCATO_BENCH_DEBUG") else subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError("the API server exited during start-up")
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the API server did not start within 60 s")
            time.sleep(0.1)
        # Give every worker time to boot so the first requests are not all on one process.
        time.sleep(0.5 * workers)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
