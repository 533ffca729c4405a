"""Signing in and out, and the signed-in user's own settings (password, language)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from mercato.auth import service as auth_service
from mercato.auth.passwords import PasswordChange
from mercato.auth.schemas import StaffUserOut
from mercato.deps import get_database
from mercato.errors import Problem, Unauthorized, ValidationProblem
from mercato.http_security import client_address
from mercato.settings import Settings
from mercato.web import PREFIX
from mercato.web.i18n import LANGUAGES
from mercato.web.navigation import first_screen
from mercato.web.pages import page_router, redirect, show
from mercato.web.rendering import gettext_for, render
from mercato.web.session import (
    LANGUAGE_COOKIE,
    SignedIn,
    check_login_csrf,
    end_session,
    login_csrf_token,
    safe_next,
    session_token,
    set_cookie,
    start_session,
)

router = page_router()

YEAR = 365 * 24 * 3600


def _login_page(
    request: Request, next_url: str, email: str = "", error: str | None = None, status: int = 200
) -> HTMLResponse:
    response = HTMLResponse("")
    token = login_csrf_token(request, response)
    page = render(
        request,
        "login.html",
        {"next": next_url, "email": email, "error": error, "login_csrf": token},
        status_code=status,
    )
    for name, value in response.headers.items():
        if name == "set-cookie":
            page.headers.append(name, value)
    return page


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str | None = None) -> HTMLResponse:
    return _login_page(request, safe_next(next))


@router.post("/login", response_class=HTMLResponse, dependencies=[Depends(check_login_csrf)])
def login(
    request: Request,
    email: Annotated[str, Form(max_length=254)],
    password: Annotated[str, Form(max_length=200)],
    next: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """The API's sign-in (same lockout), answered with a session cookie."""
    settings: Settings = request.app.state.settings
    database = get_database(request)
    _ = gettext_for(request).gettext
    try:
        token, _row = auth_service.login(
            database, email, password, client_address(request), settings
        )
    except Unauthorized:
        return _login_page(
            request, safe_next(next), email, _("Wrong email or password."), status=401
        )
    except Problem as problem:
        if problem.status != 429:
            raise
        wait = problem.headers.get("Retry-After", "")
        message = _("Too many failed attempts. Try again in %(seconds)s seconds.", seconds=wait)
        return _login_page(request, safe_next(next), email, message, status=429)
    with database.read() as session:
        principal = auth_service.authenticate(session, token)
        user = auth_service.get_user(session, principal.id or 0)
        saved_language = user.locale
    target = safe_next(next)
    if target == PREFIX + "/":
        target = first_screen(principal)
    response = RedirectResponse(target, status_code=303)
    start_session(request, response, token, max_age=settings.token_ttl_hours * 3600)
    if saved_language:
        set_cookie(request, response, LANGUAGE_COOKIE, saved_language, max_age=YEAR)
    return response


@router.post("/logout")
def logout(request: Request, principal: SignedIn) -> Response:
    token = session_token(request)
    if token:
        with get_database(request).transaction() as session:
            auth_service.logout(session, token)
    response = RedirectResponse(f"{PREFIX}/login", status_code=303)
    end_session(response)
    return response


@router.get("/account", response_class=HTMLResponse)
def account(request: Request, principal: SignedIn) -> HTMLResponse:
    with get_database(request).read() as session:
        user = StaffUserOut.model_validate(auth_service.get_user(session, principal.id or 0))
    return show(request, "account.html", {"user": user, "errors": {}})


@router.post("/account/language")
def change_language(
    request: Request,
    principal: SignedIn,
    language: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    choice = language if language in LANGUAGES else None
    with get_database(request).transaction() as session:
        auth_service.set_own_locale(session, principal, choice)
    response = redirect(request, f"{PREFIX}/account", gettext_for(request).gettext("Saved."))
    if choice:
        set_cookie(request, response, LANGUAGE_COOKIE, choice, max_age=YEAR)
    else:
        response.delete_cookie(LANGUAGE_COOKIE, path="/")
    return response


@router.post("/account/password", response_class=HTMLResponse)
def change_password(
    request: Request,
    principal: SignedIn,
    current_password: Annotated[str, Form(max_length=200)],
    new_password: Annotated[str, Form(max_length=200)],
    idempotency_key: Annotated[str | None, Form(max_length=200)] = None,
) -> Response:
    """As ``POST /v1/auth/password``: other sessions end, this one goes on."""
    settings: Settings = request.app.state.settings
    _ = gettext_for(request).gettext
    errors: dict[str, str] = {}
    if len(new_password) < 10:
        errors["new_password"] = _("At least 10 characters.")
    else:
        try:
            auth_service.change_own_password(
                get_database(request),
                principal,
                PasswordChange(current_password, new_password, idempotency_key),
                client_address(request),
                settings,
            )
        except ValidationProblem:
            errors["current_password"] = _("This is not your current password.")
    if errors:
        with get_database(request).read() as session:
            user = StaffUserOut.model_validate(auth_service.get_user(session, principal.id or 0))
        return show(request, "account.html", {"user": user, "errors": errors}, status_code=422)
    return redirect(request, f"{PREFIX}/account", _("Your password was changed."))
