"""Loading what the carrier integrations need.

A carrier's configuration, its rate card for a route (its active services and the rate tables
that could apply, in a fixed number of queries) and the callbacks of its
:class:`~mercato.shipping.carriers.CarrierContext`: the next label serial and the scans
recorded for a tracking number.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import and_, select, update
from sqlalchemy.orm import Session

from mercato.errors import Conflict, UnprocessableState
from mercato.money import from_minor
from mercato.shipping._checks import _decimal
from mercato.shipping.carriers import (
    MAX_S10_SERIAL,
    Bracket,
    Carrier,
    CarrierConfig,
    CarrierContext,
    RateCard,
    ServiceConfig,
    ServiceScope,
    TableRates,
    TrackingEvent,
    TrackingStatus,
    ZoneRule,
    carrier_for,
)
from mercato.shipping.label_records import label_by_tracking_number, tracking_events
from mercato.shipping.models import (
    ANY_ORIGIN,
    RateBracket,
    RateTable,
    ShippingCarrier,
    ShippingService,
    ShippingZone,
    ZoneMember,
)


def _config(carrier: ShippingCarrier) -> CarrierConfig:
    return CarrierConfig(
        id=carrier.id,
        code=carrier.code,
        name=carrier.name,
        adapter=carrier.adapter,
        tracking_prefix=carrier.tracking_prefix,
        timezone=carrier.timezone,
        webhook_secret=carrier.webhook_secret,
    )


def _services_of(session: Session, carrier_ids: Sequence[int]) -> list[ShippingService]:
    if not carrier_ids:
        return []
    return list(
        session.scalars(
            select(ShippingService)
            .where(ShippingService.carrier_id.in_(carrier_ids), ShippingService.active.is_(True))
            .order_by(ShippingService.carrier_id, ShippingService.code)
        )
    )


def _rate_cards(
    session: Session,
    carrier_ids: Sequence[int],
    origin: str,
    destination_country: str,
    currency: str | None,
    services: Sequence[ShippingService] | None = None,
) -> dict[int, RateCard]:
    """Active services and the rate tables that could price a parcel on this route.

    Two queries (three without ``services``) whatever the number of carriers, services,
    zones and tables.
    """
    cards: dict[int, RateCard] = {i: RateCard() for i in carrier_ids}
    if services is None:
        services = _services_of(session, carrier_ids)
    if not services:
        return cards
    by_id = {s.id: s for s in services}
    candidates = _candidate_tables(session, list(by_id), origin, destination_country, currency)
    per_carrier: dict[int, list[TableRates]] = defaultdict(list)
    for table, zone_code in candidates.tables:
        service = by_id[table.service_id]
        per_carrier[service.carrier_id].append(
            _table_rates(
                table,
                service.code,
                zone_code,
                candidates.rules[table.zone_id],
                candidates.brackets[table.id],
            )
        )
    for carrier_id in carrier_ids:
        configs = tuple(_service_config(s) for s in services if s.carrier_id == carrier_id)
        cards[carrier_id] = RateCard(configs, tuple(per_carrier[carrier_id]))
    return cards


@dataclass
class _CandidateTables:
    """The rate tables that could apply, with their zone rules and brackets."""

    tables: list[tuple[RateTable, str]] = field(default_factory=list)  # with the zone code
    rules: defaultdict[int, list[ZoneRule]] = field(default_factory=lambda: defaultdict(list))
    brackets: defaultdict[int, list[Bracket]] = field(default_factory=lambda: defaultdict(list))


def _candidate_tables(
    session: Session,
    service_ids: list[int],
    origin: str,
    destination_country: str,
    currency: str | None,
) -> _CandidateTables:
    # The tables with the zone members that can match the destination: one row per member.
    query = (
        select(
            RateTable, ShippingZone.code, ZoneMember, RateBracket.up_to_g, RateBracket.price_minor
        )
        .join(ShippingZone, ShippingZone.id == RateTable.zone_id)
        .join(
            ZoneMember,
            and_(
                ZoneMember.zone_id == RateTable.zone_id, ZoneMember.country == destination_country
            ),
        )
        .outerjoin(RateBracket, RateBracket.rate_table_id == RateTable.id)
        .where(
            RateTable.service_id.in_(service_ids),
            RateTable.origin_country.in_([origin, ANY_ORIGIN]),
        )
        .order_by(RateTable.id, ZoneMember.id, RateBracket.up_to_g)
    )
    if currency is not None:
        query = query.where(RateTable.currency == currency)
    # Tables, their zone members in the destination country and their brackets, in one
    # statement: the rows repeat per member and bracket, so each is taken once.
    found = _CandidateTables()
    seen_tables: set[int] = set()
    seen_members: set[int] = set()
    seen_brackets: set[tuple[int, int]] = set()
    for table, zone_code, member, up_to_g, price_minor in session.execute(query):
        if table.id not in seen_tables:
            seen_tables.add(table.id)
            found.tables.append((table, zone_code))
        if member.id not in seen_members:
            seen_members.add(member.id)
            found.rules[member.zone_id].append(
                ZoneRule(member.country, member.region, member.postal_prefix)
            )
        if up_to_g is not None and (table.id, up_to_g) not in seen_brackets:
            seen_brackets.add((table.id, up_to_g))
            found.brackets[table.id].append(
                Bracket(up_to_g, from_minor(price_minor, table.currency))
            )
    return found


def _service_config(service: ShippingService) -> ServiceConfig:
    return ServiceConfig(
        id=service.id,
        code=service.code,
        name=service.name,
        level=service.level,
        min_days=service.min_days,
        max_days=service.max_days,
        scope=ServiceScope(service.scope),
    )


def _table_rates(
    table: RateTable,
    service_code: str,
    zone_code: str,
    rules: list[ZoneRule],
    brackets: list[Bracket],
) -> TableRates:
    cur = table.currency
    return TableRates(
        id=table.id,
        service_code=service_code,
        origin_country=None if table.origin_country == ANY_ORIGIN else table.origin_country,
        zone_code=zone_code,
        zone=tuple(rules),
        currency=cur,
        brackets=tuple(brackets),
        per_extra_kg=_decimal(table.per_extra_kg_minor, cur),
        free_over=_decimal(table.free_over_minor, cur),
        remote_surcharge=_decimal(table.remote_surcharge_minor, cur),
        remote_postal_prefixes=tuple(table.remote_postal_prefixes or ()),
    )


def _next_serial(session: Session, carrier_id: int) -> int:
    """The carrier's next label serial: one conditional UPDATE, so two labels never share one."""
    serial = session.execute(
        update(ShippingCarrier)
        .where(ShippingCarrier.id == carrier_id, ShippingCarrier.label_serial < MAX_S10_SERIAL)
        .values(label_serial=ShippingCarrier.label_serial + 1)
        .returning(ShippingCarrier.label_serial)
    ).scalar_one_or_none()
    if serial is None:
        raise Conflict(
            "this carrier has issued every tracking number of its prefix",
            code="tracking-numbers-exhausted",
        )
    return int(serial)


def _recorded_events(session: Session, tracking_number: str) -> list[TrackingEvent]:
    label = label_by_tracking_number(session, tracking_number)
    return [
        TrackingEvent(
            e.tracking_number,
            TrackingStatus(e.status),
            e.occurred_at,
            e.location,
            e.description,
            e.external_id,
        )
        for e in tracking_events(session, label.id)
    ]


def _adapter(session: Session, carrier: ShippingCarrier, card: RateCard | None = None) -> Carrier:
    context = CarrierContext(
        config=_config(carrier),
        rate_card=card or RateCard(),
        next_serial=lambda: _next_serial(session, carrier.id),
        recorded_events=lambda number: _recorded_events(session, number),
    )
    try:
        return carrier_for(context)
    except LookupError as exc:
        raise UnprocessableState(str(exc), code="carrier-integration-missing") from exc
