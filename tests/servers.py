"""Real API processes for tests that need more than one (concurrency across processes)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def api_processes(database_url: str, count: int, data_dir: Path) -> Iterator[list[str]]:
    """Start ``count`` separate ``uvicorn`` processes on one database; yield their URLs."""
    env = {**os.environ, "MERCATO_DATABASE_URL": database_url, "MERCATO_DATA_DIR": str(data_dir)}
    procs: list[subprocess.Popen[bytes]] = []
    urls: list[str] = []
    try:
        for _ in range(count):
            port = free_port()
            procs.append(
                subprocess.Popen(
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
                        "--log-level",
                        "warning",
                    ],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
            )
            urls.append(f"http://127.0.0.1:{port}")
        # Generous: on a loaded 2-core machine a cold start can take a minute or more; a
        # process that fails exits, and that is noticed at once.
        deadline = time.monotonic() + 120
        for url, proc in zip(urls, procs, strict=True):
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"API process exited: {proc.stderr.read().decode()[-2000:]}"
                        if proc.stderr
                        else "API process exited"
                    )
                try:
                    if httpx.get(url + "/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{url} did not start")
                time.sleep(0.1)
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
