"""Runtime settings, read from ``MERCATO_*`` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_data_dir() -> Path:
    return Path.cwd() / ".mercato"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MERCATO_", extra="ignore")

    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    # Secret used to derive token hashes and the cursor signature. Override in production.
    secret_key: str = "mercato-development-secret-change-me"
    # Fernet keys for personal data at rest, comma-separated, current first (privacy.crypto).
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
        return f"sqlite:///{(self.data_dir / 'mercato.db').resolve()}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
