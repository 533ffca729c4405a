"""Channels: how each way of selling sees the one catalog, stock and price engine."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from mercato.auth.passwords import new_token, token_hash
from mercato.auth.principal import Principal
from mercato.auth.service import audit
from mercato.catalog import service as catalog
from mercato.channels.context import ChannelContext
from mercato.channels.event_types import ChannelCreated, ChannelUpdated
from mercato.channels.models import Channel, ChannelApiKey, ChannelLocation
from mercato.channels.schemas import (
    ChannelIn,
    ChannelLocationIn,
    ChannelPatch,
    ImportDuties,
    check_country_currencies,
)
from mercato.db import get_or_404, utcnow
from mercato.errors import Conflict, NotFound, Unauthorized, ValidationProblem
from mercato.events import publish
from mercato.locations import service as locations
from mercato.pagination import Page, decode_id_cursor, page_of

CHANNEL_KEY_PREFIX = "mck"


def get_channel(session: Session, channel_id: int) -> Channel:
    return get_or_404(session, Channel, channel_id, f"channel {channel_id}")


def exists(session: Session, channel_id: int) -> bool:
    return session.scalar(select(Channel.id).where(Channel.id == channel_id)) is not None


def channel_by_code(session: Session, code: str) -> Channel | None:
    return session.scalar(select(Channel).where(Channel.code == code))


def list_channels(session: Session) -> list[Channel]:
    return list(session.scalars(select(Channel).order_by(Channel.id)))


def page_channels(session: Session, *, cursor: str | None = None, limit: int = 50) -> Page[Channel]:
    query = select(Channel).order_by(Channel.id)
    after = decode_id_cursor(cursor)
    if after is not None:
        query = query.where(Channel.id > after)
    return page_of(list(session.scalars(query.limit(limit + 1))), limit, key=lambda c: c.id)


def channel_locations(session: Session, channel_id: int) -> list[ChannelLocationIn]:
    rows = session.scalars(
        select(ChannelLocation)
        .where(ChannelLocation.channel_id == channel_id)
        .order_by(ChannelLocation.priority, ChannelLocation.location_id)
    )
    return [ChannelLocationIn(location_id=r.location_id, priority=r.priority) for r in rows]


def _set_locations(session: Session, channel: Channel, items: list[ChannelLocationIn]) -> None:
    ids = [i.location_id for i in items]
    if len(set(ids)) != len(ids):
        raise ValidationProblem.field("body.locations", "a location is listed twice")
    locations.require_existing(session, ids, field="locations")
    session.execute(delete(ChannelLocation).where(ChannelLocation.channel_id == channel.id))
    session.add_all(
        ChannelLocation(channel_id=channel.id, location_id=i.location_id, priority=i.priority)
        for i in items
    )
    ordered = sorted(items, key=lambda i: (i.priority, i.location_id))
    channel.location_order = [i.location_id for i in ordered]
    channel.ship_origins = _ship_origins(session, channel.location_order)


def _ship_origins(session: Session, location_order: list[int]) -> list[str]:
    by_id = {p.id: p for p in locations.get_locations(session, location_order)}
    countries: list[str] = []
    for location_id in location_order:
        place = by_id.get(location_id)
        if place is None or not place.active or not (place.can_ship or place.can_ship_from_store):
            continue
        if place.country not in countries:
            countries.append(place.country)
    return countries


def refresh_ship_origins(session: Session, location_id: int) -> int:
    """A location changed (capabilities, country, active): its channels' origins follow."""
    changed = 0
    for channel in session.scalars(
        select(Channel).where(
            Channel.id.in_(
                select(ChannelLocation.channel_id).where(ChannelLocation.location_id == location_id)
            )
        )
    ):
        origins = _ship_origins(session, list(channel.location_order))
        if origins != list(channel.ship_origins or []):
            channel.ship_origins = origins
            changed += 1
    if changed:
        forget_cached_contexts()
    return changed


def _check_assortment(session: Session, ids: list[int] | None) -> None:
    if ids:
        catalog.require_categories(session, ids, field="body.assortment_category_ids")


