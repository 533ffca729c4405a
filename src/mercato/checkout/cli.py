"""``mercato checkout ...``: checkout maintenance from the command line."""

from __future__ import annotations

import json
from typing import Annotated

import typer

checkout_app = typer.Typer(help="Checkout maintenance.", no_args_is_help=True)

DatabaseUrl = Annotated[
    str | None,
    typer.Option("--database-url", envvar="MERCATO_DATABASE_URL", help="SQLAlchemy URL"),
]


@checkout_app.command("abandon-stale")
def abandon_stale(
    database_url: DatabaseUrl = None,
    older_than: Annotated[
        int | None,
        typer.Option(
            "--older-than",
            min=60,
            help="seconds (default MERCATO_CHECKOUT_TIMEOUT_SECONDS)",
        ),
    ] = None,
) -> None:
    """Compensate every checkout still waiting for its payment after the timeout (the
    server also does this every minute)."""
    from datetime import timedelta

    from mercato.checkout import service
    from mercato.db import Database
    from mercato.settings import Settings

    settings = Settings(database_url=database_url) if database_url else Settings()
    database = Database(settings.resolved_database_url())
    timeout = timedelta(seconds=older_than or settings.checkout_timeout_seconds)
    abandoned: list[str] = []
    try:
        while True:
            batch = service.abandon_stale_checkouts(database, timeout=timeout)
            abandoned += batch
            if not batch:
                break
    finally:
        database.dispose()
    typer.echo(json.dumps({"abandoned": len(abandoned), "orders": abandoned}))
