"""RFC 9457 problem details: every error Mercato returns has this shape.

A problem carries a stable ``code`` (also encoded in ``type``) that clients switch on,
a human ``title``/``detail`` and, for validation problems, ``errors``: a list of
``{"field": "body.variants[0].sku", "reason": "..."}`` naming each bad field.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

PROBLEM_BASE = "https://mercato.dev/problems/"
PROBLEM_CONTENT_TYPE = "application/problem+json"


class FieldError(dict[str, str]):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(field=field, reason=reason)


class Problem(Exception):
    status: int = 400
    code: str = "bad-request"
    title: str = "Bad request"

    def __init__(
        self,
        detail: str | None = None,
        *,
        errors: Sequence[FieldError] | None = None,
        code: str | None = None,
        status: int | None = None,
        title: str | None = None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.errors = list(errors or [])
        if code:
            self.code = code
        if status:
            self.status = status
        if title:
            self.title = title
        self.extra = extra or {}
        self.headers = headers or {}

    def body(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": PROBLEM_BASE + self.code,
            "title": self.title,
            "status": self.status,
            "code": self.code,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        if self.errors:
            body["errors"] = self.errors
        body.update(self.extra)
        return body


class ValidationProblem(Problem):
    status = 422
    code = "validation-error"
    title = "The request is not valid"

    @classmethod
    def field(cls, field: str, reason: str) -> ValidationProblem:
        return cls(f"{field}: {reason}", errors=[FieldError(field, reason)])


class Unauthorized(Problem):
    status = 401
    code = "unauthorized"
    title = "Authentication required"


class Forbidden(Problem):
    status = 403
    code = "forbidden"
    title = "Permission denied"


class NotFound(Problem):
    status = 404
    code = "not-found"
    title = "Not found"


class Conflict(Problem):
    status = 409
    code = "conflict"
    title = "Conflict"


class UnprocessableState(Problem):
    """The request is well formed but the object's state does not allow it."""

    status = 409
    code = "invalid-state"
    title = "Not allowed in the current state"


