"""The ``mercato`` command: demo, serve, db upgrade, seed, users."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from mercato.bench.cli import bench_app
from mercato.checkout.cli import checkout_app
from mercato.inventory.cli import inventory_app
from mercato.privacy.cli import privacy_app
from mercato.settings import Settings
from mercato.webhooks.cli import webhooks_app

app = typer.Typer(help="Mercato unified commerce platform.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema management.", no_args_is_help=True)
user_app = typer.Typer(help="Staff users.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(user_app, name="user")
app.add_typer(inventory_app, name="inventory")
app.add_typer(checkout_app, name="checkout")
app.add_typer(privacy_app, name="privacy")
app.add_typer(bench_app, name="bench")
app.add_typer(webhooks_app, name="webhooks")

DatabaseUrl = Annotated[
    str | None,
    typer.Option("--database-url", envvar="MERCATO_DATABASE_URL", help="SQLAlchemy URL"),
]
DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", envvar="MERCATO_DATA_DIR", help="Where the SQLite database lives"),
]

CREDENTIALS_FILE = "demo-credentials.json"


def _upgrade(settings: Settings) -> None:
    from mercato import migrate
    from mercato.bootstrap import open_database

    database = open_database(settings)
    try:
        migrate.upgrade(database.engine)
    finally:
        database.dispose()


def _serve(host: str, port: int, workers: int) -> None:
    """Serve the settings in force: worker processes build their app from the environment
    ``settings_in_force`` set up, this process (one worker) from the same settings."""
    import uvicorn

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


def _print_credentials(credentials: dict[str, Any], url: str) -> None:
    typer.echo("")
    typer.echo(f"Mercato is running at {url}")
    typer.echo(f"  Back office:  {url}/admin/  (sign in with any staff login below)")
    typer.echo(f"  API docs:     {url}/docs")
    typer.echo(f"  Staff login:  {credentials['staff_email']} / {credentials['staff_password']}")
    sign_ins = credentials.get("sign_ins") or []
    if sign_ins:
        typer.echo("  Staff sign-ins, one per role (each role's permissions: GET /v1/roles):")
        for member in sign_ins:
            where = f"  ({', '.join(member['locations'])})" if member.get("locations") else ""
            sign_in = f"{member['email']:<34} {member['password']}"
            typer.echo(f"    {member['role']:<16} {sign_in}{where}")
    typer.echo("  Channel API keys (send as X-Channel-Key):")
    keys = credentials.get("channel_keys", {})
    assert isinstance(keys, dict)
    for code, key in keys.items():
        typer.echo(f"    {code:<18} {key}")
    typer.echo("")


def _demo_credentials(settings: Settings) -> dict[str, Any]:
    """The demo's credentials: read back, or the data loaded (or new ones issued) now."""
    from mercato import demo as demo_data
    from mercato import demo_history
    from mercato.bootstrap import command_database

    credentials_path = settings.data_dir / CREDENTIALS_FILE
    if credentials_path.exists():
        typer.echo(f"Reusing demo data in {settings.data_dir}")
        loaded: dict[str, Any] = json.loads(credentials_path.read_text())
        return loaded
    with command_database(settings) as database:
        try:
            seeded = demo_data.seed(database)
            credentials = seeded.as_dict()
            history = demo_history.add_history(
                database,
                settings,
                seeded.channel_keys,
                seeded.staff_email,
                seeded.staff_password,
            )
            message = (
                f"Loaded demo data into {settings.data_dir} "
                f"({history.orders} orders, {history.cases} support cases)"
            )
        except demo_data.DemoAlreadyLoaded:
            # The data is there but its credentials file is gone: the stored secrets are
            # hashes, so new ones are issued rather than failing on every later run.
            try:
                credentials = demo_data.reissue_credentials(database).as_dict()
            except demo_data.DemoNotLoaded as exc:
                typer.echo(f"{exc}; remove {settings.data_dir} to start a fresh demo", err=True)
                raise typer.Exit(1) from exc
            message = (
                f"Reusing demo data in {settings.data_dir} "
                f"({CREDENTIALS_FILE} was missing: new password and channel keys issued)"
            )
    credentials_path.write_text(json.dumps(credentials, indent=2))
    credentials_path.chmod(0o600)
    typer.echo(message)
    return credentials


@app.command()
def demo(
    data_dir: DataDir = None,
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
    serve: Annotated[bool, typer.Option(help="Serve the API after loading the data")] = True,
) -> None:
    """Create (or reuse) a SQLite database with a demo business and serve the API."""
    from mercato import instance_keys
    from mercato.settings import SQLITE_FILE, default_data_dir, settings_in_force

    directory = (data_dir or default_data_dir()).resolve()
    try:
        keys = instance_keys.demo_keys(directory, directory / SQLITE_FILE)
    except instance_keys.KeysMissing as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    # The demo always runs on its embedded SQLite database, under its own keys.
    with settings_in_force(data_dir=directory, database_url=None, **keys) as settings:
        _upgrade(settings)
        credentials = _demo_credentials(settings)
        _print_credentials(credentials, f"http://{host}:{port}")
        if serve:
            _serve(host, port, workers=1)


@app.command("serve")
def serve_command(
    database_url: DatabaseUrl = None,
    data_dir: DataDir = None,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64, help="API processes")] = 1,
    migrate: Annotated[bool, typer.Option(help="Run migrations before serving")] = True,
) -> None:
    """Serve the API against any database (MERCATO_SECRET_KEY and MERCATO_ENCRYPTION_KEYS
    must be set: `mercato generate-keys` makes them)."""
    from mercato import instance_keys
    from mercato.bootstrap import command_settings

    with command_settings(database_url, data_dir) as settings:
        try:
            instance_keys.require_for_serving(settings)
        except instance_keys.KeysMissing as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(2) from exc
        if migrate:
            _upgrade(settings)
        _serve(host, port, workers)


@app.command("generate-keys")
def generate_keys() -> None:
    """Print a new MERCATO_SECRET_KEY and MERCATO_ENCRYPTION_KEYS, as environment lines."""
    from mercato import instance_keys

    typer.echo(instance_keys.as_env(instance_keys.new_keys()), nl=False)


@db_app.command("upgrade")
def db_upgrade(database_url: DatabaseUrl = None, data_dir: DataDir = None) -> None:
    """Apply every migration to the database."""
    from mercato.bootstrap import command_settings

    with command_settings(database_url, data_dir) as settings:
        _upgrade(settings)
        typer.echo(f"Database at {_safe_url(settings.resolved_database_url())} is up to date.")


@app.command()
def seed(database_url: DatabaseUrl = None, data_dir: DataDir = None) -> None:
    """Load the demo business into an existing (migrated) database."""
    from mercato import demo as demo_data
    from mercato.bootstrap import command_database, command_settings

    with command_settings(database_url, data_dir) as settings, command_database(settings) as db:
        try:
            credentials = demo_data.seed(db).as_dict()
        except demo_data.DemoAlreadyLoaded as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(1) from exc
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
    from mercato.bootstrap import command_database, command_settings

    with (
        command_settings(database_url, data_dir) as settings,
        command_database(settings) as db,
        db.transaction() as session,
    ):
        user = auth_service.bootstrap_owner(session, email, name, password)
        typer.echo(f"owner {user.email} (id {user.id})")


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def main() -> None:
    from mercato.instance_keys import KeysMissing

    try:
        app()
    except KeysMissing as exc:  # a command met personal data or a secret without its keys
        typer.echo(str(exc), err=True)
        raise SystemExit(2) from exc
