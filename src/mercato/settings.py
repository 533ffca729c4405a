"""Runtime settings, read from ``MERCATO_*`` environment variables."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# The embedded database's file inside the data directory.
SQLITE_FILE = "mercato.db"


def default_data_dir() -> Path:
    return Path.cwd() / ".mercato"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MERCATO_", extra="ignore")

    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    # The installation's secret: payment webhook secrets, gift card code hashes and sealed
    # webhook secrets derive from it. No default: one in the source would be public
    # (instance_keys says what is required and how to make it).
    secret_key: str | None = None
    # Fernet keys for personal data at rest, comma-separated, current first (mercato.crypto).
    encryption_keys: str | None = None
    token_ttl_hours: int = 12
    # A customer stays signed in this long without using the refresh token (it rotates on use);
    # each access token lives customer_access_token_minutes.
    customer_token_ttl_hours: int = 24 * 30
    customer_access_token_minutes: int = Field(default=15, ge=1)
    # Brute-force protection (auth/throttle.py): failed sign-ins allowed per account and per
    # client address (wrong channel keys too) before a lockout; the first lockout's length,
    # doubled for each further one up to the cap.
    login_max_failures: int = Field(default=5, ge=1)
    address_max_failures: int = Field(default=50, ge=1)
    lockout_seconds: int = Field(default=60, ge=1)
    lockout_max_seconds: int = Field(default=3600, ge=1)
    # Request bodies (http_security.BodySizeLimit): the cap, and the larger one of imports.
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    max_import_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    # Proxies whose X-Forwarded-For and X-Forwarded-Proto are believed: addresses or
    # networks, comma-separated, or "*". Unset, the connecting address is the client.
    trusted_proxies: str | None = None
    sql_echo: bool = False
    # The in-process event dispatcher runs in a background thread unless disabled (tests drain it).
    dispatcher_enabled: bool = True
    # Requests one process lets run at once (see middleware.RequestGate); the rest queue.
    max_concurrent_requests: int = 32
    # Unsafe requests one process lets run at once on SQLite (see middleware.WriterGate).
    sqlite_concurrent_writers: int = 1
    # Outgoing email (the notifier's SMTP sender); messages stay queued while no host is set.
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_sender: str = "Mercato <no-reply@mercato.example>"
    smtp_starttls: bool = True
    smtp_ssl: bool = False
    smtp_timeout_seconds: float = 10.0
    # A checkout still waiting for its payment (3-D Secure never finished, a crash after the
    # stock was held) this long after it started is abandoned and compensated.
    checkout_timeout_seconds: int = Field(default=30 * 60, ge=60)
    # "package.module:factory" returning a pricing.tax.TaxProvider; unset, the tax tables.
    tax_provider: str | None = None

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / SQLITE_FILE).resolve()}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


@contextmanager
def settings_in_force(**values: object) -> Iterator[Settings]:
    """Run with ``values`` (field names of Settings; None unsets) over the environment.

    A command's options must be what every part of the process sees: domain code reads
    ``get_settings()``, and server worker processes read the environment. The values are
    put in the environment (so processes started meanwhile inherit them) and the cached
    settings are read again; both are restored afterwards.
    """
    saved = {name: os.environ.get(_env_name(name)) for name in values}
    try:
        for name, value in values.items():
            _set_env(_env_name(name), None if value is None else str(value))
        get_settings.cache_clear()
        yield get_settings()
    finally:
        for name, previous in saved.items():
            _set_env(_env_name(name), previous)
        get_settings.cache_clear()


def _env_name(field: str) -> str:
    if field not in Settings.model_fields:
        raise KeyError(f"no setting {field!r}")
    return f"MERCATO_{field.upper()}"


def _set_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