def _check_locales(default_locale: str, locales: list[str]) -> None:
    if default_locale not in locales:
        raise ValidationProblem.field("body.default_locale", "must be one of the channel's locales")


def snapshot(channel: Channel) -> dict[str, Any]:
    return {
        "id": channel.id,
        "code": channel.code,
        "type": channel.type,
        "currencies": tuple(channel.currencies),
        "locales": tuple(channel.locales),
        "active": channel.active,
    }


def create_channel(session: Session, actor: Principal, data: ChannelIn) -> Channel:
    if channel_by_code(session, data.code) is not None:
        raise Conflict(f"channel code {data.code} exists", code="duplicate-code")
    _check_assortment(session, data.assortment_category_ids)
    channel = Channel(
        code=data.code,
        name=data.name,
        type=data.type.value,
        default_locale=data.default_locale,
        locales=list(data.locales),
        currencies=list(data.currencies),
        price_list=data.price_list,
        country=data.country,
        country_currencies=dict(data.country_currencies),
        ship_to_countries=list(data.ship_to_countries),
        assortment_category_ids=data.assortment_category_ids,
        import_duties=data.import_duties.value,
        active=data.active,
    )
    session.add(channel)
    session.flush()
    _set_locations(session, channel, data.locations)
    audit(session, actor, "channel.created", "channel", channel.id, data.model_dump(mode="json"))
    publish(session, ChannelCreated(**snapshot(channel)))
    return channel


def update_channel(
    session: Session, actor: Principal, channel_id: int, patch: ChannelPatch
) -> Channel:
    forget_cached_contexts()
    channel = get_channel(session, channel_id)
    changes = patch.model_dump(exclude_unset=True, mode="json")
    for name in (
        "name",
        "currencies",
        "locales",
        "default_locale",
        "active",
        "ship_to_countries",
        "locations",
        "country_currencies",
        "import_duties",
    ):
        if name in changes and changes[name] is None:
            raise ValidationProblem.field(f"body.{name}", "may not be null")
    if "assortment_category_ids" in changes:
        _check_assortment(session, patch.assortment_category_ids)
    for name in (
        "name",
        "price_list",
        "country",
        "assortment_category_ids",
        "active",
        "currencies",
        "ship_to_countries",
        "default_locale",
        "country_currencies",
        "import_duties",
    ):
        if name in changes:
            value = getattr(patch, name)
            setattr(channel, name, value.value if isinstance(value, ImportDuties) else value)
    if patch.locales is not None:
        channel.locales = list(patch.locales)
    if patch.default_locale is not None and patch.default_locale not in channel.locales:
        channel.locales = [patch.default_locale, *channel.locales]
    channel.locales = [
        channel.default_locale,
        *(x for x in channel.locales if x != channel.default_locale),
    ]
    _check_locales(channel.default_locale, list(channel.locales))
    try:
        check_country_currencies(dict(channel.country_currencies or {}), list(channel.currencies))
    except ValueError as exc:
        raise ValidationProblem.field("body.country_currencies", str(exc)) from None
    if patch.locations is not None:
        _set_locations(session, channel, patch.locations)
    if changes:
        channel.updated_at = utcnow()
        session.flush()
        audit(session, actor, "channel.updated", "channel", channel.id, changes)
        publish(session, ChannelUpdated(**snapshot(channel)))
    return channel


def issue_key(
    session: Session, actor: Principal, channel_id: int, name: str
) -> tuple[ChannelApiKey, str]:
    channel = get_channel(session, channel_id)
    secret = new_token(CHANNEL_KEY_PREFIX)
    key = ChannelApiKey(
        channel_id=channel.id,
        name=name,
        key_hash=token_hash(secret),
        key_prefix=secret[:12],
        created_at=utcnow(),
    )
    session.add(key)
    session.flush()
    audit(
        session,
        actor,
        "channel.key_issued",
        "channel",
        channel.id,
        {"key_id": key.id, "name": name},
    )
    return key, secret


