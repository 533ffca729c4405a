"""Subscription secrets and the ``Mercato-Signature`` header.

Signing needs the secret itself (an HMAC key), so it cannot be stored as a one-way hash
the way API tokens are. It is stored sealed instead: encrypted and authenticated with
Fernet (AES-128-CBC + HMAC-SHA256) under a key derived from ``MERCATO_SECRET_KEY`` for this
one purpose. A copy of the database (a backup, a replica, a SQL console) does not reveal
any secret; the API shows a secret once, when it is created or rotated, and afterwards
only its last four characters. Changing ``MERCATO_SECRET_KEY`` makes the stored secrets
unreadable: deliveries then fail with an error saying so until each secret is rotated.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable

from cryptography.fernet import Fernet, InvalidToken

from mercato import instance_keys

SECRET_PREFIX = "whsec_"
SIGNATURE_SCHEME = "v1"
# Receivers should refuse signatures older (or newer) than this many seconds.
DEFAULT_TOLERANCE = 300


def generate_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def secret_hint(secret: str) -> str:
    return f"{SECRET_PREFIX}...{secret[-4:]}"


def _fernet(secret_key: str | None) -> Fernet:
    master = secret_key if secret_key is not None else instance_keys.secret_key()
    key = hmac.new(master.encode(), b"mercato/webhooks/signing-secret", "sha256").digest()
    return Fernet(base64.urlsafe_b64encode(key))


def seal(secret: str, secret_key: str | None = None) -> str:
    return _fernet(secret_key).encrypt(secret.encode()).decode()


def unseal(sealed: str, secret_key: str | None = None) -> str | None:
    """The secret, or None when it was sealed under another ``MERCATO_SECRET_KEY``."""
    try:
        return _fernet(secret_key).decrypt(sealed.encode()).decode()
    except InvalidToken:
        return None


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``"<timestamp>.<raw body>"`` keyed with the secret's UTF-8 bytes."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secrets_: Iterable[str], timestamp: int, body: bytes) -> str:
    """``t=<ts>,v1=<hex>``, with one ``v1`` per secret (two while a rotation is in grace)."""
    parts = [f"t={timestamp}"]
    parts += [f"{SIGNATURE_SCHEME}={signature(s, timestamp, body)}" for s in secrets_]
    return ",".join(parts)


def verify(
    secret: str,
    body: bytes,
    header: str,
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> bool:
    """What a receiver does: the timestamp is fresh and one ``v1`` matches the body.

    The comparison is constant-time; a signature older than ``tolerance`` seconds is
    refused even when it matches (a replayed request).
    """
    timestamp: int | None = None
    candidates: list[str] = []
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == SIGNATURE_SCHEME:
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        return False
    expected = signature(secret, timestamp, body)
    return any(hmac.compare_digest(expected, c) for c in candidates)