def _location(loc: Sequence[Any]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += ("." if path else "") + str(part)
    return path


def validation_errors(errors: Sequence[Any]) -> list[FieldError]:
    found: list[FieldError] = []
    for err in errors:
        loc = list(err.get("loc", ()))
        # FastAPI adds the model-field tag for tagged unions and the body root; keep them readable.
        reason = str(err.get("msg", "invalid"))
        if err.get("type") == "extra_forbidden":
            reason = "unknown field"
        found.append(FieldError(_location(loc), reason))
    return found


def problem_response(problem: Problem, request: Request | None = None) -> JSONResponse:
    instance = request.url.path if request is not None else None
    return JSONResponse(
        problem.body(instance),
        status_code=problem.status,
        media_type=PROBLEM_CONTENT_TYPE,
        headers=problem.headers or None,
    )


_HTTP_CODES = {
    400: ("bad-request", "Bad request"),
    401: ("unauthorized", "Authentication required"),
    403: ("forbidden", "Permission denied"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    406: ("not-acceptable", "Not acceptable"),
    409: ("conflict", "Conflict"),
    413: ("payload-too-large", "Payload too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("validation-error", "The request is not valid"),
    429: ("too-many-requests", "Too many requests"),
}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc, request)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = validation_errors(exc.errors())
        detail = "; ".join(f"{e['field']}: {e['reason']}" for e in errors[:5])
        return problem_response(ValidationProblem(detail, errors=errors), request)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code, title = _HTTP_CODES.get(exc.status_code, ("http-error", "HTTP error"))
        detail = exc.detail if isinstance(exc.detail, str) else title
        problem = Problem(detail, code=code, status=exc.status_code, title=title)
        problem.headers = dict(exc.headers or {})
        return problem_response(problem, request)

    @app.exception_handler(IntegrityError)
    async def _integrity(request: Request, exc: IntegrityError) -> JSONResponse:
        violation = unique_violation(exc)
        if violation is None:
            # A broken foreign key or check is a defect, not the client's conflict.
            raise exc
        log.info("unique constraint conflict on %s %s", violation.table, violation.columns)
        return problem_response(conflict_from(violation), request)

    # Added first, so it sits innermost of the middleware: request ids and gates still
    # wrap the 500 it produces.
    app.add_middleware(ProblemFallback)


# --- database conflicts -------------------------------------------------------------------

# PostgreSQL: 'Key (sku)=(ABC-1) already exists.'; SQLite: 'UNIQUE constraint failed: t.a, t.b'
_PG_KEY = re.compile(r"Key \((?P<columns>.+?)\)=\((?P<values>.*)\) already exists")
_SQLITE_UNIQUE = "UNIQUE constraint failed: "


@dataclass(frozen=True)
class UniqueViolation:
    """Which unique constraint an INSERT or UPDATE broke (values only where the database
    reports them: PostgreSQL does, SQLite does not)."""

    table: str | None
    columns: tuple[str, ...]
    values: tuple[str, ...] | None = None


def unique_violation(exc: IntegrityError) -> UniqueViolation | None:
    """The unique constraint behind ``exc``, or None for any other integrity error."""
    orig = exc.orig
    if getattr(orig, "sqlstate", None) == "23505":
        diag = getattr(orig, "diag", None)
        table = getattr(diag, "table_name", None)
        match = _PG_KEY.search(getattr(diag, "message_detail", None) or str(orig))
        if match is None:
            return UniqueViolation(table, ())
        columns = tuple(c.strip() for c in match["columns"].split(","))
        values = tuple(v.strip() for v in match["values"].split(","))
        return UniqueViolation(table, columns, values if len(values) == len(columns) else None)
    text = str(orig)
    if text.startswith(_SQLITE_UNIQUE):
        qualified = [c.strip() for c in text[len(_SQLITE_UNIQUE) :].split(",")]
        table = qualified[0].partition(".")[0] if qualified and "." in qualified[0] else None
        return UniqueViolation(table, tuple(c.rpartition(".")[2] for c in qualified))
    return None


def conflict_from(violation: UniqueViolation) -> Conflict:
    """A 409 for a unique constraint that a check-then-insert lost to a concurrent request.

    Column names double as the request's field names; the tables themselves stay private.
    """
    if not violation.columns:
        return Conflict("the request conflicts with existing data", code="duplicate")
    names = ", ".join(violation.columns)
    single = violation.columns[0].replace("_", "-") if len(violation.columns) == 1 else None
    return Conflict(
        f"{names} already taken",
        code=f"duplicate-{single}" if single else "duplicate",
        errors=[FieldError(f"body.{c}", "already exists") for c in violation.columns],
    )


# --- the last resort ----------------------------------------------------------------------


class ProblemFallback:
    """Anything no handler turned into a problem becomes a bare 500 problem+json.

    The exception (with its traceback) goes to the log under the request id; the client
    gets only that id, never the exception's text, which may carry SQL or data. As with
    Starlette's own last resort, the exception is raised again once the answer is sent,
    so the server sees the failure (and a test client raises it unless told not to).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            request_id = (scope.get("state") or {}).get("request_id")
            log.exception(
                "unhandled error in %s %s (request %s)",
                scope.get("method"),
                scope.get("path"),
                request_id,
            )
            if started:
                # Part of the body is out; nothing sensible can follow it.
                raise
            problem = Problem(
                "an unexpected error occurred; it has been logged",
                code="internal-error",
                status=500,
                title="Internal server error",
                extra={"request_id": request_id} if request_id else None,
            )
            # The server drops the connection once the exception reaches it; saying so
            # lets a keep-alive client open a new one instead of failing its next request.
            response = JSONResponse(
                problem.body(scope.get("path")),
                status_code=500,
                media_type=PROBLEM_CONTENT_TYPE,
                headers={"Connection": "close"},
            )
            await response(scope, receive, send)
            raise
