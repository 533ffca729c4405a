"""Delivery settings, read from ``MERCATO_WEBHOOKS_*`` environment variables."""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class WebhookConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MERCATO_WEBHOOKS_", extra="ignore")

    # Attempts (since the last re-send) before a delivery becomes a dead letter.
    max_attempts: int = Field(default=8, ge=1, le=50)
    # Delay before retry n is base * 2**(n-1), capped, then spread by +/- jitter.
    backoff_base_seconds: float = Field(default=10.0, gt=0)
    backoff_cap_seconds: float = Field(default=3600.0, gt=0)
    jitter: float = Field(default=0.2, ge=0, lt=1)
    # One HTTP call may not take longer than this per phase (connect, write, read).
    timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    # How long a claimed delivery belongs to the worker that claimed it.
    lease_seconds: float = Field(default=60.0, gt=0)
    # How often the worker looks for due retries when nothing woke it.
    poll_seconds: float = Field(default=1.0, gt=0)
    batch_size: int = Field(default=50, ge=1, le=1000)
    # Deliveries sent at once by one worker.
    concurrency: int = Field(default=4, ge=1, le=64)
    # Delivered rows older than this are purged (dead letters are kept until re-sent).
    retention_days: int = Field(default=30, ge=1)
    # Run a delivery worker in this API process (turn off to run deliveries elsewhere).
    worker_enabled: bool = True
    # Let subscriptions call loopback, private, link-local and metadata addresses (local
    # development only: in production that lets a subscription reach internal services).
    allow_private_targets: bool = False

    @model_validator(mode="after")
    def _lease_outlives_a_call(self) -> WebhookConfig:
        # A lease that ran out mid-call would let a second worker send the same attempt.
        if self.lease_seconds < 5 * self.timeout_seconds:
            raise ValueError("lease_seconds must be at least 5 * timeout_seconds")
        return self


def private_targets_allowed() -> bool:
    """The setting as the environment gives it now (subscriptions are checked against it)."""
    return WebhookConfig().allow_private_targets
