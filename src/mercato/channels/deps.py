"""The shopper-facing request's channel: ``X-Channel-Key`` -> ``ChannelContext``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Header, Request

from mercato.auth.throttle import AddressGuard
from mercato.channels import service
from mercato.channels.context import ChannelContext
from mercato.deps import DbSession, get_database
from mercato.errors import Unauthorized
from mercato.http_security import client_address


def _guarded(request: Request, resolve: Callable[[], ChannelContext]) -> ChannelContext:
    """The channel of the key, unless the caller's address guessed too many wrong keys."""
    guard: AddressGuard | None = getattr(request.app.state, "channel_key_guard", None)
    if guard is None:
        return resolve()
    address = client_address(request)
    guard.check(address)
    try:
        return resolve()
    except Unauthorized as exc:
        if exc.code == "invalid-channel-key":
            guard.failed(address)
        raise

# Documented as the ``channelKey`` security scheme (mercato.openapi), not as a parameter.
ChannelKeyHeader = Annotated[str | None, Header(include_in_schema=False)]


def channel_context(
    request: Request,
    session: DbSession,
    x_channel_key: ChannelKeyHeader = None,
) -> ChannelContext:
    if not x_channel_key:
        raise Unauthorized("an X-Channel-Key header is required", code="missing-channel-key")
    key = x_channel_key.strip()
    return _guarded(request, lambda: service.context_for_key(session, key))


ChannelCtx = Annotated[ChannelContext, Depends(channel_context)]


def channel_context_standalone(
    request: Request,
    x_channel_key: ChannelKeyHeader = None,
) -> ChannelContext:
    """The channel, read in a short transaction of its own.

    For endpoints that run several transactions themselves (checkout): the request must not
    hold a transaction open across a payment provider call.
    """
    if not x_channel_key:
        raise Unauthorized("an X-Channel-Key header is required", code="missing-channel-key")
    key = x_channel_key.strip()

    def resolve() -> ChannelContext:
        with get_database(request).read() as session:
            return service.context_for_key(session, key)

    return _guarded(request, resolve)


StandaloneChannelCtx = Annotated[ChannelContext, Depends(channel_context_standalone)]
