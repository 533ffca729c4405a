"""What every screen's module uses: its router, errors as pages, flash messages,
pagination links and the once-only submission of forms.

A screen module (``web/<screen>.py``) builds ``router = page_router()`` and declares each
handler with ``require_page(Permission.X)``; the route-walking test checks that every
back office route names a permission, like the API's matrix does.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import inspect
import json
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Scope

from mercato import idempotency
from mercato.auth.principal import Principal
from mercato.errors import Problem, ValidationProblem, validation_errors
from mercato.web import PREFIX, STATIC_DIR, STATIC_URL
from mercato.web.rendering import gettext_for, is_htmx, render
from mercato.web.session import SignInRequired

FLASH_COOKIE = "mercato_flash"


def page_router() -> APIRouter:
    """A screen's router: under the back office prefix, left out of the API document."""
    return APIRouter(prefix=PREFIX, include_in_schema=False)


# --- after a form: back to a page, with a message -------------------------------------------


def redirect(request: Request, url: str, message: str | None = None) -> Response:
    """See Other after a POST (or htmx's client-side redirect), with a flash message."""
    if is_htmx(request):
        response: Response = Response(status_code=204, headers={"HX-Redirect": url})
    else:
        response = RedirectResponse(url, status_code=303)
    if message:
        encoded = base64.urlsafe_b64encode(message.encode()).decode()
        response.set_cookie(FLASH_COOKIE, encoded, max_age=60, httponly=True, samesite="lax")
    return response


def show(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status_code: int = 200,
) -> HTMLResponse:
    """Render a full page (or the fragment htmx asked for), with any flash message."""
    values = dict(context or {})
    flash = request.cookies.get(FLASH_COOKIE)
    if flash:
        with contextlib.suppress(binascii.Error, UnicodeDecodeError):
            values.setdefault("flash", base64.urlsafe_b64decode(flash.encode()).decode())
    response = render(request, template, values, status_code=status_code)
    if flash:
        response.delete_cookie(FLASH_COOKIE)
    return response


# --- lists: cursors and filters in the URL ---------------------------------------------------


def url_with(request: Request, **changes: Any) -> str:
    """This page's URL with some query parameters changed (None removes one)."""
    params = dict(request.query_params)
    for name, value in changes.items():
        if value is None or value == "":
            params.pop(name, None)
        else:
            params[name] = str(value)
    query = urlencode(params)
    return f"{request.url.path}?{query}" if query else request.url.path


# --- forms: at most once per submission ---------------------------------------------------------


def once(
    session: Session,
    principal: Principal,
    operation: str,
    key: str | None,
    payload: Any,
    produce: Callable[[], Any],
) -> tuple[Any, bool]:
    """Run a form's effect once per idempotency key (the form's hidden field): a double
    click or a resubmitted form gets the first result back. Returns (result, replayed)."""
    scope = idempotency.scope_for(f"web:{operation}", principal)
    answer = idempotency.Idempotent(session, scope, idempotency.check_key(key), payload).run(
        produce, status_code=200
    )
    body = json.loads(bytes(answer.body)) if answer.body else None
    return body, answer.headers.get("Idempotent-Replayed") == "true"


# --- errors: pages for people, problem+json for the API -------------------------------------------


def _is_page(request: Request) -> bool:
    return request.url.path == PREFIX or request.url.path.startswith(PREFIX + "/")


def problem_page(request: Request, problem: Problem) -> HTMLResponse:
    _ = gettext_for(request).gettext
    titles = {
        401: _("Please sign in"),
        403: _("Not allowed"),
        404: _("Not found"),
        409: _("Conflict"),
        422: _("Please check what you entered"),
        429: _("Too many attempts"),
    }
    context = {
        "title": titles.get(problem.status, _("Something went wrong")),
        "problem": problem,
    }
    if is_htmx(request):
        response = render(request, "_problem.html", context, status_code=problem.status)
        response.headers["HX-Retarget"] = "#flash"
        response.headers["HX-Reswap"] = "innerHTML"
        return response
    return render(request, "problem.html", context, status_code=problem.status)


def sign_in_redirect(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    url = f"{PREFIX}/login?{urlencode({'next': target})}"
    if is_htmx(request):
        return Response(status_code=401, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


class CachedStatic(StaticFiles):
    """Static files with caching headers: a year for versioned URLs (``asset()`` adds the
    content hash), an hour otherwise."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code == 200:
            versioned = b"v=" in scope.get("query_string", b"")
            response.headers["Cache-Control"] = (
                "public, max-age=31536000, immutable" if versioned else "public, max-age=3600"
            )
        return response


async def _call(handler: Callable[..., Any], request: Request, exc: Exception) -> Response:
    answer = handler(request, exc)
    if inspect.isawaitable(answer):
        answer = await answer
    assert isinstance(answer, Response)
    return answer


def install(app: FastAPI) -> None:
    """Serve the static files and answer the back office's errors with pages."""
    app.mount(STATIC_URL, CachedStatic(directory=STATIC_DIR), name="web-static")
    api_problem = app.exception_handlers[Problem]
    api_validation = app.exception_handlers[RequestValidationError]

    async def on_problem(request: Request, exc: Exception) -> Response:
        if _is_page(request) and isinstance(exc, Problem):
            return problem_page(request, exc)
        return await _call(api_problem, request, exc)

    async def on_validation(request: Request, exc: Exception) -> Response:
        if _is_page(request) and isinstance(exc, RequestValidationError):
            errors = validation_errors(exc.errors())
            detail = "; ".join(f"{e['field']}: {e['reason']}" for e in errors[:5])
            return problem_page(request, ValidationProblem(detail, errors=errors))
        return await _call(api_validation, request, exc)

    async def on_sign_in(request: Request, exc: Exception) -> Response:
        if _is_page(request):
            return sign_in_redirect(request)
        return JSONResponse({"detail": "sign in"}, status_code=401)

    api_http = app.exception_handlers[StarletteHTTPException]

    async def on_http(request: Request, exc: Exception) -> Response:
        if _is_page(request) and isinstance(exc, StarletteHTTPException):
            return problem_page(request, Problem(str(exc.detail), status=exc.status_code))
        return await _call(api_http, request, exc)

    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(SignInRequired, on_sign_in)