def list_keys(
    session: Session, channel_id: int, *, cursor: str | None = None, limit: int = 50
) -> Page[ChannelApiKey]:
    get_channel(session, channel_id)
    query = (
        select(ChannelApiKey)
        .where(ChannelApiKey.channel_id == channel_id)
        .order_by(ChannelApiKey.id)
    )
    after = decode_id_cursor(cursor)
    if after is not None:
        query = query.where(ChannelApiKey.id > after)
    return page_of(list(session.scalars(query.limit(limit + 1))), limit, key=lambda k: k.id)


def revoke_key(session: Session, actor: Principal, channel_id: int, key_id: int) -> ChannelApiKey:
    forget_cached_contexts()
    key = session.get(ChannelApiKey, key_id)
    if key is None or key.channel_id != channel_id:
        raise NotFound(f"key {key_id} not found on channel {channel_id}")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        audit(session, actor, "channel.key_revoked", "channel", channel_id, {"key_id": key_id})
    return key


def _context(session: Session, channel: Channel) -> ChannelContext:
    location_ids = tuple(channel.location_order or ())
    assortment = None
    if channel.assortment_category_ids is not None:
        assortment = frozenset(
            catalog.category_with_descendants(session, channel.assortment_category_ids)
        )
    return ChannelContext(
        id=channel.id,
        code=channel.code,
        name=channel.name,
        type=channel.type,
        default_locale=channel.default_locale,
        locales=tuple(channel.locales),
        currencies=tuple(channel.currencies),
        price_list=channel.price_list,
        location_ids=frozenset(location_ids),
        assortment_category_ids=assortment,
        country=channel.country,
        ship_to_countries=tuple(channel.ship_to_countries or ()),
        location_order=location_ids,
        ship_origins=tuple(channel.ship_origins or ()),
        country_currencies=tuple(sorted((channel.country_currencies or {}).items())),
        import_duties=channel.import_duties,
        store_location_id=_store_of(session, channel.type, location_ids),
    )


def _store_of(session: Session, channel_type: str, location_ids: Sequence[int]) -> int | None:
    """The first store a POS channel sells from (the store whose till it is)."""
    if channel_type != "pos" or not location_ids:
        return None
    stores = {x.id for x in locations.get_locations(session, location_ids) if x.type == "store"}
    return next((i for i in location_ids if i in stores), None)


# Every shopper request resolves its channel key; channels change rarely. Each process
# keeps what it resolved for a few seconds (a change made through this process clears it
# at once; other processes see it within ``KEY_CACHE_SECONDS``).
KEY_CACHE_SECONDS = 5.0
_key_cache: dict[str, tuple[float, ChannelContext]] = {}


def forget_cached_contexts() -> None:
    _key_cache.clear()


def context_for_key(session: Session, secret: str) -> ChannelContext:
    digest = token_hash(secret)
    now = time.monotonic()
    hit = _key_cache.get(digest)
    if hit is not None and hit[0] > now:
        return hit[1]
    context = _resolve_key(session, secret)
    if len(_key_cache) > 10_000:
        _key_cache.clear()
    _key_cache[digest] = (now + KEY_CACHE_SECONDS, context)
    return context


def _resolve_key(session: Session, secret: str) -> ChannelContext:
    row = session.execute(
        select(ChannelApiKey, Channel)
        .join(Channel, Channel.id == ChannelApiKey.channel_id)
        .where(ChannelApiKey.key_hash == token_hash(secret))
    ).one_or_none()
    if row is None:
        raise Unauthorized("unknown channel key", code="invalid-channel-key")
    key, channel = row
    if key.revoked_at is not None:
        raise Unauthorized("channel key revoked", code="invalid-channel-key")
    if not channel.active:
        raise Unauthorized("channel is not active", code="channel-inactive")
    return _context(session, channel)


def context_for_channel(session: Session, channel_id: int) -> ChannelContext:
    """The shopper view of a channel for staff acting on its behalf (call centre, POS)."""
    return _context(session, get_channel(session, channel_id))
