"""``mercato inventory ...``: ledger checks and maintenance from the command line."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from mercato.db import Database

inventory_app = typer.Typer(help="Stock ledger tools.", no_args_is_help=True)

DatabaseUrl = Annotated[
    str | None,
    typer.Option("--database-url", envvar="MERCATO_DATABASE_URL", help="SQLAlchemy URL"),
]


def _database(database_url: str | None) -> Database:
    from mercato.db import Database
    from mercato.settings import Settings

    settings = Settings(database_url=database_url) if database_url else Settings()
    return Database(settings.resolved_database_url())


@inventory_app.command("verify")
def verify(database_url: DatabaseUrl = None) -> None:
    """Prove that every stock row equals the sum of its ledger (exit code 1 if not)."""
    from mercato.inventory import service

    database = _database(database_url)
    try:
        with database.read() as session:
            rows, bad = service.verify(session)
    finally:
        database.dispose()
    typer.echo(json.dumps({"rows": rows, "ok": not bad, "mismatches": [vars(m) for m in bad[:50]]}))
    if bad:
        raise typer.Exit(1)


@inventory_app.command("expire-holds")
def expire_holds(database_url: DatabaseUrl = None) -> None:
    """Release every hold whose time is up (the server also does this every few seconds)."""
    from mercato.inventory import service

    database = _database(database_url)
    total = 0
    try:
        while True:
            with database.transaction() as session:
                n = service.expire_holds(session)
            total += n
            if n == 0:
                break
    finally:
        database.dispose()
    typer.echo(json.dumps({"expired": total}))
