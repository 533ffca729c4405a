"""Router defaults shared by every domain: unknown query parameters are rejected, and input
no database can store (see :mod:`mercato.input_checks`) is a 422 before the endpoint runs."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from mercato.errors import FieldError, ValidationProblem
from mercato.input_checks import ParamChecks, body_problems
from mercato.openapi import document_route

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _query_names(dependant: Dependant) -> set[str]:
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def _invalid(errors: list[FieldError]) -> ValidationProblem:
    detail = "; ".join(f"{e['field']}: {e['reason']}" for e in errors[:5])
    return ValidationProblem(detail, errors=errors)


class StrictRoute(APIRoute):
    """An APIRoute that answers 422 for query parameters the endpoint does not declare and
    for integers or text that no database column could hold, and documents the error
    statuses and credentials its dependencies imply (:mod:`mercato.openapi`)."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        document_route(self)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        allowed = _query_names(self.dependant)
        params = ParamChecks(self.dependant)
        reads_body = bool(self.dependant.body_params)

        async def strict_handler(request: Request) -> Response:
            unknown = sorted(set(request.query_params.keys()) - allowed)
            if unknown:
                raise ValidationProblem(
                    "unknown query parameter: " + ", ".join(unknown),
                    errors=[FieldError(f"query.{name}", "unknown field") for name in unknown],
                )
            errors = params.problems(
                request.path_params, request.query_params.multi_items(), request.headers.items()
            )
            if not errors and reads_body and _is_json(request):
                errors = body_problems(await request.body())
            if errors:
                raise _invalid(errors)
            return await handler(request)

        return strict_handler


def _is_json(request: Request) -> bool:
    return request.method in _BODY_METHODS and "json" in request.headers.get("content-type", "")


def router(prefix: str = "", tags: list[str] | None = None) -> APIRouter:
    return APIRouter(prefix=prefix, tags=list(tags or []), route_class=StrictRoute)
