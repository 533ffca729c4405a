"""Templates: one Jinja environment, rendered in the signed-in user's language."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from functools import cache
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from mercato import http_security
from mercato.auth.principal import Principal
from mercato.web import STATIC_DIR, STATIC_URL, TEMPLATE_DIR
from mercato.web.formatting import Formats
from mercato.web.i18n import LANGUAGES, Gettext, negotiate
from mercato.web.navigation import ROLE_LABELS, screens_for
from mercato.web.session import LANGUAGE_COOKIE, csrf_token_for, session_token


@cache
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATE_DIR),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # gettext and ngettext come with each render (the user's language); new style lets a
    # translation move its placeholders.
    env.install_null_translations(newstyle=True)  # type: ignore[attr-defined]
    env.globals["asset"] = asset
    env.globals["new_key"] = lambda: uuid.uuid4().hex
    return env


@cache
def asset(path: str) -> str:
    """A static file's URL with its content hash, so it can be cached for a year."""
    digest = hashlib.sha256((STATIC_DIR / path).read_bytes()).hexdigest()[:12]
    return f"{STATIC_URL}/{path}?v={digest}"


def language_of(request: Request) -> str:
    return negotiate(request.cookies.get(LANGUAGE_COOKIE), request.headers.get("accept-language"))


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def base_context(request: Request) -> dict[str, Any]:
    language = language_of(request)
    principal: Principal | None = getattr(request.state, "principal", None)
    token = session_token(request)
    formats = Formats(language)
    return {
        "request": request,
        "principal": principal,
        "language": language,
        "languages": LANGUAGES,
        "screens": screens_for(principal) if principal else [],
        "csrf_token": csrf_token_for(request, token) if token and principal else "",
        "fmt": formats,
        "htmx": is_htmx(request),
        "active": "",
        "role_labels": ROLE_LABELS,
        "flash": None,
        **formats.filters(),
        **Gettext(language).callables(),
    }


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    values = base_context(request)
    values.update(context or {})
    html = environment().get_template(template).render(values)
    response = HTMLResponse(html, status_code=status_code, headers=dict(headers or {}))
    return http_security.page(response)


def gettext_for(request: Request) -> Gettext:
    """For messages a page composes in Python (flash messages, errors)."""
    return Gettext(language_of(request))
