"""free text staff type is encrypted (audit entries, reasons, notes); events and webhook
bodies lose the free text they copied; webhook errors keep a status and a short reason

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07 12:00:00
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Free text stored in clear before this revision: (table, columns). Every table's key is
# ``id``. The values become Fernet tokens (TEXT).
PLAINTEXT_BEFORE = (
    ("audit_log", ("changes", "note")),
    ("order_transitions", ("reason",)),
    ("stock_movements", ("note",)),
    ("returns", ("note",)),
    ("return_lines", ("note",)),
    ("return_transitions", ("reason",)),
    ("loyalty_entries", ("reason",)),
    ("payment_refunds", ("reason",)),
    ("store_credit_transactions", ("reason",)),
    ("gift_cards", ("note",)),
    ("gift_card_transactions", ("note",)),
    ("consent_records", ("note",)),
    ("privacy_requests", ("reason",)),
)
# Columns whose type becomes TEXT for the longer tokens: (table, column, type before).
RETYPED: tuple[tuple[str, str, Any], ...] = (
    ("audit_log", "changes", sa.JSON().with_variant(postgresql.JSONB(), "postgresql")),
    ("payment_refunds", "reason", sa.String(length=200)),
    ("store_credit_transactions", "reason", sa.String(length=200)),
)
BATCH = 1000
ERROR_CHARS = 200


def _batches(table: str, columns: Sequence[str]) -> Iterator[list[Any]]:
    """Rows with something to convert, by key, a batch at a time (tables can be large)."""
    connection = op.get_bind()
    names = ", ".join(("id", *columns))
    some = " OR ".join(f"{c} IS NOT NULL" for c in columns)
    last = 0
    while True:
        rows = (
            connection.execute(
                sa.text(
                    f"SELECT {names} FROM {table} WHERE id > :last AND ({some}) "
                    f"ORDER BY id LIMIT {BATCH}"
                ),
                {"last": last},
            )
            .mappings()
            .all()
        )
        if not rows:
            return
        yield list(rows)
        last = rows[-1]["id"]


def _rewrite(convert: Callable[[Any], str]) -> None:
    connection = op.get_bind()
    for table, columns in PLAINTEXT_BEFORE:
        for rows in _batches(table, columns):
            for row in rows:
                values = {c: convert(row[c]) for c in columns if row[c] is not None}
                assignments = ", ".join(f"{c} = :{c}" for c in values)
                connection.execute(
                    sa.text(f"UPDATE {table} SET {assignments} WHERE id = :key_id"),
                    {**values, "key_id": row["id"]},
                )


def _as_text(value: Any) -> str:
    # A JSON column read raw may come back parsed (PostgreSQL) or as its text (SQLite).
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def _encrypt_existing() -> None:
    from mercato.crypto import DecryptionError, keyring

    ring = keyring()

    def encrypt(value: Any) -> str:
        text = _as_text(value)
        try:
            ring.decrypt(text)
            return text  # already a token (a partially applied earlier run)
        except (DecryptionError, ValueError):
            return ring.encrypt(text)

    _rewrite(encrypt)


def _decrypt_existing() -> None:
    from mercato.crypto import keyring

    ring = keyring()
    _rewrite(lambda value: ring.decrypt(value))


def _retype(to_text: bool) -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for table, column, before in RETYPED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            if to_text:
                batch_op.alter_column(
                    column,
                    existing_type=before,
                    type_=sa.Text(),
                    postgresql_using=f"{column}::text",
                )
            else:
                cast = "jsonb" if column == "changes" else "varchar(200)"
                batch_op.alter_column(
                    column,
                    existing_type=sa.Text(),
                    type_=before,
                    postgresql_using=f"{column}::{cast}" if postgres else None,
                )


# Free text events used to copy, dropped from what is kept and re-sent: (event type, path).
EVENT_FREE_TEXT = (
    ("order.lines_cancelled", ("reason",)),
    ("shipment.tracking_updated", ("event", "description")),
)


def _without(data: dict[str, Any], path: Sequence[str]) -> bool:
    """Drop ``path`` from ``data`` in place; whether there was something to drop."""
    *parents, leaf = path
    node: Any = data
    for name in parents:
        node = node.get(name) if isinstance(node, dict) else None
    if isinstance(node, dict) and leaf in node:
        del node[leaf]
        return True
    return False


def _scrub_events() -> None:
    connection = op.get_bind()
    outbox = sa.table(
        "outbox_events",
        sa.column("id", sa.BigInteger()),
        sa.column("data", sa.JSON().with_variant(postgresql.JSONB(), "postgresql")),
    )
    for event_type, path in EVENT_FREE_TEXT:
        rows = connection.execute(
            sa.text("SELECT id, data FROM outbox_events WHERE type = :t"), {"t": event_type}
        ).all()
        for key, raw in rows:
            data = json.loads(raw) if isinstance(raw, str) else raw
            if _without(data, path):
                connection.execute(outbox.update().where(outbox.c.id == key).values(data=data))
        deliveries = connection.execute(
            sa.text("SELECT id, body FROM webhook_deliveries WHERE event_type = :t"),
            {"t": event_type},
        ).all()
        for key, body in deliveries:
            envelope = json.loads(body)
            if _without(envelope.get("data") or {}, path):
                text = json.dumps(envelope, separators=(",", ":"), ensure_ascii=False)
                connection.execute(
                    sa.text("UPDATE webhook_deliveries SET body = :b WHERE id = :id"),
                    {"b": text, "id": key},
                )


def _shorten_webhook_errors() -> None:
    """Errors once quoted the receiver's answer: keep the status, or a short reason."""
    for table, error, status in (
        ("webhook_deliveries", "last_error", "last_status_code"),
        ("webhook_delivery_attempts", "error", "status_code"),
    ):
        op.execute(
            f"UPDATE {table} SET {error} = 'HTTP ' || CAST({status} AS VARCHAR(8)) "
            f"WHERE {status} IS NOT NULL AND {error} IS NOT NULL"
        )
        op.execute(
            f"UPDATE {table} SET {error} = substr({error}, 1, {ERROR_CHARS}) "
            f"WHERE length({error}) > {ERROR_CHARS}"
        )


def upgrade() -> None:
    _retype(to_text=True)
    _encrypt_existing()
    _scrub_events()
    _shorten_webhook_errors()


def downgrade() -> None:
    # The free text dropped from events and the answers dropped from webhook errors are
    # gone; the encrypted columns are decrypted back.
    _decrypt_existing()
    _retype(to_text=False)
