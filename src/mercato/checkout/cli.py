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

    from mercato.bootstrap import command_database, command_settings
    from mercato.flows import checkout

    abandoned: list[str] = []
    # The server's registrations: voiding needs every payment provider (loyalty points).
    with command_settings(database_url) as settings, command_database(settings) as database:
        timeout = timedelta(seconds=older_than or settings.checkout_timeout_seconds)
        while True:
            batch = checkout.abandon_stale_checkouts(database, timeout=timeout)
            abandoned += batch
            if not batch:
                break
    typer.echo(json.dumps({"abandoned": len(abandoned), "orders": abandoned}))
