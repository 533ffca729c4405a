"""Which databases the suite runs on: SQLite always, PostgreSQL when a URL is given.

Under pytest-xdist every worker has a PostgreSQL database of its own, the given one's name
with the worker's id appended (``mercato_test_gw0``), made when the run starts: the tests
empty the tables between them, so two workers must never share one.
"""

from __future__ import annotations

import os

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ProgrammingError


def _for_this_worker(url: str | None) -> str | None:
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not url or not worker:
        return url
    parsed = make_url(url)
    return parsed.set(database=f"{parsed.database}_{worker}").render_as_string(hide_password=False)


POSTGRES_URL = _for_this_worker(os.environ.get("MERCATO_TEST_POSTGRES_URL"))
BACKENDS = ["sqlite", "postgresql"] if POSTGRES_URL else ["sqlite"]


def create_postgres_database() -> None:
    """Create the database ``POSTGRES_URL`` names if it does not exist yet."""
    if not POSTGRES_URL:
        return
    url = make_url(POSTGRES_URL).set(drivername="postgresql+psycopg")
    name = url.database
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            if not _exists(conn, name):
                try:
                    conn.execute(text(f'CREATE DATABASE "{name}"'))
                except ProgrammingError:
                    # Another run may have made it meanwhile; anything else is an error.
                    if not _exists(conn, name):
                        raise
    finally:
        admin.dispose()


def _exists(conn: Connection, name: str | None) -> bool:
    found = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name})
    return found.first() is not None
