"""Authentication for endpoints that call a payment provider.

``deps.require`` and ``ChannelCtx`` authenticate inside the request's transaction, which
for a POST stays open until the endpoint returns (on SQLite it holds the write lock).
An endpoint that calls a provider must not hold a transaction across that call, and the
service opens transactions of its own; so these dependencies authenticate in a short read
transaction that is closed before the endpoint runs. They check the same credentials and
the same single permission (the dependency keeps the ``require_<permission>`` name).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from mercato.channels import service as channels
from mercato.channels.context import ChannelContext
from mercato.channels.deps import ChannelKeyHeader
from mercato.deps import get_database
from mercato.errors import Unauthorized

Authorization = Annotated[str | None, Header(include_in_schema=False)]


def channel_outside_transaction(
    request: Request,
    x_channel_key: ChannelKeyHeader = None,
) -> ChannelContext:
    if not x_channel_key:
        raise Unauthorized("an X-Channel-Key header is required", code="missing-channel-key")
    with get_database(request).read() as session:
        return channels.context_for_key(session, x_channel_key.strip())


ChannelNoTx = Annotated[ChannelContext, Depends(channel_outside_transaction)]


def request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


RequestId = Annotated[str | None, Depends(request_id)]
