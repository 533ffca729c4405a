"""``mercato`` commands use the options they are given everywhere in the process (and in
the server processes they start), whatever the current directory; they make no data
directory they do not use."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from mercato import crypto, instance_keys
from mercato.app import create_app
from mercato.cli import CREDENTIALS_FILE, app
from mercato.settings import Settings
from tests.helpers import fast_password_hashing
from tests.servers import free_port

pytestmark = pytest.mark.slow

PUBLISHED_SECRET = "mercato-development-secret-change-me"


@contextmanager
def demo_server(data_dir: Path, cwd: Path, log: Path) -> Iterator[str]:
    """``mercato demo --data-dir DATA_DIR`` started in ``cwd`` by a new user (no MERCATO_*
    variables); yields its URL once it answers /health."""
    port = free_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith("MERCATO_")}
    command = [sys.executable, "-m", "mercato", "demo", "--data-dir", str(data_dir)]
    with log.open("w") as output:
        process = subprocess.Popen(
            [*command, "--port", str(port)], cwd=cwd, env=env, stdout=output, stderr=output
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 180
            while not _answers(url):
                assert process.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.2)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_demo_serves_its_data_dir_from_any_directory_under_its_own_keys(tmp_path: Path) -> None:
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    data_dir = tmp_path / "shop" / "demo-data"
    with demo_server(data_dir, cwd, tmp_path / "demo.log") as url:
        ready = httpx.get(f"{url}/ready", timeout=10)
        assert ready.status_code == 200, ready.text
        credentials = json.loads((data_dir / CREDENTIALS_FILE).read_text())
        owner = {"email": credentials["staff_email"], "password": credentials["staff_password"]}
        login = httpx.post(f"{url}/v1/auth/login", json=owner, timeout=30)
        assert login.status_code == 200, login.text
        shopper = httpx.post(
            f"{url}/v1/store/customers",
            headers={"X-Channel-Key": credentials["channel_keys"]["web-jp"]},
            json={"email": "aiko@example.com", "password": "a long password"},
            timeout=30,
        )
        assert shopper.status_code == 201, shopper.text
    assert not (cwd / ".mercato").exists()

    keys_file = data_dir / instance_keys.KEYS_FILE
    assert keys_file.stat().st_mode & 0o777 == 0o600
    keys = instance_keys.read_env_file(keys_file)
    assert instance_keys.problems(Settings(**keys)) == []
    with sqlite3.connect(data_dir / "mercato.db") as raw:
        (email,) = raw.execute("SELECT email FROM customers").fetchone()
    assert "aiko" not in email
    assert crypto.Keyring(crypto.parse_keys(keys["encryption_keys"])).decrypt(email) == (
        "aiko@example.com"
    )
    with pytest.raises(crypto.DecryptionError):
        crypto.Keyring([crypto.development_key(PUBLISHED_SECRET)]).decrypt(email)


def test_the_demo_keeps_its_keys_and_refuses_data_without_them(tmp_path: Path) -> None:
    first = instance_keys.demo_keys(tmp_path / "a", tmp_path / "a" / "mercato.db")
    assert instance_keys.demo_keys(tmp_path / "a", tmp_path / "a" / "mercato.db") == first
    other = instance_keys.demo_keys(tmp_path / "b", tmp_path / "b" / "mercato.db")
    assert other["secret_key"] != first["secret_key"]
    assert other["encryption_keys"] != first["encryption_keys"]
    # Data left by an earlier version (encrypted with the then built-in key) has no keys.
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "mercato.db").touch()
    result = CliRunner().invoke(app, ["demo", "--no-serve", "--data-dir", str(legacy)])
    assert result.exit_code == 1
    assert "no keys.env beside it" in result.output and "Remove" in result.output
    assert not (legacy / instance_keys.KEYS_FILE).exists()


def test_commands_given_a_database_url_make_no_data_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast_password_hashing(monkeypatch)
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    runner = CliRunner()
    for command in (
        ["db", "upgrade"],
        ["seed"],
        ["user", "create", "--email", "o@example.com", "--password", "long enough pw"],
        ["inventory", "verify"],
        ["inventory", "expire-holds"],
        ["checkout", "abandon-stale"],
        ["privacy", "rotate-keys"],
    ):
        result = runner.invoke(app, [*command, "--database-url", url])
        assert result.exit_code == 0, (command, result.output, result.exception)
        assert not (cwd / ".mercato").exists(), command
    create_app(Settings(database_url=url, dispatcher_enabled=False))
    assert not (cwd / ".mercato").exists()
