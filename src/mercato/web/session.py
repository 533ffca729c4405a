"""Signing staff in with a cookie, and CSRF protection for every state-changing request.

The cookie holds a staff session token issued by ``auth.service.login``, the same kind
of token the API's bearer header carries: the lockout, expiry, revocation on password
change and deactivation are the API's. It is HttpOnly, SameSite=Lax, and Secure when the
request came over HTTPS.

CSRF: every unsafe request (a form or an htmx call) must carry a token, in the
``csrf_token`` field or the ``X-CSRF-Token`` header. Signed in, it is an HMAC of the
session token under the installation secret (nothing to store); on the sign-in form,
before there is a session, it must match a random value in a cookie of its own.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import Response

from mercato import instance_keys
from mercato.auth import service as auth_service
from mercato.auth.permissions import Permission
from mercato.auth.principal import Principal
from mercato.deps import get_database
from mercato.errors import Forbidden, Unauthorized
from mercato.settings import Settings
from mercato.web import PREFIX

SESSION_COOKIE = "mercato_staff"
LOGIN_CSRF_COOKIE = "mercato_login_csrf"
LANGUAGE_COOKIE = "mercato_lang"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class SignInRequired(Exception):
    """No valid session: the page answers with the sign-in page (or htmx's redirect)."""


class CsrfRefused(Forbidden):
    code = "csrf-refused"
    title = "The form expired"


def _secret(request: Request) -> bytes:
    settings: Settings = request.app.state.settings
    return instance_keys.secret_key(settings).encode()


def csrf_token_for(request: Request, session_token: str) -> str:
    digest = hmac.new(_secret(request), b"csrf:" + session_token.encode(), hashlib.sha256)
    return digest.hexdigest()


def is_https(request: Request) -> bool:
    return request.url.scheme == "https"


def set_cookie(
    request: Request, response: Response, name: str, value: str, **extra: object
) -> None:
    response.set_cookie(
        name,
        value,
        httponly=True,
        samesite="lax",
        secure=is_https(request),
        path="/",
        **extra,  # type: ignore[arg-type]
    )


def start_session(request: Request, response: Response, token: str, max_age: int) -> None:
    set_cookie(request, response, SESSION_COOKIE, token, max_age=max_age)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/")


def end_session(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/")


def login_csrf_token(request: Request, response: Response) -> str:
    """The sign-in form's token: the cookie's value, made now if there is none."""
    value = request.cookies.get(LOGIN_CSRF_COOKIE)
    if not value:
        value = secrets.token_urlsafe(24)
        set_cookie(request, response, LOGIN_CSRF_COOKIE, value, max_age=3600)
    return value


async def _submitted_csrf(request: Request) -> str:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        value = form.get(CSRF_FIELD)
        return value if isinstance(value, str) else ""
    return ""


async def check_login_csrf(request: Request) -> None:
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    submitted = await _submitted_csrf(request)
    if not expected or not hmac.compare_digest(expected, submitted):
        raise CsrfRefused("the sign-in form expired: load it again")


def session_token(request: Request) -> str | None:
    token = request.cookies.get(SESSION_COOKIE)
    return token or None


async def signed_in(request: Request) -> Principal:
    """The staff user behind the session cookie; for unsafe requests, the CSRF token too."""
    token = session_token(request)
    if token is None:
        raise SignInRequired()
    with get_database(request).read() as session:
        try:
            principal = auth_service.authenticate(session, token)
        except Unauthorized as exc:
            raise SignInRequired() from exc
    if request.method in UNSAFE_METHODS:
        submitted = await _submitted_csrf(request)
        if not hmac.compare_digest(csrf_token_for(request, token), submitted):
            raise CsrfRefused("the page expired: load it again and repeat what you did")
    request.state.principal = principal
    return principal


SignedIn = Annotated[Principal, Depends(signed_in)]


def require_page(permission: Permission) -> Any:
    """A page dependency: signed in, and the role holds ``permission``."""

    def check(principal: SignedIn) -> Principal:
        principal.require(permission)
        return principal

    check.__name__ = f"require_{permission.value.replace(':', '_')}"
    return Depends(check)


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a back office path, never another site."""
    if target and target.startswith(PREFIX) and not target.startswith("//") and "\\" not in target:
        return target
    return PREFIX + "/"
