"""``mercato webhooks ...``: the event catalog as documentation."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

webhooks_app = typer.Typer(help="Webhooks and the event catalog.", no_args_is_help=True)


@webhooks_app.command("event-docs")
def event_docs(
    write: Annotated[
        Path | None,
        typer.Option("--write", help="Rewrite the event list in this document (docs/webhooks.md)"),
    ] = None,
) -> None:
    """Print the event catalog as Markdown tables, or rewrite it in a document."""
    from mercato.webhooks import catalog_docs

    if write is None:
        typer.echo(catalog_docs.event_table(), nl=False)
        return
    changed = catalog_docs.rewrite(write)
    typer.echo(f"{write}: {'updated' if changed else 'already up to date'}")
