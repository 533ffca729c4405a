"""The OpenAPI document as the server really behaves: its errors, statuses and credentials.

FastAPI documents a 422 of its own shape and nothing else. Every error Mercato returns is
problem+json (:mod:`mercato.errors`), and which statuses an operation can answer follows
from what the route is made of, so they are derived here from the route, not written by
hand on each endpoint:

* a bearer token (a dependency reading ``Authorization``): 401 (no or a bad token) and 403
  (a staff role lacks the permission or the location; a cart of another customer);
* a channel key (``X-Channel-Key``): 401;
* a payment provider's call (dependencies that keep the request outside a transaction):
  402 (declined) and 503 (the provider is unreachable);
* a path parameter, or a query parameter or body field naming another object
  (``..._id``, ``..._number``, ``reference``): 404 (nothing has that id);
* any parameter or body: 422 (invalid input, unknown query parameters);
* an unsafe method: 409 (the object's state does not allow it, or a unique value is
  taken) and 413 (a body larger than the server accepts);
* an ``Idempotency-Key`` header: 409 (the same key is still being answered, or was used
  with another body) and 422 (a malformed key).

An endpoint declares what the route does not show with FastAPI's own ``responses=``, for
example ``responses=problem_responses(429)`` on a login that locks out;
any error response without a body schema gets the problem schema. The security schemes
``bearerAuth`` (staff and customer tokens) and ``channelKey`` are declared and set on each
operation from the same dependencies.
"""

from __future__ import annotations

from collections.abc import Iterator
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, get_args

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field

from mercato.errors import PROBLEM_CONTENT_TYPE

if TYPE_CHECKING:
    from fastapi.routing import APIRoute

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CHANNEL_HEADER = "x-channel-key"
AUTHORIZATION_HEADER = "authorization"
IDEMPOTENCY_HEADER = "idempotency-key"

PROBLEM_REF = "#/components/schemas/Problem"
# The dependencies of endpoints that run their own short transactions around a payment
# provider's call (mercato.deps, channels.deps, payments.deps): a payment may be declined
# (402) or its provider unreachable (503).
PROVIDER_DEPENDENCIES = (
    "require_outside_transaction.",
    "channel_context_standalone",
    "channel_outside_transaction",
)
# Parameter and body field names that name another object (which may not exist).
REFERENCE_SUFFIXES = ("_id", "_ids", "_number")
REFERENCE_NAMES = frozenset({"reference"})

SECURITY_SCHEMES: dict[str, Any] = {
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "description": "A staff token from `POST /v1/auth/login`, or on shopper endpoints a "
        "customer token from `POST /v1/store/customers/login`",
    },
    "channelKey": {
        "type": "apiKey",
        "in": "header",
        "name": "X-Channel-Key",
        "description": "The sales channel's API key (shopper endpoints `/v1/store/...`)",
    },
}

_REASONS = {
    401: "No credentials, or credentials that are not valid",
    402: "The payment was declined; `decline_code` says why",
    403: "The caller may not do this (permission, location or owner)",
    404: "Nothing has this id, or the caller may not see it",
    409: "The object's state does not allow this, or a unique value is already taken",
    413: "The request body is larger than the server accepts",
    422: "The request is not valid; `errors` names each field and the reason",
    429: "Too many attempts; retry after the `Retry-After` seconds",
    503: "A service this operation depends on is not available; retry later",
}


class FieldErrorOut(BaseModel):
    field: str = Field(examples=["body.variants[0].sku"])
    reason: str = Field(examples=["already exists"])


