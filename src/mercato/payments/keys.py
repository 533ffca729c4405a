"""Secrets of the payments domain, derived from ``Settings.secret_key``.

One secret per purpose (HMAC-SHA256 of a purpose label under the installation secret), so
that a leaked webhook secret says nothing about the gift card code key. Changing
``MERCATO_SECRET_KEY`` changes every derived secret: provider webhook secrets must then be
configured again, and gift card codes no longer match their stored hashes, so the secret
key of an installation that has issued gift cards must be kept.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from cryptography.fernet import Fernet, InvalidToken

from mercato import instance_keys


def derive(purpose: str, secret_key: str | None = None) -> bytes:
    secret = secret_key if secret_key is not None else instance_keys.secret_key()
    return hmac.new(secret.encode(), f"mercato/payments/{purpose}".encode(), "sha256").digest()


def webhook_secret(provider: str, secret_key: str | None = None) -> bytes:
    """The secret a provider signs its webhooks with (configured in its dashboard)."""
    return derive(f"webhook/{provider}", secret_key)


def code_hash(normalized_code: str, secret_key: str | None = None) -> str:
    """Keyed hash of a gift card code: a copy of the table alone does not reveal codes."""
    key = derive("gift-card-code", secret_key)
    return hmac.new(key, normalized_code.encode(), hashlib.sha256).hexdigest()


def _fernet(secret_key: str | None) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(derive("gift-card-seal", secret_key)))


def seal(value: str, secret_key: str | None = None) -> str:
    """Encrypt a value kept only so that a retried request can be answered again."""
    return _fernet(secret_key).encrypt(value.encode()).decode()


def unseal(token: str, secret_key: str | None = None) -> str | None:
    try:
        return _fernet(secret_key).decrypt(token.encode()).decode()
    except InvalidToken:
        return None
