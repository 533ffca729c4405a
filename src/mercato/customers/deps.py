"""Who the shopper is, when a customer bearer token comes with a channel request."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from mercato.customers import service
from mercato.deps import DbSession, bearer_token, get_database


def optional_customer_id(
    session: DbSession,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> int | None:
    """The logged-in customer's id, None for a guest; a wrong token is a 401, not a guest."""
    token = bearer_token(authorization)
    return None if token is None else service.authenticate(session, token).id


def optional_customer_id_standalone(
    request: Request,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> int | None:
    """As ``optional_customer_id``, in a short read transaction of its own (checkout)."""
    token = bearer_token(authorization)
    if token is None:
        return None
    with get_database(request).read() as session:
        return service.authenticate(session, token).id


CustomerId = Annotated[int | None, Depends(optional_customer_id)]
StandaloneCustomerId = Annotated[int | None, Depends(optional_customer_id_standalone)]
