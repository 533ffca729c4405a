from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from sqlalchemy.orm import Session

from mercato.auth.permissions import Permission
from mercato.auth.principal import Principal
from mercato.channels import service
from mercato.channels.models import Channel
from mercato.channels.schemas import (
    ApiKeyCreated,
    ApiKeyIn,
    ApiKeyOut,
    ChannelIn,
    ChannelOut,
    ChannelPatch,
    ChannelType,
    ImportDuties,
)
from mercato.deps import DbSession, Pagination, require
from mercato.routing import router
from mercato.schemas import PageOut

api = router("/v1/channels", tags=["channels"])

Reader = Annotated[Principal, Depends(require(Permission.CHANNELS_READ))]
Writer = Annotated[Principal, Depends(require(Permission.CHANNELS_WRITE))]


def channel_out(session: Session, channel: Channel) -> ChannelOut:
    return ChannelOut(
        id=channel.id,
        code=channel.code,
        name=channel.name,
        type=ChannelType(channel.type),
        default_locale=channel.default_locale,
        locales=list(channel.locales),
        currencies=list(channel.currencies),
        price_list=channel.price_list,
        country=channel.country,
        country_currencies=dict(channel.country_currencies or {}),
        ship_to_countries=list(channel.ship_to_countries or []),
        locations=service.channel_locations(session, channel.id),
        assortment_category_ids=channel.assortment_category_ids,
        import_duties=ImportDuties(channel.import_duties),
        active=channel.active,
        created_at=channel.created_at,
        updated_at=channel.updated_at,
    )


@api.get("", response_model=PageOut[ChannelOut])
def list_channels(session: DbSession, page: Pagination, principal: Reader) -> PageOut[ChannelOut]:
    cursor, limit = page
    result = service.page_channels(session, cursor=cursor, limit=limit)
    return PageOut(
        items=[channel_out(session, c) for c in result.items], next_cursor=result.next_cursor
    )


@api.post("", response_model=ChannelOut, status_code=201)
def create_channel(body: ChannelIn, session: DbSession, principal: Writer) -> ChannelOut:
    return channel_out(session, service.create_channel(session, principal, body))


@api.get("/{channel_id}", response_model=ChannelOut)
def get_channel(channel_id: int, session: DbSession, principal: Reader) -> ChannelOut:
    return channel_out(session, service.get_channel(session, channel_id))


@api.patch("/{channel_id}", response_model=ChannelOut)
def update_channel(
    channel_id: int, body: ChannelPatch, session: DbSession, principal: Writer
) -> ChannelOut:
    return channel_out(session, service.update_channel(session, principal, channel_id, body))


@api.get("/{channel_id}/keys", response_model=PageOut[ApiKeyOut])
def list_keys(
    channel_id: int, session: DbSession, page: Pagination, principal: Writer
) -> PageOut[ApiKeyOut]:
    cursor, limit = page
    result = service.list_keys(session, channel_id, cursor=cursor, limit=limit)
    return PageOut(
        items=[ApiKeyOut.model_validate(k) for k in result.items], next_cursor=result.next_cursor
    )


@api.post("/{channel_id}/keys", response_model=ApiKeyCreated, status_code=201)
def issue_key(
    channel_id: int, body: ApiKeyIn, session: DbSession, principal: Writer
) -> ApiKeyCreated:
    key, secret = service.issue_key(session, principal, channel_id, body.name)
    return ApiKeyCreated(
        id=key.id,
        name=key.name,
        key_prefix=key.key_prefix,
        created_at=key.created_at,
        revoked_at=key.revoked_at,
        key=secret,
    )


@api.delete("/{channel_id}/keys/{key_id}", response_model=ApiKeyOut)
def revoke_key(channel_id: int, key_id: int, session: DbSession, principal: Writer) -> ApiKeyOut:
    return ApiKeyOut.model_validate(service.revoke_key(session, principal, channel_id, key_id))
