"""Router defaults shared by every domain: unknown query parameters are rejected."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from mercato.errors import FieldError, ValidationProblem


def _query_names(dependant: Dependant) -> set[str]:
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


class StrictRoute(APIRoute):
    """An APIRoute that answers 422 for query parameters the endpoint does not declare."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        allowed = _query_names(self.dependant)

        async def strict_handler(request: Request) -> Response:
            unknown = sorted(set(request.query_params.keys()) - allowed)
            if unknown:
                raise ValidationProblem(
                    "unknown query parameter: " + ", ".join(unknown),
                    errors=[FieldError(f"query.{name}", "unknown field") for name in unknown],
                )
            return await handler(request)

        return strict_handler


def router(prefix: str = "", tags: list[str] | None = None) -> APIRouter:
    return APIRouter(prefix=prefix, tags=list(tags or []), route_class=StrictRoute)
