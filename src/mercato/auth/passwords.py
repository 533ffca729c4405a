from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.orm import Session

from mercato import idempotency
from mercato.settings import get_settings

_hasher = PasswordHasher()
# Verifying against this keeps the time of "unknown user" equal to "wrong password".
_DUMMY_HASH = _hasher.hash("mercato-timing-equaliser")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def new_token(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def token_hash(token: str) -> str:
    """Tokens are random 256-bit secrets, so a plain SHA-256 is a safe lookup key."""
    return hashlib.sha256(token.encode()).hexdigest()


def keyed_digest(label: str, *values: str) -> str:
    """An HMAC of ``values`` under a key derived from the server's secret key. Stored in place
    of a plain hash wherever the values may be guessable (an email, a password): without
    the secret key nobody can test guesses against it."""

    key = hashlib.sha256(f"mercato-{label}\0{get_settings().secret_key}".encode()).digest()
    return hmac.new(key, "\0".join(values).encode(), hashlib.sha256).hexdigest()


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


@dataclass(frozen=True)
class PasswordChange:
    """A password change as asked, with its Idempotency-Key: a retry of a change that was
    made gets the same answer instead of "wrong current password"."""

    current: str
    new: str
    idempotency_key: str | None = None

    @property
    def fingerprint(self) -> str:
        # Keyed: the stored fingerprint must not let anyone test password guesses.
        return keyed_digest("password-change", self.current, self.new)

    def already_made(self, session: Session, scope: str) -> bool:
        if self.idempotency_key is None:
            return False
        stored = idempotency.lookup(session, scope, self.idempotency_key, self.fingerprint)
        return stored is not None

    def remember(self, session: Session, scope: str) -> None:
        if self.idempotency_key is not None:
            idempotency.remember(session, scope, self.idempotency_key, self.fingerprint, 204, None)
