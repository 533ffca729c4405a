"""The shopper-facing request's channel: ``X-Channel-Key`` -> ``ChannelContext``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from mercato.channels import service
from mercato.channels.context import ChannelContext
from mercato.deps import DbSession, get_database
from mercato.errors import Unauthorized

# Documented as the ``channelKey`` security scheme (mercato.openapi), not as a parameter.
ChannelKeyHeader = Annotated[str | None, Header(include_in_schema=False)]


def channel_context(
    session: DbSession,
    x_channel_key: ChannelKeyHeader = None,
) -> ChannelContext:
    if not x_channel_key:
        raise Unauthorized("an X-Channel-Key header is required", code="missing-channel-key")
    return service.context_for_key(session, x_channel_key.strip())


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
    with get_database(request).read() as session:
        return service.context_for_key(session, x_channel_key.strip())


StandaloneChannelCtx = Annotated[ChannelContext, Depends(channel_context_standalone)]
