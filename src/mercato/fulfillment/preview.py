"""Where a cart's parcel would leave from if it were ordered now: the question a shipping
quote must answer first.

A channel that sells from several countries (the app, the call centre) cannot quote the
domestic carrier just because it has a warehouse in the shopper's country: the stock may
be only abroad, and routing would then send the parcel across a border with another
carrier. The preview runs the sourcing engine on the same inputs routing uses (the
channel's locations with their coordinates, capabilities, capacity left today and free
stock, the routing policy), without applying anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy.orm import Session

from mercato.channels.context import ChannelContext
from mercato.fulfillment import sourcing
from mercato.fulfillment.policies import policy
from mercato.fulfillment.routing import capacity_left, destination_of, engine_location
from mercato.inventory import service as inventory
from mercato.locations import service as locations


def likely_origin_country(
    session: Session,
    channel: ChannelContext,
    lines: Sequence[tuple[int, int]],
    address: Mapping[str, Any],
    held: Iterable[tuple[int, int, int]] = (),
) -> str | None:
    """The country the customer's parcel would leave from for these ``(variant, units)``
    shipped to ``address``, or None when the channel's stock cannot fill them.

    ``held`` are ``(variant, location, units)`` the cart already holds (free for it). When
    the plan sends parcels from several countries, the one from abroad is answered: a quote
    must not promise a domestic route to a parcel that crosses a border."""
    places = locations.get_locations(session, list(channel.location_order))
    capacity = capacity_left(session, places)
    variants = sorted({variant for variant, _ in lines})
    table: dict[int, dict[int, int]] = {
        v: dict(by_place)
        for v, by_place in inventory.availability_by_location(
            session, variants, channel.location_order
        ).items()
    }
    for variant, location_id, units in held:
        by_place = table.setdefault(variant, {})
        by_place[location_id] = by_place.get(location_id, 0) + units
    plan = sourcing.source_order(
        [sourcing.OrderLine(str(n), v, q) for n, (v, q) in enumerate(lines)],
        destination_of(dict(address), channel.country),
        {p.id: engine_location(p, capacity[p.id]) for p in places},
        table,
        policy(session),
    )
    by_id = {p.id: p for p in places}
    countries = [by_id[s.origin_id].country for s in plan.shipments if s.destination_id is None]
    abroad = [c for c in countries if c != address.get("country")]
    return next(iter(abroad or countries), None)
