"""The migrations alone build exactly the schema the models describe, on every backend."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

import mercato.models  # noqa: F401  (every table in Base.metadata)
from mercato import migrate
from mercato.app import create_app
from mercato.db import Base, Database
from mercato.settings import Settings
from tests.conftest import BACKENDS, POSTGRES_URL

pytestmark = pytest.mark.slow


def _driver_url(url: str) -> str:
    return "postgresql+psycopg://" + url.split("://", 1)[1]


@pytest.fixture(params=BACKENDS)
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A database of its own: a fresh SQLite file, or a PostgreSQL database made and dropped
    here (the shared test database is never touched)."""
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'fresh.db'}")
        try:
            yield database
        finally:
            database.dispose()
        return
    assert POSTGRES_URL
    name = f"mercato_migrations_{uuid.uuid4().hex[:12]}"
    admin = create_engine(_driver_url(POSTGRES_URL), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
        database = Database(url)
        try:
            yield database
        finally:
            database.dispose()
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def _differences(database: Database) -> list[Any]:
    with database.engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "compare_server_default": False}
        )
        return list(compare_metadata(context, Base.metadata))


def test_migrations_from_empty_reach_head_with_the_models_schema(
    empty_database: Database,
) -> None:
    assert inspect(empty_database.engine).get_table_names() == []
    assert migrate.current_revision(empty_database.engine) is None
    assert not migrate.is_current(empty_database.engine)

    migrate.upgrade(empty_database.engine)

    assert migrate.current_revision(empty_database.engine) == migrate.head_revision()
    assert migrate.is_current(empty_database.engine)
    tables = set(inspect(empty_database.engine).get_table_names()) - {"alembic_version"}
    assert tables == set(Base.metadata.tables)
    assert _differences(empty_database) == []

    # Upgrading an up-to-date database is a no-op.
    migrate.upgrade(empty_database.engine)
    assert migrate.current_revision(empty_database.engine) == migrate.head_revision()
    assert _differences(empty_database) == []


def test_ready_is_503_before_the_upgrade_and_ready_after(
    empty_database: Database, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path, dispatcher_enabled=False)
    with TestClient(create_app(settings, database=empty_database)) as client:
        before = client.get("/ready")
        assert before.status_code == 503
        assert before.json()["status"] == "unavailable"
        assert before.json()["migration"] is None
        # Liveness does not depend on the schema.
        assert client.get("/health").status_code == 200

        migrate.upgrade(empty_database.engine)

        after = client.get("/ready")
        assert after.status_code == 200, after.text
        body = after.json()
        assert body["status"] == "ready"
        assert body["database"] == empty_database.dialect
        assert body["migration"] == body["expected_migration"] == migrate.head_revision()


def test_ready_is_503_when_the_database_is_unreachable(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir" / "db.sqlite"
    database = Database(f"sqlite:///{missing}")
    settings = Settings(data_dir=tmp_path, dispatcher_enabled=False)
    try:
        with TestClient(create_app(settings, database=database)) as client:
            response = client.get("/ready")
        assert response.status_code == 503
        assert response.json()["database"] == "unreachable"
    finally:
        database.dispose()
