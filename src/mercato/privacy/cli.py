"""``mercato privacy ...``: encryption keys for personal data; purging erased data."""

from __future__ import annotations

import json
from typing import Annotated

import typer

privacy_app = typer.Typer(
    help="Encryption keys for personal data; purging erased data from disk.",
    no_args_is_help=True,
)

DatabaseUrl = Annotated[
    str | None,
    typer.Option("--database-url", envvar="MERCATO_DATABASE_URL", help="SQLAlchemy URL"),
]


@privacy_app.command("generate-key")
def generate_key() -> None:
    """Print a new key for MERCATO_ENCRYPTION_KEYS (put it first to make it current)."""
    from mercato.crypto import generate_key as new_key

    typer.echo(new_key())


@privacy_app.command("rotate-keys")
def rotate_keys(database_url: DatabaseUrl = None) -> None:
    """Re-encrypt every personal data column with the current (first) key.

    Run it after putting a new key first in MERCATO_ENCRYPTION_KEYS; afterwards the old
    keys can be removed from the setting.
    """
    from mercato.bootstrap import command_database, command_settings
    from mercato.key_rotation import rotate_keys as rotate

    with (
        command_settings(database_url) as settings,
        command_database(settings) as database,
        database.transaction() as session,
    ):
        rewritten = rotate(session)
    typer.echo(json.dumps({"rows_rewritten": rewritten}))


@privacy_app.command("scrub")
def scrub(database_url: DatabaseUrl = None) -> None:
    """Purge old versions of erased rows from the database files.

    SQLite: a TRUNCATE checkpoint empties the write-ahead log. PostgreSQL: VACUUM of every
    table that holds personal data. The server does it after each erasure; run it after a
    batch of erasures, or when an erasure's scrub was interrupted.
    """
    from mercato.db import Database
    from mercato.privacy.scrub import scrub as purge
    from mercato.settings import Settings

    settings = Settings(database_url=database_url) if database_url else Settings()
    database = Database(settings.resolved_database_url())
    try:
        result = purge(database.engine)
    finally:
        database.dispose()
    typer.echo(
        json.dumps(
            {
                "database": result.dialect,
                "vacuumed": list(result.tables),
                "checkpointed": result.checkpointed,
            }
        )
    )
