"""The installation's keys: nothing is ever encrypted or derived with a published key.

``mercato serve`` refuses to start without a real ``MERCATO_SECRET_KEY`` and
``MERCATO_ENCRYPTION_KEYS`` and says how to make them; the application refuses to start
without a secret key; ``mercato generate-keys`` makes a pair.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from mercato import cli, crypto, instance_keys
from mercato.app import create_app
from mercato.payments import keys as payment_keys
from mercato.settings import Settings, get_settings, settings_in_force
from mercato.webhooks import signing

PUBLISHED = "mercato-development-secret-change-me"
GOOD_SECRET = "s" * 40


@pytest.fixture
def no_keys(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("MERCATO_SECRET_KEY", raising=False)
    monkeypatch.delenv("MERCATO_ENCRYPTION_KEYS", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _serve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> tuple[Any, list[int]]:
    """``mercato serve`` up to the point where it would listen: the result, and the ports
    it would have served on."""
    served: list[int] = []
    monkeypatch.setattr(cli, "_serve", lambda host, port, workers: served.append(port))
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    return CliRunner().invoke(cli.app, ["serve", "--database-url", url], env=env), served


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({}, ["MERCATO_SECRET_KEY is not set", "MERCATO_ENCRYPTION_KEYS is not set"]),
        ({"MERCATO_SECRET_KEY": PUBLISHED}, ["published development value"]),
        ({"MERCATO_SECRET_KEY": "short"}, ["shorter than 32 characters"]),
        ({"MERCATO_SECRET_KEY": GOOD_SECRET}, ["MERCATO_ENCRYPTION_KEYS is not set"]),
        (
            {"MERCATO_SECRET_KEY": GOOD_SECRET, "MERCATO_ENCRYPTION_KEYS": "not-a-key"},
            ["is not a Fernet key"],
        ),
    ],
)
def test_serve_refuses_to_start_without_real_keys(
    env: dict[str, str],
    named: list[str],
    no_keys: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    result, served = _serve(tmp_path, monkeypatch, env)
    assert result.exit_code == 2, result.output
    for text in named:
        assert text in result.output
    assert "mercato generate-keys" in result.output
    assert served == []
    assert not (tmp_path / "shop.db").exists()  # refused before touching the database


@pytest.mark.slow
def test_serve_starts_with_generated_keys(
    no_keys: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = CliRunner().invoke(cli.app, ["generate-keys"])
    assert made.exit_code == 0, made.output
    env = dict(line.split("=", 1) for line in made.output.splitlines())
    assert set(env) == {"MERCATO_SECRET_KEY", "MERCATO_ENCRYPTION_KEYS"}
    result, served = _serve(tmp_path, monkeypatch, env)
    assert result.exit_code == 0, result.output
    assert served == [8000]
    assert (tmp_path / "shop.db").exists()
    again = CliRunner().invoke(cli.app, ["generate-keys"]).output
    assert again != made.output  # random every time


def test_the_application_refuses_to_start_without_a_secret_key(
    no_keys: None, tmp_path: Path
) -> None:
    for secret in (None, "", PUBLISHED):
        settings = Settings(data_dir=tmp_path, secret_key=secret, dispatcher_enabled=False)
        with pytest.raises(instance_keys.KeysMissing, match="mercato generate-keys"):
            create_app(settings)
    assert not list(tmp_path.iterdir())


def test_nothing_derives_a_key_from_a_published_or_missing_secret(no_keys: None) -> None:
    for secret in (None, PUBLISHED):
        with settings_in_force(secret_key=secret):
            with pytest.raises(instance_keys.KeysMissing):
                crypto.keyring().encrypt("Aiko Tanaka")
            with pytest.raises(instance_keys.KeysMissing):
                payment_keys.code_hash("GIFT-1234")
            with pytest.raises(instance_keys.KeysMissing):
                payment_keys.webhook_secret("test_gateway")
            with pytest.raises(instance_keys.KeysMissing):
                signing.seal("whsec_1")


def test_configured_encryption_keys_need_no_secret_to_encrypt(no_keys: None) -> None:
    keys = instance_keys.new_keys()
    with settings_in_force(encryption_keys=keys["encryption_keys"]):
        token = crypto.keyring().encrypt("Aiko Tanaka")
        assert crypto.keyring().decrypt(token) == "Aiko Tanaka"
    with crypto.using_keys(keys["encryption_keys"]) as ring:
        assert ring.decrypt(token) == "Aiko Tanaka"


def test_settings_in_force_are_restored_afterwards(
    monkeypatch: pytest.MonkeyPatch, no_keys: None
) -> None:
    monkeypatch.setenv("MERCATO_DATABASE_URL", "sqlite:///elsewhere.db")
    get_settings.cache_clear()
    before = get_settings()
    with settings_in_force(database_url=None, checkout_timeout_seconds=600) as settings:
        assert settings is get_settings()
        assert settings.database_url is None and settings.checkout_timeout_seconds == 600
    assert get_settings().database_url == "sqlite:///elsewhere.db"
    assert get_settings().checkout_timeout_seconds == before.checkout_timeout_seconds
    with pytest.raises(KeyError), settings_in_force(no_such_setting=1):
        pass
