"""What an erasure removes leaves the database files too: on SQLite the old bytes are
zeroed (secure_delete) and the write-ahead log emptied; on PostgreSQL the tables it
touched are vacuumed, so their old row versions go."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from mercato.db import Database
from mercato.events import record_event
from mercato.privacy import scrub
from tests.commerce.helpers import ok
from tests.helpers import channel_key, created, fast_password_hashing, make_channel

Headers = dict[str, str]


@pytest.fixture(autouse=True)
def _fast(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_password_hashing(monkeypatch)


def _customer_with_a_copy(
    client: TestClient, owner_headers: Headers, db: Database
) -> tuple[int, str]:
    """A registered customer, and a copy of her email in clear in an old event's data
    (as events carried before free text was kept out of them)."""
    channel = make_channel(client, owner_headers, f"web-{uuid.uuid4().hex[:6]}")["id"]
    store = {"X-Channel-Key": channel_key(client, owner_headers, channel)}
    email = f"disk-{uuid.uuid4().hex[:10]}@example.com"
    body = created(
        client.post(
            "/v1/store/customers",
            json={"email": email, "password": "long enough pw", "phone": "+81 90 1234 5678"},
            headers=store,
        )
    )
    with db.transaction() as session:
        record_event(session, "order.lines_cancelled", {"order_id": 1, "reason": f"mail {email}"})
    return int(body["customer"]["id"]), email


def _erase(client: TestClient, owner_headers: Headers, customer_id: int) -> dict[str, Any]:
    # The TestClient returns once the answer's background work (the scrub) has run.
    return ok(
        client.post(
            f"/v1/customers/{customer_id}/privacy/erase",
            headers=owner_headers,
            json={"reason": "GDPR art. 17", "confirm_customer_id": customer_id},
        ),
        201,
    )


def _file_bytes(db: Database) -> bytes:
    path = Path(str(db.engine.url.database))
    files = [path, Path(f"{path}-wal")]
    return b"".join(f.read_bytes() for f in files if f.exists())


@pytest.mark.slow
def test_sqlite_keeps_no_old_bytes_of_an_erased_value(
    client: TestClient, owner_headers: Headers, db: Database
) -> None:
    if db.dialect != "sqlite":
        pytest.skip("the SQLite files")
    with db.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA secure_delete").scalar() == 1
    customer_id, email = _customer_with_a_copy(client, owner_headers, db)
    with db.engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    assert email.encode() in _file_bytes(db)  # the clear copy is on disk

    erased = _erase(client, owner_headers, customer_id)

    assert erased["summary"]["sweep"]["outbox_events"] == 1
    assert email.encode() not in _file_bytes(db)
    wal = Path(f"{db.engine.url.database}-wal")
    assert not wal.exists() or wal.stat().st_size == 0


def _vacuums(db: Database, tables: list[str]) -> dict[str, int]:
    with db.engine.connect() as connection:
        connection.execute(text("SELECT pg_stat_clear_snapshot()"))
        rows = connection.execute(
            text("SELECT relname, vacuum_count FROM pg_stat_user_tables"),
        ).all()
    return {str(name): int(count) for name, count in rows if name in tables}


def test_postgresql_vacuums_the_tables_an_erasure_touched(
    client: TestClient, owner_headers: Headers, db: Database
) -> None:
    if db.dialect != "postgresql":
        pytest.skip("PostgreSQL's old row versions")
    customer_id, _ = _customer_with_a_copy(client, owner_headers, db)
    touched = ["customers", "customer_identities", "outbox_events", "audit_log"]
    assert set(touched) <= scrub.personal_data_tables() | {"outbox_events"}
    before = _vacuums(db, touched)

    _erase(client, owner_headers, customer_id)

    # Statistics reach the view within a moment of the VACUUM.
    deadline = time.monotonic() + 10
    after = _vacuums(db, touched)
    while any(after.get(t, 0) <= before.get(t, 0) for t in touched):
        assert time.monotonic() < deadline, (before, after)
        time.sleep(0.2)
        after = _vacuums(db, touched)
    with db.engine.connect() as connection:
        dead = connection.execute(
            text("SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'customers'")
        ).scalar_one()
    assert dead == 0


def test_scrub_by_hand_reports_what_it_did(db: Database) -> None:
    result = scrub.scrub(db.engine)
    assert result.dialect == db.dialect
    if db.dialect == "sqlite":
        assert result.checkpointed is True and result.tables == ()
    else:
        assert {"customers", "orders", "audit_log"} <= set(result.tables)
