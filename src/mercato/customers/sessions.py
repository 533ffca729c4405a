"""Customer sessions: a short-lived access token and a refresh token that rotates.

Signing in (or registering) starts a session: an access token (``mct_...``) that lives
``customer_access_token_minutes`` and a refresh token (``mcr_...``) that lives
``customer_token_ttl_hours``. Trading the refresh token in gives the session a new pair
and uses the old refresh token up. A used refresh token presented again means that two
parties hold it (it was copied, or a client lost an answer and retried): the whole
session ends and its owner signs in again, so a stolen refresh token is worth one use at
most and is noticed. Signing out ends the session; changing the password ends every other
session of the account.

Tokens belong to the *account* (the profile holding the password); requests act as its
root profile, so a session survives a merge of the account into another profile.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from mercato import idempotency
from mercato.auth import throttle
from mercato.auth.passwords import (
    PasswordChange,
    hash_password,
    new_token,
    token_hash,
    verify_password,
)
from mercato.customers import profiles
from mercato.customers.models import Customer, CustomerRefreshToken, CustomerToken
from mercato.customers.service import find_account
from mercato.db import Database, locked_row, utcnow
from mercato.errors import Conflict, Unauthorized, ValidationProblem
from mercato.settings import Settings

ACCESS_TOKEN_PREFIX = "mct"
REFRESH_TOKEN_PREFIX = "mcr"


@dataclass(frozen=True)
class Issued:
    access_token: str
    access_expires_at: datetime
    refresh_token: str
    refresh_expires_at: datetime
    customer: Customer  # the root profile the tokens act as


def start(session: Session, account: Customer, settings: Settings) -> Issued:
    """A new session for ``account`` (just registered or signed in)."""
    return _issue(session, account, uuid.uuid4().hex, settings)


def sign_in(
    database: Database, email: str, password: str, address: str, settings: Settings
) -> Issued:
    """A new session for the right password, within the brute-force limits (``throttle``).

    The password is checked with no transaction open (argon2 takes a while).
    """
    email = email.strip().lower()
    keys = throttle.sign_in_keys("customer", email, address, settings)
    with database.transaction() as session:
        refused = throttle.claim(session, keys)
        account = None if refused else find_account(session, email)
        stored_hash = account.password_hash if account is not None else None
    if refused:
        raise refused
    if account is None or not verify_password(stored_hash, password):
        raise Unauthorized("wrong email or password", code="invalid-credentials")
    with database.transaction() as session:
        throttle.succeeded(session, keys)
        return start(session, profiles.get(session, account.id), settings)


def refresh(
    database: Database,
    refresh_token: str,
    settings: Settings,
    answer: Callable[[Issued], dict[str, Any]],
    key: str | None = None,
) -> tuple[dict[str, Any], bool]:
    """``answer`` for the session's next pair of tokens, and whether it is replayed: a retry
    with the same Idempotency-Key (after a lost answer) gets the first answer again rather
    than ending the session as a reuse would."""
    scope = f"customer-token:{token_hash(refresh_token)[:40]}"
    fingerprint = idempotency.request_fingerprint({"refresh_token": refresh_token})
    with database.transaction() as session:
        if key is not None and not idempotency.try_claim(session, scope, key, fingerprint):
            stored = idempotency.lookup(session, scope, key, fingerprint)
            if stored is None:  # the first request was refused meanwhile: retry afresh
                raise Conflict("a request with this Idempotency-Key just ended; retry it")
            return stored.response, True
        row = session.scalar(
            select(CustomerRefreshToken)
            .where(CustomerRefreshToken.token_hash == token_hash(refresh_token))
            .with_for_update()
        )
        outcome = _rotate(session, row, settings)
        if isinstance(outcome, Issued):
            body = answer(outcome)
            if key is not None:
                idempotency.finish(session, scope, key, 200, body)
        elif key is not None:
            # Refusals are not kept: a retry is judged afresh.
            idempotency.forget(session, scope, key)
    # Raised only now: ending a session on reuse must commit.
    if isinstance(outcome, Unauthorized):
        raise outcome
    return body, False


def _rotate(
    session: Session, row: CustomerRefreshToken | None, settings: Settings
) -> Issued | Unauthorized:
    now = utcnow()
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        return Unauthorized(
            "unknown, expired or revoked refresh token", code="invalid-refresh-token"
        )
    if row.used_at is not None:
        end_session(session, row.session_id)
        return Unauthorized(
            "this refresh token was used before, so the session has ended: sign in again",
            code="refresh-token-reused",
        )
    row.used_at = now
    return _issue(session, profiles.get(session, row.customer_id), row.session_id, settings)


def sign_out(session: Session, access_token: str) -> None:
    """End the session of ``access_token``: its access and refresh tokens. An expired or
    revoked token still signs out (a retry, or a client whose access token ran out);
    an unknown one is a 401."""
    row = session.scalar(
        select(CustomerToken).where(CustomerToken.token_hash == token_hash(access_token))
    )
    if row is None:
        raise Unauthorized("unknown customer token", code="invalid-customer-token")
    if row.session_id is None:  # a token from before sessions existed
        row.revoked_at = row.revoked_at or utcnow()
        return
    end_session(session, row.session_id)


def end_session(session: Session, session_id: str) -> None:
    now = utcnow()
    for model in (CustomerToken, CustomerRefreshToken):
        session.execute(
            update(model)
            .where(model.session_id == session_id, model.revoked_at.is_(None))
            .values(revoked_at=now)
        )


def change_password(
    database: Database,
    access_token: str,
    change: PasswordChange,
    address: str,
    settings: Settings,
) -> bool:
    """The signed-in customer changes their password; every other session ends. True when
    this is a retry (same Idempotency-Key and passwords) of a change already made.

    The current password is checked like a sign-in (same limits), so a stolen access
    token cannot be used to guess it.
    """
    with database.transaction() as session:
        token = _valid_access_token(session, access_token)
        account = profiles.get(session, token.customer_id)
        scope = f"customer-password:{account.id}"
        if change.already_made(session, scope):
            return True
        keys = throttle.sign_in_keys(
            "customer", account.email or f"customer:{account.id}", address, settings
        )
        refused = throttle.claim(session, keys)
        stored_hash = account.password_hash
    if refused:
        raise refused
    if not verify_password(stored_hash, change.current):
        raise ValidationProblem.field("body.current_password", "is not your current password")
    new_hash = hash_password(change.new)
    with database.transaction() as session:
        throttle.succeeded(session, keys)
        locked = locked_row(session, Customer, account.id, f"customer {account.id}")
        locked.password_hash = new_hash
        locked.updated_at = utcnow()
        _end_other_sessions(session, account.id, keep=token)
        profiles.record(session, account.id, "profile.password_changed")
        change.remember(session, scope)
    return False


def _valid_access_token(session: Session, access_token: str) -> CustomerToken:
    row = session.scalar(
        select(CustomerToken).where(CustomerToken.token_hash == token_hash(access_token))
    )
    if row is None or row.revoked_at is not None or row.expires_at < utcnow():
        raise Unauthorized("customer token expired or revoked", code="invalid-customer-token")
    return row


def _end_other_sessions(session: Session, account_id: int, *, keep: CustomerToken) -> None:
    now = utcnow()
    others = CustomerToken.id != keep.id
    if keep.session_id is not None:
        others = or_(
            CustomerToken.session_id.is_(None), CustomerToken.session_id != keep.session_id
        )
    session.execute(
        update(CustomerToken)
        .where(
            CustomerToken.customer_id == account_id, CustomerToken.revoked_at.is_(None), others
        )
        .values(revoked_at=now)
    )
    refresh_tokens = update(CustomerRefreshToken).where(
        CustomerRefreshToken.customer_id == account_id, CustomerRefreshToken.revoked_at.is_(None)
    )
    if keep.session_id is not None:
        refresh_tokens = refresh_tokens.where(CustomerRefreshToken.session_id != keep.session_id)
    session.execute(refresh_tokens.values(revoked_at=now))


def _issue(session: Session, account: Customer, session_id: str, settings: Settings) -> Issued:
    now = utcnow()
    access, refresh_token = new_token(ACCESS_TOKEN_PREFIX), new_token(REFRESH_TOKEN_PREFIX)
    access_expires = now + timedelta(minutes=settings.customer_access_token_minutes)
    refresh_expires = now + timedelta(hours=settings.customer_token_ttl_hours)
    session.add_all(
        [
            CustomerToken(
                customer_id=account.id,
                token_hash=token_hash(access),
                session_id=session_id,
                created_at=now,
                expires_at=access_expires,
            ),
            CustomerRefreshToken(
                customer_id=account.id,
                session_id=session_id,
                token_hash=token_hash(refresh_token),
                created_at=now,
                expires_at=refresh_expires,
            ),
        ]
    )
    session.flush()
    return Issued(
        access_token=access,
        access_expires_at=access_expires,
        refresh_token=refresh_token,
        refresh_expires_at=refresh_expires,
        customer=profiles.root_of(session, account),
    )
