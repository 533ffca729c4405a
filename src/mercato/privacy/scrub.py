"""After an erasure, the old versions of the rows it rewrote leave the database files.

An UPDATE does not wipe what it replaced. **SQLite** keeps the old bytes in the page's free
space and, in WAL mode, the old page in the write-ahead log; every connection sets
``secure_delete`` (freed content is overwritten with zeros) and a scrub runs a TRUNCATE
checkpoint, which copies the new pages into the database file and empties the log.
**PostgreSQL** keeps old row versions in the table until VACUUM removes them; a scrub
vacuums the tables an erasure can touch (those with personal data and those its sweep
changed). Neither reaches copies outside the live database (backups, WAL archives,
replicas, free disk blocks): ``docs/architecture.md`` says what the operator must do.

Scrubs run after the erasure has committed (VACUUM cannot run in a transaction), from the
API as soon as the answer is sent, and by hand with ``mercato privacy scrub``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Engine, text

from mercato.db import Base
from mercato.key_rotation import encrypted_columns
from mercato.privacy.sweep import DECRYPTING_SWEEP

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScrubResult:
    dialect: str
    tables: tuple[str, ...]  # vacuumed (PostgreSQL)
    checkpointed: bool | None  # the log emptied (SQLite); None elsewhere


def personal_data_tables() -> set[str]:
    """Every table an erasure rewrites: encrypted columns and the decrypting sweep's."""
    return {name.split(".", 1)[0] for name in encrypted_columns()} | set(DECRYPTING_SWEEP)


def scrub(engine: Engine, tables: Iterable[str] = ()) -> ScrubResult:
    """Purge old row versions of ``tables`` (with every personal data table) from disk."""
    dialect = engine.dialect.name
    if dialect == "sqlite":
        return ScrubResult(dialect, (), _checkpoint(engine))
    if dialect == "postgresql":
        known = set(Base.metadata.tables)
        names = tuple(sorted((personal_data_tables() | set(tables)) & known))
        _vacuum(engine, names)
        return ScrubResult(dialect, names, None)
    return ScrubResult(dialect, (), None)


def _checkpoint(engine: Engine) -> bool:
    with engine.connect() as connection:
        busy, _, _ = connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
    if busy:
        # A reader still uses an old snapshot: the log is emptied by a later checkpoint
        # (or `mercato privacy scrub`); secure_delete has already zeroed the old bytes.
        log.warning("erasure scrub: the write-ahead log is in use, not truncated yet")
    return not busy


def _vacuum(engine: Engine, names: tuple[str, ...]) -> None:
    if not names:
        return
    preparer = engine.dialect.identifier_preparer
    listed = ", ".join(preparer.quote(name) for name in names)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text(f"VACUUM (ANALYZE) {listed}"))


def scrub_quietly(engine: Engine, tables: Iterable[str] = ()) -> None:
    """:func:`scrub` for a background task: the erasure is done either way, so a failure
    is logged (run ``mercato privacy scrub`` again) rather than raised."""
    try:
        scrub(engine, tables)
    except Exception:
        log.exception("erasure scrub failed: run `mercato privacy scrub`")
