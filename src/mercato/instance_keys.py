"""The installation's own keys: ``MERCATO_SECRET_KEY`` and ``MERCATO_ENCRYPTION_KEYS``.

Neither has a default. A default written in the source is public, and everything derived
from it (the encryption of personal data, gift card code hashes, sealed webhook secrets)
would open for anyone holding a database dump. So:

* ``mercato serve`` refuses to start unless both are set to real values;
* the application refuses to start without a secret key (without encryption keys it then
  derives one from that secret: private, but a deployment sets both);
* ``mercato demo`` makes random keys in its data directory (``keys.env``, mode 0600) on
  its first run and reuses them on every later run.

Losing the keys loses the personal data encrypted under them and every gift card code:
they are kept like the database's backups.
"""

from __future__ import annotations

import binascii
import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet

from mercato.settings import Settings, get_settings

# Values that have been published (the old built-in development secret): never accepted.
PUBLIC_SECRETS = frozenset({"mercato-development-secret-change-me"})
MIN_SECRET_LENGTH = 32
KEYS_FILE = "keys.env"

HOW_TO_MAKE_THEM = (
    "Make them once and keep them with the database's backups (losing them loses the\n"
    "encrypted personal data), then put them in the environment of every mercato process:\n"
    "    (umask 077; mercato generate-keys > mercato.env)\n"
    "    set -a; . ./mercato.env; set +a"
)


class KeysMissing(RuntimeError):
    """The installation's keys are not configured (the message says how to make them)."""


def new_secret_key() -> str:
    """A random value for ``MERCATO_SECRET_KEY`` (384 bits, URL-safe)."""
    return secrets.token_urlsafe(48)


def new_keys() -> dict[str, str]:
    """A fresh pair: ``secret_key`` and ``encryption_keys`` (one Fernet key)."""

    return {"secret_key": new_secret_key(), "encryption_keys": Fernet.generate_key().decode()}


def secret_key(settings: Settings | None = None) -> str:
    """The installation secret, for everything derived from it; KeysMissing if unset or
    public."""
    value = (settings or get_settings()).secret_key
    if not value or value in PUBLIC_SECRETS:
        raise KeysMissing(
            "MERCATO_SECRET_KEY is "
            + ("not set" if not value else "the published development value")
            + ".\n"
            + HOW_TO_MAKE_THEM
        )
    return value


def problems(settings: Settings) -> list[str]:
    """What stops these settings from serving real data (empty: nothing)."""
    found = []
    secret = settings.secret_key
    if not secret:
        found.append("MERCATO_SECRET_KEY is not set")
    elif secret in PUBLIC_SECRETS:
        found.append("MERCATO_SECRET_KEY is the published development value")
    elif len(secret) < MIN_SECRET_LENGTH:
        found.append(f"MERCATO_SECRET_KEY is shorter than {MIN_SECRET_LENGTH} characters")
    if not settings.encryption_keys:
        found.append("MERCATO_ENCRYPTION_KEYS is not set")
    else:
        try:
            parse_keys(settings.encryption_keys)
        except ValueError as exc:
            found.append(str(exc))
    return found


def require_for_serving(settings: Settings) -> None:
    """KeysMissing listing every problem, unless both keys are real."""
    found = problems(settings)
    if found:
        listed = "".join(f"  - {problem}\n" for problem in found)
        raise KeysMissing(f"Mercato will not serve without its keys:\n{listed}{HOW_TO_MAKE_THEM}")


# --- the demo's keys ------------------------------------------------------------------------


def as_env(keys: dict[str, str]) -> str:
    """``keys`` as ``MERCATO_...=value`` lines, the format of the keys file."""
    return "".join(f"MERCATO_{name.upper()}={value}\n" for name, value in keys.items())


def read_env_file(path: Path) -> dict[str, str]:
    """The settings of a ``MERCATO_...=value`` file, by field name."""
    found = {}
    for line in path.read_text().splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and name.startswith("MERCATO_"):
            found[name.removeprefix("MERCATO_").lower()] = value.strip()
    return found


def demo_keys(data_dir: Path, database_file: Path) -> dict[str, str]:
    """The demo's keys, kept in ``data_dir``: made at random on the first run, read back
    on every later one.

    A database without a keys file beside it was encrypted with keys that are gone (or with
    the formerly built-in public key): it cannot be read, and is not given new keys.
    """
    path = data_dir / KEYS_FILE
    if path.exists():
        keys = read_env_file(path)
        if keys.get("secret_key") and keys.get("encryption_keys"):
            return keys
        raise KeysMissing(f"{path} does not hold MERCATO_SECRET_KEY and MERCATO_ENCRYPTION_KEYS")
    if database_file.exists():
        raise KeysMissing(
            f"{database_file} has no {KEYS_FILE} beside it: its personal data cannot be "
            f"read. Remove {data_dir} to start a fresh demo."
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    keys = new_keys()
    # Created readable by the owner only, before anything is written into it.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(as_env(keys))
    return keys


def parse_keys(spec: str) -> list[bytes]:
    """The keys of a ``MERCATO_ENCRYPTION_KEYS`` value, or ValueError naming the bad one."""
    keys = [part.strip().encode() for part in spec.split(",") if part.strip()]
    if not keys:
        raise ValueError("MERCATO_ENCRYPTION_KEYS is set but lists no key")
    for n, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except (ValueError, binascii.Error) as exc:
            raise ValueError(
                f"MERCATO_ENCRYPTION_KEYS key #{n} is not a Fernet key "
                "(32 url-safe base64-encoded bytes)"
            ) from exc
    if len(set(keys)) != len(keys):
        raise ValueError("MERCATO_ENCRYPTION_KEYS lists the same key twice")
    return keys
