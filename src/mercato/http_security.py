"""Protections around every HTTP request: body size limits, security headers, and which
proxies are believed about the client's address and scheme."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from mercato.auth.throttle import AddressGuard, Limits
from mercato.errors import Problem, problem_response
from mercato.settings import Settings

# Bodies larger than the default cap, by path: files staff upload on purpose.
LARGE_BODY_PATHS = ("/v1/catalog/import", "/admin/catalog/import")
HSTS = "max-age=31536000"
# An API answer is data: it loads nothing and is never framed.
API_POLICY = "default-src 'none'; frame-ancestors 'none'"
# Pages load only what the server itself serves; inline scripts only by hash.
PAGE_POLICY = (
    "default-src 'self'; script-src 'self'{scripts}; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)
_UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def install(app: FastAPI, settings: Settings) -> None:
    """Add the middleware (outermost last) and the per-process channel-key guard."""
    larger = dict.fromkeys(LARGE_BODY_PATHS, settings.max_import_bytes)
    app.add_middleware(BodySizeLimit, limit=settings.max_body_bytes, larger=larger)
    app.add_middleware(SecurityHeaders)
    if settings.trusted_proxies:
        hosts = [h.strip() for h in settings.trusted_proxies.split(",") if h.strip()]
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=hosts)
    app.state.channel_key_guard = AddressGuard(
        Limits.from_settings(settings, settings.address_max_failures)
    )


def client_address(request: Request) -> str:
    """The caller's address (a trusted proxy's X-Forwarded-For, see ``install``)."""
    return request.client.host if request.client else "unknown"


# --- request bodies -------------------------------------------------------------------------


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` once a body passes its limit. An ``HTTPException``, so that
    FastAPI's body reading passes it on and the problem handler answers it."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            413,
            detail=f"the request body is larger than {limit} bytes",
            headers={"Connection": "close"},
        )


class BodySizeLimit:
    """Caps every request body (``larger`` paths have their own cap).

    A declared ``Content-Length`` above the cap is refused before the application runs;
    otherwise the bytes are counted as they arrive, so a body without a length (chunked)
    or with a false one is cut off at the cap all the same and never read whole.
    """

    def __init__(self, app: ASGIApp, limit: int, larger: Mapping[str, int]) -> None:
        self.app = app
        self.limit = limit
        self.larger = dict(larger)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.larger.get(scope["path"], self.limit)
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _too_large(limit, scope, receive, send)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await _too_large(limit, scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    value = Headers(scope=scope).get("content-length")
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


async def _too_large(limit: int, scope: Scope, receive: Receive, send: Send) -> None:
    exc = BodyTooLarge(limit)
    problem = Problem(
        str(exc.detail),
        code="payload-too-large",
        status=413,
        title="Payload too large",
        headers=dict(exc.headers or {}),
    )
    await problem_response(problem, Request(scope))(scope, receive, send)


# --- response headers -----------------------------------------------------------------------


class SecurityHeaders:
    """Headers every answer carries.

    * ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer``,
      ``X-Frame-Options: DENY``, and a ``Content-Security-Policy``: none at all for API
      answers, same-origin for pages (a page may set its own, see :func:`page`);
    * ``Cache-Control: no-store`` on answers to requests that carry credentials (a bearer
      token or a channel key) and to unsafe requests (a sign-in's answer holds a token);
    * ``Strict-Transport-Security`` when the request came over HTTPS (as the server, or a
      trusted proxy's ``X-Forwarded-Proto``, says).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        private = _carries_credentials(scope) or scope["method"] in _UNSAFE_METHODS
        https = scope.get("scheme") == "https"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                _add_headers(MutableHeaders(scope=message), private=private, https=https)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _carries_credentials(scope: Scope) -> bool:
    return any(name in (b"authorization", b"x-channel-key") for name, _ in scope["headers"])


def _add_headers(headers: MutableHeaders, *, private: bool, https: bool) -> None:
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "no-referrer"
    headers["X-Frame-Options"] = "DENY"
    if "content-security-policy" not in headers:
        is_page = headers.get("content-type", "").startswith("text/html")
        headers["Content-Security-Policy"] = PAGE_POLICY.format(scripts="") if is_page else (
            API_POLICY
        )
    if private:
        headers["Cache-Control"] = "no-store"
    if https:
        headers["Strict-Transport-Security"] = HSTS


def page(response: HTMLResponse) -> HTMLResponse:
    """A page the server wrote, whose inline scripts the policy allows by their hashes
    (nothing else inline runs)."""
    html = bytes(response.body).decode()
    hashes = "".join(
        f" 'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'"
        for script in _INLINE_SCRIPT.findall(html)
    )
    response.headers["Content-Security-Policy"] = PAGE_POLICY.format(scripts=hashes)
    return response
