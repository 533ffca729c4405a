"""Shared fixtures. Every database test runs on SQLite, and on PostgreSQL as well when
``MERCATO_TEST_POSTGRES_URL`` is set (the suite is then parametrised over both)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

import mercato.models  # noqa: F401
from mercato.app import create_app
from mercato.auth import service as auth_service
from mercato.auth.permissions import Role
from mercato.auth.principal import Principal
from mercato.db import Base, Database
from mercato.settings import Settings
from tests.backends import BACKENDS, POSTGRES_URL, create_postgres_database

# The demo business, seeded once per backend for every end-to-end test that asks for it.
from tests.demo_world import demo_world  # noqa: F401

# The installation secret the suite runs under (nothing starts without one); processes the
# tests start inherit it. Without MERCATO_ENCRYPTION_KEYS the data key derives from it.
os.environ.setdefault("MERCATO_SECRET_KEY", "tests-secret-" + "0123456789" * 4)


def pytest_configure(config: pytest.Config) -> None:
    # Each xdist worker's own PostgreSQL database (see tests.backends) may not exist yet.
    create_postgres_database()


OWNER_EMAIL = "owner@example.com"
PASSWORD = "correct horse battery"


# Truncating every table for every test costs more than most tests: empty tables are
# skipped, and only sequences that were used are restarted. One round trip.
_PG_RESET = """
DO $$
DECLARE
    dirty text[] := '{}';
    t text;
    has_rows boolean;
    seq record;
BEGIN
    FOREACH t IN ARRAY string_to_array(:tables, ',') LOOP
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I)', t) INTO has_rows;
        IF has_rows THEN
            dirty := dirty || format('%I', t);
        END IF;
    END LOOP;
    IF array_length(dirty, 1) > 0 THEN
        EXECUTE 'TRUNCATE ' || array_to_string(dirty, ', ') || ' CASCADE';
    END IF;
    FOR seq IN SELECT schemaname, sequencename FROM pg_sequences
               WHERE schemaname = current_schema() AND last_value IS NOT NULL LOOP
        EXECUTE format('ALTER SEQUENCE %I.%I RESTART', seq.schemaname, seq.sequencename);
    END LOOP;
END $$;
"""


def _reset(database: Database) -> None:
    tables = list(reversed(Base.metadata.sorted_tables))
    with database.engine.begin() as conn:
        if database.dialect == "postgresql":
            names = ",".join(t.name for t in tables)
            conn.execute(text(_PG_RESET.replace(":tables", f"'{names}'")))
        else:
            # The category tree references itself (ON DELETE RESTRICT): cut it first.
            conn.execute(text("UPDATE categories SET parent_id = NULL"))
            for table in tables:
                conn.execute(table.delete())
            if _has_sequence(conn):
                conn.execute(text("DELETE FROM sqlite_sequence"))


def _has_sequence(conn: Any) -> bool:
    return (
        conn.execute(
            text("SELECT 1 FROM sqlite_master WHERE type='table' AND name='sqlite_sequence'")
        ).first()
        is not None
    )


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def _databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Database]]:
    made: dict[str, Database] = {}
    yield made
    for database in made.values():
        database.dispose()


@pytest.fixture
def db(
    backend: str, _databases: dict[str, Database], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Database]:
    database = _databases.get(backend)
    if database is None:
        if backend == "postgresql":
            assert POSTGRES_URL
            database = Database(POSTGRES_URL)
            Base.metadata.drop_all(database.engine)
        else:
            path = Path(tmp_path_factory.mktemp("sqlite")) / "test.db"
            database = Database(f"sqlite:///{path}")
        Base.metadata.create_all(database.engine)
        _databases[backend] = database
    _reset(database)
    yield database


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, dispatcher_enabled=False, token_ttl_hours=1)


@pytest.fixture
def app(settings: Settings, db: Database) -> Any:
    return create_app(settings, database=db)


@pytest.fixture
def client(app: Any) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def system() -> Principal:
    return Principal.system("tests")


@pytest.fixture
def owner_headers(db: Database, client: TestClient) -> dict[str, str]:
    with db.transaction() as session:
        auth_service.bootstrap_owner(session, OWNER_EMAIL, "Olivia Owner", PASSWORD)
    return login(client, OWNER_EMAIL)


def login(client: TestClient, email: str, password: str = PASSWORD) -> dict[str, str]:
    response = client.post("/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


@pytest.fixture
def make_staff(db: Database, client: TestClient) -> Callable[..., dict[str, str]]:
    """Create a staff user with a role (and locations) and return its auth headers."""
    counter = iter(range(1_000_000))

    def make(role: Role | str, location_ids: list[int] | None = None) -> dict[str, str]:
        email = f"{Role(role).value}{next(counter)}@example.com"
        with db.transaction() as session:
            auth_service.create_user(
                session,
                Principal.system("tests"),
                email=email,
                name=email.split("@")[0],
                password=PASSWORD,
                role=Role(role),
                location_ids=location_ids or [],
            )
        return login(client, email)

    return make


def assert_problem(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    if code is not None:
        assert body["code"] == code, body
    return body
