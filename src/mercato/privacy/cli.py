"""``mercato privacy ...``: encryption keys for personal data."""

from __future__ import annotations

import json
from typing import Annotated

import typer

privacy_app = typer.Typer(help="Encryption keys for personal data.", no_args_is_help=True)

DatabaseUrl = Annotated[
    str | None,
    typer.Option("--database-url", envvar="MERCATO_DATABASE_URL", help="SQLAlchemy URL"),
]


@privacy_app.command("generate-key")
def generate_key() -> None:
    """Print a new key for MERCATO_ENCRYPTION_KEYS (put it first to make it current)."""
    from mercato.privacy.crypto import generate_key as new_key

    typer.echo(new_key())


@privacy_app.command("rotate-keys")
def rotate_keys(database_url: DatabaseUrl = None) -> None:
    """Re-encrypt every personal data column with the current (first) key.

    Run it after putting a new key first in MERCATO_ENCRYPTION_KEYS; afterwards the old
    keys can be removed from the setting.
    """
    from mercato.bootstrap import command_database, command_settings
    from mercato.privacy.crypto import rotate_keys as rotate

    with (
        command_settings(database_url) as settings,
        command_database(settings) as database,
        database.transaction() as session,
    ):
        rewritten = rotate(session)
    typer.echo(json.dumps({"rows_rewritten": rewritten}))
