"""The ``mercato`` command: demo, serve, db upgrade, seed, users."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mercato.bench.cli import bench_app
from mercato.checkout.cli import checkout_app
from mercato.inventory.cli import inventory_app
from mercato.privacy.cli import privacy_app
from mercato.settings import Settings

if TYPE_CHECKING:
    from mercato.db import Database

app = typer.Typer(help="Mercato unified commerce platform.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema management.", no_args_is_help=True)
user_app = typer.Typer(help="Staff users.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(user_app, name="user")
app.add_typer(inventory_app, name="inventory")
app.add_typer(checkout_app, name="checkout")
app.add_typer(privacy_app, name="privacy")
app.add_typer(bench_app, name="bench")

DatabaseUrl = Annotated[
    str | None,
    typer.Option("--database-url", envvar="MERCATO_DATABASE_URL", help="SQLAlchemy URL"),
]
DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", envvar="MERCATO_DATA_DIR", help="Where the SQLite database lives"),
]

CREDENTIALS_FILE = "demo-credentials.json"


def _settings(database_url: str | None = None, data_dir: Path | None = None) -> Settings:
    overrides: dict[str, object] = {}
    if database_url:
        overrides["database_url"] = database_url
    if data_dir:
        overrides["data_dir"] = data_dir
    settings = Settings(**overrides)  # type: ignore[arg-type]
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return settings


def _database(settings: Settings) -> Database:
    from mercato.db import Database

    return Database(settings.resolved_database_url())


def _upgrade(settings: Settings) -> None:
    from mercato import migrate

    database = _database(settings)
    try:
        migrate.upgrade(database.engine)
    finally:
        database.dispose()


def _serve(settings: Settings, host: str, port: int, workers: int) -> None:
    import uvicorn

    # Worker processes build their own app from the environment.
    os.environ["MERCATO_DATABASE_URL"] = settings.resolved_database_url()
    os.environ["MERCATO_DATA_DIR"] = str(settings.data_dir)
    uvicorn.run(
        "mercato.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
        access_log=False,
        # X-Forwarded-* are believed only from MERCATO_TRUSTED_PROXIES (http_security).
        proxy_headers=False,
    )


def _print_credentials(credentials: dict[str, object], url: str) -> None:
    typer.echo("")
    typer.echo(f"Mercato is running at {url}")
    typer.echo(f"  API docs:     {url}/docs")
    typer.echo(f"  Staff login:  {credentials['staff_email']} / {credentials['staff_password']}")
    typer.echo("  Channel API keys (send as X-Channel-Key):")
    keys = credentials.get("channel_keys", {})
    assert isinstance(keys, dict)
    for code, key in keys.items():
        typer.echo(f"    {code:<18} {key}")
    typer.echo("")


@app.command()
def demo(
    data_dir: DataDir = None,
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
    serve: Annotated[bool, typer.Option(help="Serve the API after loading the data")] = True,
) -> None:
    """Create (or reuse) a SQLite database with a demo business and serve the API."""
    from mercato import demo as demo_data

    settings = _settings(None, data_dir)
    settings.database_url = None  # the demo always runs on the embedded SQLite database
    _upgrade(settings)
    credentials_path = settings.data_dir / CREDENTIALS_FILE
    if credentials_path.exists():
        credentials = json.loads(credentials_path.read_text())
        typer.echo(f"Reusing demo data in {settings.data_dir}")
    else:
        database = _database(settings)
        try:
            credentials = demo_data.seed(database).as_dict()
            loaded = f"Loaded demo data into {settings.data_dir}"
        except demo_data.DemoAlreadyLoaded:
            # The data is there but its credentials file is gone: the stored secrets are
            # hashes, so new ones are issued rather than failing on every later run.
            try:
                credentials = demo_data.reissue_credentials(database).as_dict()
            except demo_data.DemoNotLoaded as exc:
                typer.echo(f"{exc}; remove {settings.data_dir} to start a fresh demo", err=True)
                raise typer.Exit(1) from exc
            loaded = (
                f"Reusing demo data in {settings.data_dir} "
                f"({CREDENTIALS_FILE} was missing: new password and channel keys issued)"
            )
        finally:
            database.dispose()
        credentials_path.write_text(json.dumps(credentials, indent=2))
        credentials_path.chmod(0o600)
        typer.echo(loaded)
    _print_credentials(credentials, f"http://{host}:{port}")
    if serve:
        _serve(settings, host, port, workers=1)


@app.command("serve")
def serve_command(
    database_url: DatabaseUrl = None,
    data_dir: DataDir = None,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64, help="API processes")] = 1,
    migrate: Annotated[bool, typer.Option(help="Run migrations before serving")] = True,
) -> None:
    """Serve the API against any database."""
    settings = _settings(database_url, data_dir)
    if migrate:
        _upgrade(settings)
    _serve(settings, host, port, workers)


@db_app.command("upgrade")
def db_upgrade(database_url: DatabaseUrl = None, data_dir: DataDir = None) -> None:
    """Apply every migration to the database."""
    settings = _settings(database_url, data_dir)
    _upgrade(settings)
    typer.echo(f"Database at {_safe_url(settings.resolved_database_url())} is up to date.")


@app.command()
def seed(database_url: DatabaseUrl = None, data_dir: DataDir = None) -> None:
    """Load the demo business into an existing (migrated) database."""
    from mercato import demo as demo_data

    settings = _settings(database_url, data_dir)
    database = _database(settings)
    try:
        credentials = demo_data.seed(database).as_dict()
    except demo_data.DemoAlreadyLoaded as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    finally:
        database.dispose()
    typer.echo(json.dumps(credentials, indent=2))


@user_app.command("create")
def user_create(
    email: Annotated[str, typer.Option()],
    password: Annotated[str, typer.Option(prompt=True, hide_input=True)],
    name: Annotated[str, typer.Option()] = "Owner",
    database_url: DatabaseUrl = None,
    data_dir: DataDir = None,
) -> None:
    """Create the first owner account."""
    from mercato.auth import service as auth_service

    settings = _settings(database_url, data_dir)
    database = _database(settings)
    try:
        with database.transaction() as session:
            user = auth_service.bootstrap_owner(session, email, name, password)
            typer.echo(f"owner {user.email} (id {user.id})")
    finally:
        database.dispose()


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def main() -> None:
    app()
