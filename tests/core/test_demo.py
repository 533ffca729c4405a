"""``mercato demo``: migrate a fresh SQLite database, load the demo business, print working
credentials, and reuse the data on the next run.

The seed runs once for the module (through the CLI, which calls ``mercato.demo.seed`` on a
freshly migrated database); every test reads that database.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import distinct, func, select
from typer.testing import CliRunner

from mercato import demo, migrate
from mercato.app import create_app
from mercato.auth.models import StaffUser
from mercato.auth.permissions import Role
from mercato.catalog.models import Product, ProductTranslation, Variant
from mercato.channels.models import Channel
from mercato.cli import CREDENTIALS_FILE, app
from mercato.db import Database
from mercato.locations.models import Location
from mercato.settings import Settings
from tests.helpers import fast_password_hashing

pytestmark = pytest.mark.slow

JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")
KEY_LINE = re.compile(r"^\s{4}(\S+)\s+(mck_\S+)\s*$")
LOGIN_LINE = re.compile(r"Staff login:\s+(\S+) / (\S+)")


@dataclass
class DemoRun:
    data_dir: Path
    output: str
    database: Database

    def credentials(self) -> tuple[str, str, dict[str, str]]:
        login = LOGIN_LINE.search(self.output)
        assert login, self.output
        keys = {}
        for line in self.output.splitlines():
            match = KEY_LINE.match(line)
            if match:
                keys[match.group(1)] = match.group(2)
        return login.group(1), login.group(2), keys


def _run_demo(data_dir: Path) -> str:
    result = CliRunner().invoke(app, ["demo", "--no-serve", "--data-dir", str(data_dir)])
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoRun]:
    data_dir = tmp_path_factory.mktemp("demo")
    with pytest.MonkeyPatch.context() as monkeypatch:
        fast_password_hashing(monkeypatch)
        output = _run_demo(data_dir)
        database = Database(f"sqlite:///{data_dir / 'mercato.db'}")
        try:
            yield DemoRun(data_dir, output, database)
        finally:
            database.dispose()


@pytest.fixture
def demo_client(demo_run: DemoRun, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path, dispatcher_enabled=False)
    with TestClient(create_app(settings, database=demo_run.database)) as client:
        yield client


def _scalar(database: Database, query: Any) -> Any:
    with database.read() as session:
        return session.scalar(query)


def test_demo_loads_a_whole_business(demo_run: DemoRun) -> None:
    database = demo_run.database
    assert "Loaded demo data" in demo_run.output
    assert migrate.is_current(database.engine)
    with database.read() as session:
        channels = list(session.scalars(select(Channel)))
        locations = list(session.scalars(select(Location)))
        session.expunge_all()
    assert len(channels) >= 5
    assert {c.type for c in channels} >= {"web", "app", "pos", "marketplace", "call_centre"}
    currencies = {code for c in channels for code in c.currencies}
    assert currencies >= {"JPY", "EUR", "USD", "SGD", "VND"}
    languages = {locale.split("-")[0] for c in channels for locale in c.locales}
    assert languages >= {"ja", "de", "en", "vi"}

    assert len(locations) >= 14
    assert all(loc.latitude is not None and loc.longitude is not None for loc in locations)
    assert {loc.type for loc in locations} == {"warehouse", "store", "dropship"}
    assert len({loc.country for loc in locations}) >= 5

    products = _scalar(database, select(func.count()).select_from(Product))
    assert products >= 300
    with_variants = _scalar(database, select(func.count(distinct(Variant.product_id))))
    assert with_variants == products
    assert _scalar(database, select(func.count()).select_from(Variant)) > products
    for language in ("ja", "de", "vi"):
        translated = _scalar(
            database,
            select(func.count(distinct(ProductTranslation.product_id))).where(
                ProductTranslation.locale == language
            ),
        )
        assert translated == products, language


def test_seeding_twice_is_refused(demo_run: DemoRun) -> None:
    database = demo_run.database
    staff = _scalar(database, select(func.count()).select_from(StaffUser))
    products = _scalar(database, select(func.count()).select_from(Product))
    with pytest.raises(demo.DemoAlreadyLoaded):
        demo.seed(database)
    assert _scalar(database, select(func.count()).select_from(StaffUser)) == staff
    assert _scalar(database, select(func.count()).select_from(Product)) == products


def test_printed_credentials_work(demo_run: DemoRun, demo_client: TestClient) -> None:
    email, password, keys = demo_run.credentials()
    stored = json.loads((demo_run.data_dir / CREDENTIALS_FILE).read_text())
    assert (email, password, keys) == (
        stored["staff_email"],
        stored["staff_password"],
        stored["channel_keys"],
    )
    assert len(keys) >= 5 and "web-jp" in keys

    for code, key in keys.items():
        page = demo_client.get("/v1/store/products?limit=5", headers={"X-Channel-Key": key})
        assert page.status_code == 200, (code, page.text)
        assert len(page.json()["items"]) == 5, code

    japanese = demo_client.get(
        "/v1/store/products?limit=20", headers={"X-Channel-Key": keys["web-jp"]}
    ).json()
    assert japanese["locale"] == "ja-JP"
    assert all(JAPANESE.search(p["name"]) for p in japanese["items"]), japanese["items"]
    english = demo_client.get(
        "/v1/store/products?limit=20&locale=en", headers={"X-Channel-Key": keys["web-jp"]}
    ).json()
    assert not any(JAPANESE.search(p["name"]) for p in english["items"])

    login = demo_client.post("/v1/auth/login", json={"email": email, "password": password})
    assert login.status_code == 200, login.text
    token = {"Authorization": f"Bearer {login.json()['token']}"}
    assert demo_client.get("/v1/channels", headers=token).status_code == 200
    for other_email in stored["other_staff"]:
        staff_login = {"email": other_email, "password": password}
        assert demo_client.post("/v1/auth/login", json=staff_login).status_code == 200


SIGN_IN_LINE = re.compile(r"^\s{4}(\w+)\s+(\S+@mercato\.example)\s+(\S+)(?:\s+\((.*)\))?$")


def test_a_sign_in_is_printed_and_written_for_every_role(
    demo_run: DemoRun, demo_client: TestClient
) -> None:
    printed = [m.groups() for m in map(SIGN_IN_LINE.match, demo_run.output.splitlines()) if m]
    stored = json.loads((demo_run.data_dir / CREDENTIALS_FILE).read_text())["sign_ins"]
    assert [role for role, *_ in printed] == [role.value for role in Role]
    assert [(s["role"], s["email"], s["password"]) for s in stored] == [
        (role, email, password) for role, email, password, _ in printed
    ]
    for sign_in, (*_, where) in zip(stored, printed, strict=True):
        assert (where or None) == (", ".join(sign_in["locations"]) or None)
        login = demo_client.post(
            "/v1/auth/login", json={"email": sign_in["email"], "password": sign_in["password"]}
        )
        assert login.status_code == 200, (sign_in, login.text)
        token = {"Authorization": f"Bearer {login.json()['token']}"}
        me = demo_client.get("/v1/auth/me", headers=token).json()
        assert me["user"]["role"] == sign_in["role"]
        assert len(me["user"]["location_ids"]) == len(sign_in["locations"])


def test_second_run_reuses_the_data_and_prints_the_same_credentials(
    demo_run: DemoRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    products = _scalar(demo_run.database, select(func.count()).select_from(Product))
    fast_password_hashing(monkeypatch)
    second = _run_demo(demo_run.data_dir)
    assert "Reusing demo data" in second
    assert (
        demo_run.credentials()
        == DemoRun(demo_run.data_dir, second, demo_run.database).credentials()
    )
    # Everything after the first line (loaded / reusing) is the same text.
    assert second.splitlines()[1:] == demo_run.output.splitlines()[1:]
    assert _scalar(demo_run.database, select(func.count()).select_from(Product)) == products


def test_the_demo_app_serves_health_shoppers_and_guards_staff_endpoints(
    demo_run: DemoRun, demo_client: TestClient
) -> None:
    assert demo_client.get("/health").json()["status"] == "ok"
    _, _, keys = demo_run.credentials()
    german = demo_client.get(
        "/v1/store/products?limit=5", headers={"X-Channel-Key": keys["web-de"]}
    ).json()
    assert german["locale"].startswith("de") and len(german["items"]) == 5
    categories = demo_client.get(
        "/v1/store/categories", headers={"X-Channel-Key": keys["web-jp"]}
    ).json()
    assert categories["items"] and any(JAPANESE.search(c["name"]) for c in categories["items"])
    for path in ("/v1/products", "/v1/inventory/levels", "/v1/channels"):
        refused = demo_client.get(path)
        assert refused.status_code == 401, path
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["code"] == "missing-token"


def test_a_lost_credentials_file_gets_new_credentials(
    demo_run: DemoRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast_password_hashing(monkeypatch)
    copy = tmp_path / "demo"
    shutil.copytree(demo_run.data_dir, copy)
    (copy / CREDENTIALS_FILE).unlink()
    result = CliRunner().invoke(app, ["demo", "--no-serve", "--data-dir", str(copy)])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "new password and channel keys issued" in result.output
    fresh = DemoRun(copy, result.output, Database(f"sqlite:///{copy / 'mercato.db'}"))
    try:
        email, password, keys = fresh.credentials()
        assert json.loads((copy / CREDENTIALS_FILE).read_text())["staff_password"] == password
        assert password != demo_run.credentials()[1]
        assert set(keys) == set(demo_run.credentials()[2])
        settings = Settings(data_dir=tmp_path, dispatcher_enabled=False)
        with TestClient(create_app(settings, database=fresh.database)) as client:
            login = client.post("/v1/auth/login", json={"email": email, "password": password})
            assert login.status_code == 200, login.text
            for other in json.loads((copy / CREDENTIALS_FILE).read_text())["other_staff"]:
                staff = {"email": other, "password": password}
                assert client.post("/v1/auth/login", json=staff).status_code == 200
            page = client.get(
                "/v1/store/products?limit=1", headers={"X-Channel-Key": keys["web-jp"]}
            )
            assert page.status_code == 200 and page.json()["locale"] == "ja-JP"
        again = _run_demo(copy)
        assert "Reusing demo data" in again
        assert fresh.credentials() == DemoRun(copy, again, fresh.database).credentials()
    finally:
        fresh.database.dispose()


def test_credentials_cannot_be_reissued_for_a_database_without_the_demo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demo, "seed", _already_loaded)
    result = CliRunner().invoke(app, ["demo", "--no-serve", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert "does not hold the demo business" in result.output
    assert not (tmp_path / CREDENTIALS_FILE).exists()


def _already_loaded(database: Database) -> demo.DemoCredentials:
    raise demo.DemoAlreadyLoaded("the demo business is already loaded in this database")


def test_db_upgrade_then_seed_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fast_password_hashing(monkeypatch)
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    runner = CliRunner()
    upgraded = runner.invoke(app, ["db", "upgrade", "--database-url", url])
    assert upgraded.exit_code == 0, (upgraded.output, upgraded.exception)
    assert "is up to date" in upgraded.output
    database = Database(url)
    try:
        assert migrate.is_current(database.engine)
        seeded = runner.invoke(app, ["seed", "--database-url", url])
        assert seeded.exit_code == 0, (seeded.output, seeded.exception)
        credentials = json.loads(seeded.output)
        assert credentials["staff_email"] == demo.OWNER_EMAIL and credentials["channel_keys"]
        products = _scalar(database, select(func.count()).select_from(Product))
        assert products >= 300
        again = runner.invoke(app, ["seed", "--database-url", url])
        assert again.exit_code == 1 and isinstance(again.exception, SystemExit)
        assert "already loaded" in again.output
        assert _scalar(database, select(func.count()).select_from(Product)) == products
        # An upgrade of a current database changes nothing and still succeeds.
        assert runner.invoke(app, ["db", "upgrade", "--database-url", url]).exit_code == 0
    finally:
        database.dispose()


def test_the_demo_has_orders_and_cases_to_show_in_the_back_office(demo_run: DemoRun) -> None:
    from mercato.orders.models import Order
    from mercato.support.models import SupportCase

    assert "Back office:  http://127.0.0.1:8000/admin/" in demo_run.output
    orders = _scalar(demo_run.database, select(func.count()).select_from(Order))
    channels = _scalar(demo_run.database, select(func.count(distinct(Order.channel_id))))
    held = _scalar(
        demo_run.database, select(func.count()).select_from(Order).where(Order.on_hold.is_(True))
    )
    cases = _scalar(demo_run.database, select(func.count()).select_from(SupportCase))
    assert orders >= 30 and channels >= 5 and held >= 1 and cases >= 1
    assert f"({orders} orders, {cases} support cases)" in demo_run.output
