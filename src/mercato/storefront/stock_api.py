"""Shopper-facing stock: availability to promise, stores nearby, a live feed of changes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from mercato.channels.context import ChannelContext
from mercato.channels.deps import ChannelCtx
from mercato.deps import DbSession, get_database
from mercato.errors import ValidationProblem
from mercato.geocoding import Source, geocode
from mercato.input_checks import id_list
from mercato.inventory import service as inventory
from mercato.inventory.schemas import AvailabilityOut, LocationStockOut, VariantAvailabilityOut
from mercato.inventory.stream import StockStream
from mercato.locations.schemas import validate_country
from mercato.routing import router

api = router("/v1/store", tags=["storefront"])

VariantIds = Annotated[str, Query(description="Comma-separated variant ids (up to 200)")]


def parse_ids(raw: str, field: str = "query.variant_ids", maximum: int = 200) -> list[int]:
    return sorted(set(id_list(raw, field, maximum)))


@api.get("/availability", response_model=AvailabilityOut)
def availability(
    session: DbSession,
    channel: ChannelCtx,
    variant_ids: VariantIds,
    latitude: Annotated[float | None, Query(ge=-90, le=90)] = None,
    longitude: Annotated[float | None, Query(ge=-180, le=180)] = None,
    radius_km: Annotated[float | None, Query(gt=0, le=20_000)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    postal_code: Annotated[str | None, Query(min_length=1, max_length=20)] = None,
    city: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    country: Annotated[str | None, Query(min_length=2, max_length=2)] = None,
) -> AvailabilityOut:
    """How many units the channel can sell now; with coordinates, or a postal code or city
    (in ``country``, by default the channel's), the nearest locations holding them (for
    "pick up in a store near you" and ship-from-store)."""
    ids = parse_ids(variant_ids)
    if (latitude is None) != (longitude is None):
        raise ValidationProblem.field("query.latitude", "latitude and longitude go together")
    source = None if latitude is None else Source.GIVEN.value
    if latitude is None and (postal_code or city):
        found = geocode(_country(country or channel.country), postal_code, city)
        if found is not None:
            latitude, longitude, source = found.latitude, found.longitude, found.source.value
    totals = inventory.availability(session, ids, channel.location_ids)
    places: list[LocationStockOut] = []
    if latitude is not None:
        nearby = inventory.nearby_stock(
            session,
            ids,
            channel.location_order,
            latitude,
            longitude,
            radius_km=radius_km,
            limit=limit,
        )
        places = [LocationStockOut(**vars(x)) for x in nearby]
    return AvailabilityOut(
        channel=channel.code,
        variants=[
            VariantAvailabilityOut(variant_id=v, available=n, in_stock=n > 0)
            for v, n in totals.items()
        ],
        locations=places,
        coordinates_source=source,
    )


def _country(value: str | None) -> str:
    if not value:
        raise ValidationProblem.field("query.country", "required with a postal code or city")
    try:
        return validate_country(value)
    except ValueError as exc:
        raise ValidationProblem.field("query.country", str(exc)) from exc


def _snapshot(request: Request, channel: ChannelContext, ids: list[int] | None) -> dict[int, int]:
    if not ids:
        return {}
    with get_database(request).read() as session:
        return inventory.availability(session, ids, channel.location_ids)


@api.get(
    "/stock/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stock_stream(
    request: Request,
    channel: ChannelCtx,
    variant_ids: Annotated[str | None, Query(description="Comma-separated; omitted: all")] = None,
) -> StreamingResponse:
    """Server-Sent Events: a ``snapshot`` event, then a ``stock`` event per change at the
    channel's locations (with ``channel_available``, the channel-wide figure).

    Each ``stock`` event's SSE ``id`` is its position in the event log. A change made while
    the snapshot was read may arrive as well; a reconnecting client gets a new snapshot."""
    ids = parse_ids(variant_ids) if variant_ids else None
    stream: StockStream = request.app.state.stock_stream
    # Subscribed first, so a change committed while the snapshot is read still arrives.
    sub = await stream.subscribe(frozenset(channel.location_order), frozenset(ids) if ids else None)
    try:
        snapshot = await run_in_threadpool(_snapshot, request, channel, ids)
    except BaseException:
        stream.unsubscribe(sub)
        raise
    body = stream.events(sub, snapshot)
    return StreamingResponse(
        body,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