class ProblemOut(BaseModel):
    """An RFC 9457 problem: ``code`` (also the last part of ``type``) is stable; clients
    switch on it. Some problems add members of their own (``permission``, ``request_id``)."""

    model_config = ConfigDict(extra="allow", title="Problem")

    type: str = Field(examples=["https://mercato.dev/problems/validation-error"])
    title: str
    status: int
    code: str = Field(examples=["validation-error"])
    detail: str
    instance: str | None = None
    errors: list[FieldErrorOut] | None = Field(
        default=None, description="For validation problems: each bad field and why"
    )


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for statuses an endpoint answers that its route does not show."""
    return {status: _problem_response(status) for status in statuses}


def _description(status: int) -> str:
    return _REASONS.get(status) or HTTPStatus(status).phrase


# --- what a route is made of -----------------------------------------------------------


def _dependants(dependant: Dependant) -> Iterator[Dependant]:
    yield dependant
    for sub in dependant.dependencies:
        yield from _dependants(sub)


def _headers(route: APIRoute) -> set[str]:
    return {
        field.alias.lower().replace("_", "-")
        for part in _dependants(route.dependant)
        for field in part.header_params
    }


def _calls_providers(route: APIRoute) -> bool:
    return any(
        getattr(part.call, "__qualname__", "").startswith(PROVIDER_DEPENDENCIES)
        for part in _dependants(route.dependant)
    )


def _names_another_object(name: str) -> bool:
    return name.endswith(REFERENCE_SUFFIXES) or name in REFERENCE_NAMES


def _model_field_names(annotation: Any, seen: set[type]) -> Iterator[str]:
    """Field names of a body model and of the models inside it."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if annotation in seen:
            return
        seen.add(annotation)
        for name, model_field in annotation.model_fields.items():
            yield name
            yield from _model_field_names(model_field.annotation, seen)
        return
    for arg in get_args(annotation):
        yield from _model_field_names(arg, seen)


def _references(route: APIRoute) -> bool:
    """Whether the request names other objects (a path parameter, an ``..._id`` query
    parameter or body field, an order number...) that may not exist: a 404 if not."""
    if any(part.path_params for part in _dependants(route.dependant)):
        return True
    queries = (f.alias for part in _dependants(route.dependant) for f in part.query_params)
    if any(_names_another_object(name) for name in queries):
        return True
    if route.body_field is None:
        return False
    names = _model_field_names(route.body_field.field_info.annotation, set())
    return any(_names_another_object(name) for name in names)


def route_statuses(route: APIRoute) -> set[int]:
    """The error statuses an operation answers, from what its route is made of."""
    headers = _headers(route)
    statuses: set[int] = set()
    if CHANNEL_HEADER in headers:
        statuses.add(401)
    if AUTHORIZATION_HEADER in headers:
        statuses |= {401, 403}
    if _calls_providers(route):
        statuses |= {402, 503}
    if _references(route):
        statuses.add(404)
    # Unknown query parameters are refused on every route (mercato.routing.StrictRoute).
    statuses.add(422)
    if (route.methods or set()) & UNSAFE_METHODS:
        # A body (declared, or read raw like an imported file) may be too large; the
        # object's state or a unique value may be in the way.
        statuses |= {409, 413}
    if IDEMPOTENCY_HEADER in headers:
        statuses |= {409, 422}
    return statuses


def route_security(route: APIRoute) -> list[dict[str, list[str]]] | None:
    headers = _headers(route)
    if CHANNEL_HEADER in headers:
        if AUTHORIZATION_HEADER in headers:
            # A customer token where the operation takes one (some need it: a 401 says so).
            return [{"channelKey": [], "bearerAuth": []}, {"channelKey": []}]
        return [{"channelKey": []}]
    if AUTHORIZATION_HEADER in headers:
        return [{"bearerAuth": []}]
    return None


# --- the document ------------------------------------------------------------------------


def _problem_response(status: int, given: dict[str, Any] | None = None) -> dict[str, Any]:
    response = dict(given or {})
    response.setdefault("description", _description(status))
    if "model" not in response and "content" not in response:
        response["content"] = {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": PROBLEM_REF}}}
    return response


def document_route(route: APIRoute) -> None:
    """Add the route's error statuses (problem+json) and security to what it documents.

    Runs when the route is made, before a router is included anywhere, so every copy of
    the route made by inclusion documents the same.
    """
    declared: dict[int | str, dict[str, Any]] = dict(route.responses)
    for status in route_statuses(route):
        declared.setdefault(status, {})
    route.responses = {
        status: _problem_response(int(status), response)
        if str(status).isdigit() and int(status) >= 400
        else response
        for status, response in sorted(declared.items(), key=lambda item: str(item[0]))
    }
    security = route_security(route)
    if security is not None:
        route.openapi_extra = {"security": security, **(route.openapi_extra or {})}


def _problem_schemas() -> dict[str, Any]:
    schema = ProblemOut.model_json_schema(ref_template="#/components/schemas/{model}")
    definitions = schema.pop("$defs", {})
    return {"Problem": schema, **definitions}


def install(app: FastAPI) -> None:
    """Serve the document with the problem schema and the security schemes (built once)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                openapi_version=app.openapi_version,
                description=app.description,
                routes=app.routes,
            )
            components = document.setdefault("components", {})
            components.setdefault("schemas", {}).update(_problem_schemas())
            components["securitySchemes"] = SECURITY_SCHEMES
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
