"""``mercato inventory ...``: ledger checks and maintenance from the command line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from mercato.db import Database

inventory_app = typer.Typer(help="Stock ledger tools.", no_args_is_help=True)

DatabaseUrl = Annotated[
    str | None,
    typer.Option("--database-url", envvar="MERCATO_DATABASE_URL", help="SQLAlchemy URL"),
]


@contextmanager
def _database(database_url: str | None) -> Iterator[Database]:
    """The command's database, with the server's registrations."""
    from mercato.bootstrap import command_database, command_settings

    with command_settings(database_url) as settings, command_database(settings) as database:
        yield database


@inventory_app.command("verify")
def verify(database_url: DatabaseUrl = None) -> None:
    """Prove that every stock row equals the sum of its ledger (exit code 1 if not)."""
    from mercato.inventory import service

    with _database(database_url) as database, database.read() as session:
        rows, bad = service.verify(session)
    typer.echo(json.dumps({"rows": rows, "ok": not bad, "mismatches": [vars(m) for m in bad[:50]]}))
    if bad:
        raise typer.Exit(1)


@inventory_app.command("expire-holds")
def expire_holds(database_url: DatabaseUrl = None) -> None:
    """Release every hold whose time is up (the server also does this every few seconds)."""
    from mercato.inventory import service

    total = 0
    with _database(database_url) as database:
        while True:
            with database.transaction() as session:
                n = service.expire_holds(session)
            total += n
            if n == 0:
                break
    typer.echo(json.dumps({"expired": total}))
