"""Free text staff type (audit entries, reasons, notes) is encrypted at rest, and the
migration that introduced it encrypts what was stored before, drops the free text events
and webhook bodies had copied, and shortens webhook errors that quoted the receiver."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from alembic import command
from sqlalchemy import MetaData, Table, insert, text

from mercato import migrate
from mercato.crypto import keyring
from mercato.db import Database
from tests.core.test_migrations import empty_database  # noqa: F401  (a fixture)

pytestmark = pytest.mark.slow

SECRET = "Hana Kobayashi called from +81 90 1234 5678"


def _filled(table: Table, given: dict[str, Any]) -> dict[str, Any]:
    """``given`` plus a plain value for every other NOT NULL column without a default."""
    row = dict(given)
    for column in table.columns:
        if column.name in row or column.nullable or column.primary_key:
            continue
        kind = str(column.type).upper()
        if "INT" in kind:
            row[column.name] = 1
        elif "BOOL" in kind:
            row[column.name] = False
        elif "TIME" in kind or "DATE" in kind:
            row[column.name] = datetime.now(UTC)
        elif "JSON" in kind:
            row[column.name] = {}
        else:
            row[column.name] = "x"
    return row


def _insert(database: Database, name: str, **given: Any) -> int:
    with database.engine.begin() as connection:
        table = Table(name, MetaData(), autoload_with=connection)
        row = _filled(table, given)
        found = connection.execute(insert(table).values(row).returning(table.c.id))
        return int(found.scalar_one())


def _raw(database: Database, sql: str) -> Any:
    with database.engine.connect() as connection:
        return connection.execute(text(sql)).scalar_one()


def test_the_migration_encrypts_stored_free_text_and_scrubs_copies(
    empty_database: Database,  # noqa: F811
) -> None:
    database = empty_database
    migrate.upgrade(database.engine, "0016")
    entry = _insert(
        database, "audit_log", changes={"reason": SECRET}, note=SECRET, actor_type="staff"
    )
    movement = _insert(database, "stock_movements", note=SECRET, reason="adjustment")
    points = _insert(database, "loyalty_entries", reason=SECRET, kind="adjust", points=5)
    request = _insert(database, "privacy_requests", reason=SECRET, kind="export")
    cancelled = _insert(
        database,
        "outbox_events",
        event_id="e-1",
        type="order.lines_cancelled",
        data={"order_id": 7, "reason": SECRET, "refund_due": "10"},
    )
    scan = _insert(
        database,
        "outbox_events",
        event_id="e-2",
        type="shipment.tracking_updated",
        data={"label_id": 3, "event": {"status": "delivered", "description": SECRET}},
    )
    hook = _insert(database, "webhook_subscriptions", url="https://erp.example.com/h")
    envelope = {"id": "e-1", "type": "order.lines_cancelled", "data": {"reason": SECRET}}
    delivery = _insert(
        database,
        "webhook_deliveries",
        subscription_id=hook,
        event_id="e-1",
        event_type="order.lines_cancelled",
        body=json.dumps(envelope),
        last_status_code=500,
        last_error=f"HTTP 500: internal page naming {SECRET}",
    )
    refused = _insert(
        database,
        "webhook_deliveries",
        subscription_id=hook,
        event_id="e-2",
        event_type="stock.changed",
        body="{}",
        last_error="ConnectError: " + "x" * 900,
    )

    migrate.upgrade(database.engine)

    ring = keyring()
    for table, column, key in (
        ("audit_log", "note", entry),
        ("audit_log", "changes", entry),
        ("stock_movements", "note", movement),
        ("loyalty_entries", "reason", points),
        ("privacy_requests", "reason", request),
    ):
        stored = _raw(database, f"SELECT {column} FROM {table} WHERE id = {key}")
        assert "Kobayashi" not in str(stored) and "1234" not in str(stored), table
        assert "Kobayashi" in ring.decrypt(stored), table
    assert json.loads(
        ring.decrypt(_raw(database, f"SELECT changes FROM audit_log WHERE id = {entry}"))
    ) == {"reason": SECRET}
    with database.engine.connect() as connection:
        events = dict(
            connection.execute(text("SELECT id, data FROM outbox_events ORDER BY id")).all()
        )
        bodies = dict(
            connection.execute(
                text("SELECT id, body FROM webhook_deliveries ORDER BY id")
            ).all()
        )
        errors = dict(
            connection.execute(
                text("SELECT id, last_error FROM webhook_deliveries ORDER BY id")
            ).all()
        )
    data = {k: json.loads(v) if isinstance(v, str) else v for k, v in events.items()}
    assert data[cancelled] == {"order_id": 7, "refund_due": "10"}
    assert data[scan] == {"label_id": 3, "event": {"status": "delivered"}}
    assert json.loads(bodies[delivery])["data"] == {}
    assert errors[delivery] == "HTTP 500"
    assert len(errors[refused]) == 200 and errors[refused].startswith("ConnectError")

    # Back to 0011: the encrypted text is decrypted again.
    config = migrate.alembic_config(database.engine.url.render_as_string(hide_password=False))
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0016")
    assert _raw(database, f"SELECT note FROM stock_movements WHERE id = {movement}") == SECRET
    changes = _raw(database, f"SELECT changes FROM audit_log WHERE id = {entry}")
    assert (json.loads(changes) if isinstance(changes, str) else changes) == {"reason": SECRET}
