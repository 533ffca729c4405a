"""Shipping use cases: carrier configuration, quotes, labels, tracking and duty estimates.

Other domains call:

* :func:`quote` / :func:`get_option` (the cart): shipping options for a destination,
  sorted by price, each with a stable ``option_id`` the cart stores and re-validates;
* :func:`create_label`, :func:`void_label`, :func:`track`, :func:`record_tracking_event`
  (fulfilment): labels from the carrier integrations and the parcel's history; every
  tracking event publishes ``shipment.tracking_updated`` through the outbox;
* :func:`estimate_duties` (cart, checkout): import duty and tax of a cross-border parcel.

How a quote is built: the carriers that ship from the origin country to the destination
country are loaded with their active services and the rate tables that could apply, in a
fixed number of queries. Each carrier's integration prices the parcels (the built-in one
picks, per service, the table of the most specific zone matching the destination: a
postal prefix beats a region, a region beats a whole country, an exact origin beats
"any"). The estimated delivery dates count business days (Monday to Friday, public
holidays not modelled) from the day the parcel is handed over, in the carrier's time zone.

A destination no carrier serves gives an empty list, not an error.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

import pycountry
from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from mercato.auth.principal import Principal
from mercato.auth.service import audit
from mercato.db import utcnow
from mercato.errors import Conflict, NotFound, Unauthorized, UnprocessableState, ValidationProblem
from mercato.events import publish
from mercato.money import check_precision, from_minor, to_minor, validate_currency
from mercato.shipping import customs
from mercato.shipping.carriers import (
    MAX_S10_SERIAL,
    Bracket,
    Carrier,
    CarrierConfig,
    CarrierContext,
    CarrierInputError,
    Destination,
    InvalidSignature,
    LabelRequest,
    Rate,
    RateCard,
    RateRequest,
    ServiceConfig,
    ServiceScope,
    TableRateCarrier,
    TableRates,
    TrackingEvent,
    TrackingStatus,
    ZoneRule,
    carrier_for,
    normalise_postal,
    normalise_region,
    registered_adapters,
)
from mercato.shipping.customs import CustomsRules, DutyEstimate, DutyItem
from mercato.shipping.models import (
    ANY_ORIGIN,
    CarrierCountry,
    CustomsCountry,
    CustomsDutyRate,
    CustomsExchangeRate,
    RateBracket,
    RateTable,
    ShippingCarrier,
    ShippingLabel,
    ShippingService,
    ShippingZone,
    TrackingEventRecord,
    ZoneMember,
)
from mercato.shipping.schemas import (
    MAX_WEIGHT_G,
    CarrierIn,
    CarrierPatch,
    CustomsIn,
    RateTableIn,
    ServiceIn,
    ServicePatch,
    ZoneIn,
    ZoneMemberIn,
    ZonePatch,
    validate_country,
)

log = logging.getLogger(__name__)

MAX_PARCELS = 50
MAX_RATE = Decimal(10)
PPM = Decimal(1_000_000)
# Carriers' clocks drift and time zones get mixed up; a scan further ahead is a bug.
MAX_EVENT_CLOCK_SKEW = timedelta(days=1)


# --- values returned to other domains --------------------------------------------------------


@dataclass(frozen=True)
class ShippingOption:
    option_id: str
    carrier_code: str
    carrier_name: str
    service_code: str
    service_name: str
    level: str
    amount: Decimal
    currency: str
    free_shipping: bool
    remote_surcharge: Decimal
    min_days: int
    max_days: int
    earliest_delivery: date
    latest_delivery: date


@dataclass(frozen=True)
class WebhookResult:
    received: int
    recorded: int
    duplicates: int
    ignored: list[str]


# --- input checks --------------------------------------------------------------------------


def _country(value: str | None, field: str) -> str:
    try:
        return validate_country(value or "")
    except ValueError as exc:
        raise ValidationProblem.field(field, "not an ISO 3166-1 alpha-2 country code") from exc


def _currency(value: str | None, field: str) -> str:
    try:
        return validate_currency(value or "")
    except ValueError as exc:
        raise ValidationProblem.field(field, "not an ISO 4217 currency code") from exc


def _money(value: Decimal, currency: str, field: str) -> Decimal:
    """A non-negative amount with no more decimals than ``currency`` has."""
    if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
        raise ValidationProblem.field(field, "a finite amount of at least 0")
    try:
        return check_precision(value, currency)
    except ValueError as exc:
        raise ValidationProblem.field(field, str(exc)) from exc


def _optional_minor(value: Decimal | None, currency: str, field: str) -> int | None:
    return None if value is None else to_minor(_money(value, currency, field), currency)


def _decimal(units: int | None, currency: str) -> Decimal | None:
    return None if units is None else from_minor(units, currency)


def _ppm(rate: Decimal, field: str) -> int:
    """A rate (0.19 for 19%) in parts per million; at most 6 decimals."""
    if not rate.is_finite() or not 0 <= rate <= MAX_RATE:
        raise ValidationProblem.field(field, f"a fraction from 0 to {MAX_RATE} (19% is 0.19)")
    scaled = rate * PPM
    if scaled != scaled.to_integral_value():
        raise ValidationProblem.field(field, "at most 6 decimals")
    return int(scaled)


def _rate(ppm: int) -> Decimal:
    return Decimal(ppm) / PPM


def _hs_digits(code: str, field: str, minimum: int) -> str:
    digits = customs.normalise_hs(code)
    if not digits.isdigit() or not minimum <= len(digits) <= 10:
        raise ValidationProblem.field(field, f"an HS code of {minimum} to 10 digits")
    return digits


def _postal_prefix(value: str, field: str) -> str:
    prefix = normalise_postal(value)
    if not prefix.isalnum() or len(prefix) > 10:
        raise ValidationProblem.field(field, "1 to 10 letters or digits (spaces and - ignored)")
    return prefix


def _aware(value: datetime, field: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationProblem.field(field, "a timestamp with a UTC offset")
    return value


def _check_adapter(name: str, field: str) -> str:
    if name not in registered_adapters():
        known = ", ".join(registered_adapters())
        raise ValidationProblem.field(field, f"no carrier integration named {name!r} ({known})")
    return name


# --- carriers ------------------------------------------------------------------------------


def get_carrier(session: Session, carrier_id: int) -> ShippingCarrier:
    carrier = session.get(ShippingCarrier, carrier_id)
    if carrier is None:
        raise NotFound(f"carrier {carrier_id} not found")
    return carrier


def carrier_by_code(session: Session, code: str) -> ShippingCarrier | None:
    return session.scalar(select(ShippingCarrier).where(ShippingCarrier.code == code))


def list_carriers(session: Session) -> list[ShippingCarrier]:
    return list(session.scalars(select(ShippingCarrier).order_by(ShippingCarrier.code)))


def carrier_countries(
    session: Session, carrier_ids: Sequence[int]
) -> dict[int, dict[str, list[str]]]:
    """``{carrier_id: {"from": [...], "to": [...]}}``, countries sorted."""
    found: dict[int, dict[str, list[str]]] = {i: {"from": [], "to": []} for i in carrier_ids}
    if not carrier_ids:
        return found
    rows = session.execute(
        select(CarrierCountry.carrier_id, CarrierCountry.direction, CarrierCountry.country)
        .where(CarrierCountry.carrier_id.in_(carrier_ids))
        .order_by(CarrierCountry.country)
    )
    for carrier_id, direction, country in rows:
        found[carrier_id][direction].append(country)
    return found


def _set_countries(
    session: Session, carrier_id: int, direction: str, countries: Sequence[str], field: str
) -> list[str]:
    codes = sorted({_country(c, f"{field}[{i}]") for i, c in enumerate(countries)})
    if not codes:
        raise ValidationProblem.field(field, "at least one country")
    session.execute(
        delete(CarrierCountry).where(
            CarrierCountry.carrier_id == carrier_id, CarrierCountry.direction == direction
        )
    )
    session.add_all(
        CarrierCountry(carrier_id=carrier_id, direction=direction, country=c) for c in codes
    )
    return codes


def _carrier_snapshot(carrier: ShippingCarrier) -> dict[str, Any]:
    return {
        "code": carrier.code,
        "name": carrier.name,
        "active": carrier.active,
        "adapter": carrier.adapter,
        "tracking_prefix": carrier.tracking_prefix,
        "timezone": carrier.timezone,
        "webhook_secret": "set" if carrier.webhook_secret else None,
    }


def create_carrier(session: Session, actor: Principal, data: CarrierIn) -> ShippingCarrier:
    _check_adapter(data.adapter, "body.adapter")
    prefix = data.tracking_prefix.upper()
    if carrier_by_code(session, data.code) is not None:
        raise Conflict(f"carrier {data.code} exists", code="duplicate-code")
    if session.scalar(select(ShippingCarrier.id).where(ShippingCarrier.tracking_prefix == prefix)):
        raise Conflict(f"tracking prefix {prefix} is taken", code="duplicate-tracking-prefix")
    now = utcnow()
    carrier = ShippingCarrier(
        code=data.code,
        name=data.name,
        active=data.active,
        adapter=data.adapter,
        tracking_prefix=prefix,
        timezone=data.timezone,
        webhook_secret=data.webhook_secret,
        label_serial=0,
        created_at=now,
        updated_at=now,
    )
    session.add(carrier)
    session.flush()
    ships_from = _set_countries(session, carrier.id, "from", data.ships_from, "body.ships_from")
    ships_to = _set_countries(session, carrier.id, "to", data.ships_to, "body.ships_to")
    audit(
        session,
        actor,
        "shipping.carrier_created",
        "shipping_carrier",
        carrier.id,
        {**_carrier_snapshot(carrier), "ships_from": ships_from, "ships_to": ships_to},
    )
    return carrier


def update_carrier(
    session: Session, actor: Principal, carrier_id: int, patch: CarrierPatch
) -> ShippingCarrier:
    carrier = get_carrier(session, carrier_id)
    sent = patch.model_fields_set
    changes: dict[str, Any] = {}
    if patch.adapter is not None:
        _check_adapter(patch.adapter, "body.adapter")
    for name in ("name", "active", "adapter", "timezone"):
        value = getattr(patch, name)
        if value is not None and value != getattr(carrier, name):
            changes[name] = [getattr(carrier, name), value]
            setattr(carrier, name, value)
    if "webhook_secret" in sent and patch.webhook_secret != carrier.webhook_secret:
        carrier.webhook_secret = patch.webhook_secret
        changes["webhook_secret"] = "set" if patch.webhook_secret else "removed"
    if patch.ships_from is not None:
        changes["ships_from"] = _set_countries(
            session, carrier.id, "from", patch.ships_from, "body.ships_from"
        )
    if patch.ships_to is not None:
        changes["ships_to"] = _set_countries(
            session, carrier.id, "to", patch.ships_to, "body.ships_to"
        )
    if changes:
        carrier.updated_at = utcnow()
        audit(session, actor, "shipping.carrier_updated", "shipping_carrier", carrier.id, changes)
    session.flush()
    return carrier


# --- services ------------------------------------------------------------------------------


def get_service(session: Session, service_id: int) -> ShippingService:
    service = session.get(ShippingService, service_id)
    if service is None:
        raise NotFound(f"shipping service {service_id} not found")
    return service


def list_services(session: Session, carrier_ids: Sequence[int]) -> dict[int, list[ShippingService]]:
    found: dict[int, list[ShippingService]] = {i: [] for i in carrier_ids}
    if carrier_ids:
        rows = session.scalars(
            select(ShippingService)
            .where(ShippingService.carrier_id.in_(carrier_ids))
            .order_by(ShippingService.code)
        )
        for service in rows:
            found[service.carrier_id].append(service)
    return found


def _check_days(min_days: int, max_days: int) -> None:
    if max_days < min_days:
        raise ValidationProblem.field("body.max_days", f"at least min_days ({min_days})")


def create_service(
    session: Session, actor: Principal, carrier_id: int, data: ServiceIn
) -> ShippingService:
    carrier = get_carrier(session, carrier_id)
    _check_days(data.min_days, data.max_days)
    taken = session.scalar(
        select(ShippingService.id).where(
            ShippingService.carrier_id == carrier.id, ShippingService.code == data.code
        )
    )
    if taken:
        raise Conflict(
            f"carrier {carrier.code} already has service {data.code}", code="duplicate-code"
        )
    now = utcnow()
    service = ShippingService(
        carrier_id=carrier.id,
        code=data.code,
        name=data.name,
        level=data.level.value,
        scope=data.scope.value,
        min_days=data.min_days,
        max_days=data.max_days,
        active=data.active,
        created_at=now,
        updated_at=now,
    )
    session.add(service)
    session.flush()
    audit(
        session,
        actor,
        "shipping.service_created",
        "shipping_service",
        service.id,
        {"carrier": carrier.code, **data.model_dump(mode="json")},
    )
    return service


def update_service(
    session: Session, actor: Principal, service_id: int, patch: ServicePatch
) -> ShippingService:
    service = get_service(session, service_id)
    values = patch.model_dump(exclude_none=True, mode="json")
    _check_days(values.get("min_days", service.min_days), values.get("max_days", service.max_days))
    changes = {}
    for name, value in values.items():
        if value != getattr(service, name):
            changes[name] = [getattr(service, name), value]
            setattr(service, name, value)
    if changes:
        service.updated_at = utcnow()
        audit(session, actor, "shipping.service_updated", "shipping_service", service.id, changes)
    session.flush()
    return service


# --- zones ---------------------------------------------------------------------------------


def _region(country: str, region: str, field: str) -> str:
    code = normalise_region(country, region) or ""
    # pycountry's lookup is untyped; the annotation gives it a signature.
    lookup: Callable[..., object] = pycountry.subdivisions.get
    if lookup(code=f"{country}-{code}") is None:
        raise ValidationProblem.field(field, f"not an ISO 3166-2 subdivision of {country}")
    return code


def _clean_members(members: Sequence[ZoneMemberIn]) -> list[tuple[str, str | None, str | None]]:
    clean: list[tuple[str, str | None, str | None]] = []
    for i, member in enumerate(members):
        field = f"body.members[{i}]"
        country = _country(member.country, f"{field}.country")
        if member.region and member.postal_prefix:
            raise ValidationProblem.field(field, "give a region or a postal prefix, not both")
        region = _region(country, member.region, f"{field}.region") if member.region else None
        postal = (
            _postal_prefix(member.postal_prefix, f"{field}.postal_prefix")
            if member.postal_prefix
            else None
        )
        entry = (country, region, postal)
        if entry in clean:
            raise ValidationProblem.field(field, "listed twice")
        clean.append(entry)
    return clean


def _replace_members(
    session: Session, zone_id: int, members: list[tuple[str, str | None, str | None]]
) -> None:
    session.execute(delete(ZoneMember).where(ZoneMember.zone_id == zone_id))
    session.add_all(
        ZoneMember(zone_id=zone_id, country=c, region=r, postal_prefix=p) for c, r, p in members
    )


def get_zone(session: Session, zone_id: int) -> ShippingZone:
    zone = session.get(ShippingZone, zone_id)
    if zone is None:
        raise NotFound(f"shipping zone {zone_id} not found")
    return zone


def list_zones(session: Session) -> list[ShippingZone]:
    return list(session.scalars(select(ShippingZone).order_by(ShippingZone.code)))


def zone_members(session: Session, zone_ids: Sequence[int]) -> dict[int, list[ZoneMember]]:
    found: dict[int, list[ZoneMember]] = {i: [] for i in zone_ids}
    if zone_ids:
        rows = session.scalars(
            select(ZoneMember).where(ZoneMember.zone_id.in_(zone_ids)).order_by(ZoneMember.id)
        )
        for member in rows:
            found[member.zone_id].append(member)
    return found


def create_zone(session: Session, actor: Principal, data: ZoneIn) -> ShippingZone:
    members = _clean_members(data.members)
    if session.scalar(select(ShippingZone.id).where(ShippingZone.code == data.code)):
        raise Conflict(f"zone {data.code} exists", code="duplicate-code")
    now = utcnow()
    zone = ShippingZone(code=data.code, name=data.name, created_at=now, updated_at=now)
    session.add(zone)
    session.flush()
    _replace_members(session, zone.id, members)
    audit(
        session,
        actor,
        "shipping.zone_created",
        "shipping_zone",
        zone.id,
        {"code": zone.code, "name": zone.name, "members": [list(m) for m in members]},
    )
    return zone


def update_zone(session: Session, actor: Principal, zone_id: int, patch: ZonePatch) -> ShippingZone:
    zone = get_zone(session, zone_id)
    changes: dict[str, Any] = {}
    if patch.members is not None:
        members = _clean_members(patch.members)
        _replace_members(session, zone.id, members)
        changes["members"] = [list(m) for m in members]
    if patch.name is not None and patch.name != zone.name:
        changes["name"] = [zone.name, patch.name]
        zone.name = patch.name
    if changes:
        zone.updated_at = utcnow()
        audit(session, actor, "shipping.zone_updated", "shipping_zone", zone.id, changes)
    session.flush()
    return zone


def delete_zone(session: Session, actor: Principal, zone_id: int) -> None:
    zone = get_zone(session, zone_id)
    used = session.scalar(select(RateTable.id).where(RateTable.zone_id == zone.id).limit(1))
    if used is not None:
        raise Conflict(f"zone {zone.code} is used by rate table {used}", code="zone-in-use")
    session.execute(delete(ZoneMember).where(ZoneMember.zone_id == zone.id))
    session.delete(zone)
    session.flush()
    audit(session, actor, "shipping.zone_deleted", "shipping_zone", zone_id, {"code": zone.code})


# --- rate tables ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RateTableView:
    id: int
    service_id: int
    carrier_code: str
    service_code: str
    zone_id: int
    zone_code: str
    origin_country: str | None
    currency: str
    brackets: list[Bracket]
    per_extra_kg: Decimal | None
    free_over: Decimal | None
    remote_surcharge: Decimal | None
    remote_postal_prefixes: list[str]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class _TableValues:
    service_id: int
    zone_id: int
    origin_country: str
    currency: str
    brackets: list[tuple[int, int]]
    per_extra_kg_minor: int | None
    free_over_minor: int | None
    remote_surcharge_minor: int | None
    remote_postal_prefixes: list[str]


def _brackets(data: RateTableIn, currency: str) -> list[tuple[int, int]]:
    """(up_to_g, price in minor units), strictly ascending: each weight has one price."""
    clean: list[tuple[int, int]] = []
    for i, bracket in enumerate(data.brackets):
        field = f"body.brackets[{i}]"
        if not 0 < bracket.up_to_g <= MAX_WEIGHT_G:
            raise ValidationProblem.field(f"{field}.up_to_g", f"1 to {MAX_WEIGHT_G} grams")
        if clean and bracket.up_to_g <= clean[-1][0]:
            raise ValidationProblem.field(
                f"{field}.up_to_g",
                f"overlaps brackets[{i - 1}] (up to {clean[-1][0]} g): list brackets once each, "
                "in ascending order of weight",
            )
        price = _money(bracket.price, currency, f"{field}.price")
        clean.append((bracket.up_to_g, to_minor(price, currency)))
    if not clean:
        raise ValidationProblem.field("body.brackets", "at least one bracket")
    return clean


def _table_values(session: Session, data: RateTableIn) -> _TableValues:
    if session.get(ShippingService, data.service_id) is None:
        raise ValidationProblem.field("body.service_id", f"no shipping service {data.service_id}")
    if session.get(ShippingZone, data.zone_id) is None:
        raise ValidationProblem.field("body.zone_id", f"no shipping zone {data.zone_id}")
    currency = _currency(data.currency, "body.currency")
    origin = (
        ANY_ORIGIN
        if data.origin_country is None
        else _country(data.origin_country, "body.origin_country")
    )
    prefixes = [
        _postal_prefix(p, f"body.remote_postal_prefixes[{i}]")
        for i, p in enumerate(data.remote_postal_prefixes)
    ]
    if len(set(prefixes)) != len(prefixes):
        raise ValidationProblem.field("body.remote_postal_prefixes", "a prefix is listed twice")
    if bool(prefixes) != (data.remote_surcharge is not None):
        raise ValidationProblem.field(
            "body.remote_surcharge", "give remote_surcharge and remote_postal_prefixes together"
        )
    return _TableValues(
        service_id=data.service_id,
        zone_id=data.zone_id,
        origin_country=origin,
        currency=currency,
        brackets=_brackets(data, currency),
        per_extra_kg_minor=_optional_minor(data.per_extra_kg, currency, "body.per_extra_kg"),
        free_over_minor=_optional_minor(data.free_over, currency, "body.free_over"),
        remote_surcharge_minor=_optional_minor(
            data.remote_surcharge, currency, "body.remote_surcharge"
        ),
        remote_postal_prefixes=prefixes,
    )


def _check_unique_table(session: Session, values: _TableValues, exclude_id: int | None) -> None:
    query = select(RateTable.id).where(
        RateTable.service_id == values.service_id,
        RateTable.zone_id == values.zone_id,
        RateTable.origin_country == values.origin_country,
        RateTable.currency == values.currency,
    )
    if exclude_id is not None:
        query = query.where(RateTable.id != exclude_id)
    existing = session.scalar(query)
    if existing is not None:
        raise Conflict(
            f"rate table {existing} already prices this service, zone, origin and currency",
            code="duplicate-rate-table",
        )


def _apply_table(session: Session, table: RateTable, values: _TableValues) -> None:
    table.service_id = values.service_id
    table.zone_id = values.zone_id
    table.origin_country = values.origin_country
    table.currency = values.currency
    table.per_extra_kg_minor = values.per_extra_kg_minor
    table.free_over_minor = values.free_over_minor
    table.remote_surcharge_minor = values.remote_surcharge_minor
    table.remote_postal_prefixes = values.remote_postal_prefixes
    table.updated_at = utcnow()
    session.flush()
    session.execute(delete(RateBracket).where(RateBracket.rate_table_id == table.id))
    session.add_all(
        RateBracket(rate_table_id=table.id, up_to_g=g, price_minor=p) for g, p in values.brackets
    )
    session.flush()


def _table_audit(data: RateTableIn) -> dict[str, Any]:
    return data.model_dump(mode="json")


def create_rate_table(session: Session, actor: Principal, data: RateTableIn) -> RateTable:
    values = _table_values(session, data)
    _check_unique_table(session, values, None)
    table = RateTable(created_at=utcnow())
    session.add(table)
    _apply_table(session, table, values)
    audit(
        session,
        actor,
        "shipping.rate_table_created",
        "shipping_rate_table",
        table.id,
        _table_audit(data),
    )
    return table


def replace_rate_table(
    session: Session, actor: Principal, table_id: int, data: RateTableIn
) -> RateTable:
    table = get_rate_table(session, table_id)
    values = _table_values(session, data)
    _check_unique_table(session, values, table.id)
    _apply_table(session, table, values)
    audit(
        session,
        actor,
        "shipping.rate_table_replaced",
        "shipping_rate_table",
        table.id,
        _table_audit(data),
    )
    return table


def delete_rate_table(session: Session, actor: Principal, table_id: int) -> None:
    table = get_rate_table(session, table_id)
    session.execute(delete(RateBracket).where(RateBracket.rate_table_id == table.id))
    session.delete(table)
    session.flush()
    audit(session, actor, "shipping.rate_table_deleted", "shipping_rate_table", table_id)


def get_rate_table(session: Session, table_id: int) -> RateTable:
    table = session.get(RateTable, table_id)
    if table is None:
        raise NotFound(f"rate table {table_id} not found")
    return table


def list_rate_tables(
    session: Session, *, service_id: int | None = None, zone_id: int | None = None
) -> list[RateTable]:
    query = select(RateTable).order_by(RateTable.id)
    if service_id is not None:
        query = query.where(RateTable.service_id == service_id)
    if zone_id is not None:
        query = query.where(RateTable.zone_id == zone_id)
    return list(session.scalars(query))


def rate_table_views(session: Session, tables: Sequence[RateTable]) -> list[RateTableView]:
    """Tables with their brackets, service, carrier and zone codes (four queries in all)."""
    if not tables:
        return []
    ids = [t.id for t in tables]
    brackets: dict[int, list[RateBracket]] = defaultdict(list)
    for row in session.scalars(
        select(RateBracket).where(RateBracket.rate_table_id.in_(ids)).order_by(RateBracket.up_to_g)
    ):
        brackets[row.rate_table_id].append(row)
    services = {
        sid: (scode, ccode)
        for sid, scode, ccode in session.execute(
            select(ShippingService.id, ShippingService.code, ShippingCarrier.code)
            .join(ShippingCarrier, ShippingCarrier.id == ShippingService.carrier_id)
            .where(ShippingService.id.in_({t.service_id for t in tables}))
        )
    }
    zones = {
        zid: code
        for zid, code in session.execute(
            select(ShippingZone.id, ShippingZone.code).where(
                ShippingZone.id.in_({t.zone_id for t in tables})
            )
        )
    }
    return [_view(t, brackets[t.id], services[t.service_id], zones[t.zone_id]) for t in tables]


def _view(
    table: RateTable, brackets: list[RateBracket], codes: tuple[str, str], zone_code: str
) -> RateTableView:
    cur = table.currency
    return RateTableView(
        id=table.id,
        service_id=table.service_id,
        carrier_code=codes[1],
        service_code=codes[0],
        zone_id=table.zone_id,
        zone_code=zone_code,
        origin_country=None if table.origin_country == ANY_ORIGIN else table.origin_country,
        currency=cur,
        brackets=[Bracket(b.up_to_g, from_minor(b.price_minor, cur)) for b in brackets],
        per_extra_kg=_decimal(table.per_extra_kg_minor, cur),
        free_over=_decimal(table.free_over_minor, cur),
        remote_surcharge=_decimal(table.remote_surcharge_minor, cur),
        remote_postal_prefixes=list(table.remote_postal_prefixes or []),
        created_at=table.created_at,
        updated_at=table.updated_at,
    )


# --- loading what the carriers need ------------------------------------------------------------


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


def _route_carriers(
    session: Session, origin: str, destination: str, carrier_id: int | None = None
) -> list[ShippingCarrier]:
    """Active carriers shipping from ``origin`` to ``destination`` (one query)."""
    ships_from = aliased(CarrierCountry)
    ships_to = aliased(CarrierCountry)
    query = (
        select(ShippingCarrier)
        .join(
            ships_from,
            and_(
                ships_from.carrier_id == ShippingCarrier.id,
                ships_from.direction == "from",
                ships_from.country == origin,
            ),
        )
        .join(
            ships_to,
            and_(
                ships_to.carrier_id == ShippingCarrier.id,
                ships_to.direction == "to",
                ships_to.country == destination,
            ),
        )
        .where(ShippingCarrier.active.is_(True))
        .order_by(ShippingCarrier.code)
    )
    if carrier_id is not None:
        query = query.where(ShippingCarrier.id == carrier_id)
    return list(session.scalars(query))


def _route_with_services(
    session: Session, origin: str, destination: str
) -> tuple[list[ShippingCarrier], list[ShippingService]]:
    """The carriers on the route and their active services, in one query."""
    ships_from = aliased(CarrierCountry)
    ships_to = aliased(CarrierCountry)
    rows = session.execute(
        select(ShippingCarrier, ShippingService)
        .join(
            ships_from,
            and_(
                ships_from.carrier_id == ShippingCarrier.id,
                ships_from.direction == "from",
                ships_from.country == origin,
            ),
        )
        .join(
            ships_to,
            and_(
                ships_to.carrier_id == ShippingCarrier.id,
                ships_to.direction == "to",
                ships_to.country == destination,
            ),
        )
        .outerjoin(
            ShippingService,
            and_(
                ShippingService.carrier_id == ShippingCarrier.id, ShippingService.active.is_(True)
            ),
        )
        .where(ShippingCarrier.active.is_(True))
        .order_by(ShippingCarrier.code, ShippingService.code)
    ).all()
    carriers: dict[int, ShippingCarrier] = {}
    services: list[ShippingService] = []
    for carrier, service in rows:
        carriers.setdefault(carrier.id, carrier)
        if service is not None:
            services.append(service)
    return list(carriers.values()), services


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
            RateTable.service_id.in_(list(by_id)),
            RateTable.origin_country.in_([origin, ANY_ORIGIN]),
        )
        .order_by(RateTable.id, ZoneMember.id, RateBracket.up_to_g)
    )
    if currency is not None:
        query = query.where(RateTable.currency == currency)
    # Tables, their zone members in the destination country and their brackets, in one
    # statement: the rows repeat per member and bracket, so each is taken once.
    tables: list[tuple[RateTable, str]] = []
    rules: dict[int, list[ZoneRule]] = defaultdict(list)
    brackets: dict[int, list[Bracket]] = defaultdict(list)
    seen_tables: set[int] = set()
    seen_members: set[int] = set()
    seen_brackets: set[tuple[int, int]] = set()
    for table, zone_code, member, up_to_g, price_minor in session.execute(query):
        if table.id not in seen_tables:
            seen_tables.add(table.id)
            tables.append((table, zone_code))
        if member.id not in seen_members:
            seen_members.add(member.id)
            rules[member.zone_id].append(
                ZoneRule(member.country, member.region, member.postal_prefix)
            )
        if up_to_g is not None and (table.id, up_to_g) not in seen_brackets:
            seen_brackets.add((table.id, up_to_g))
            brackets[table.id].append(Bracket(up_to_g, from_minor(price_minor, table.currency)))
    per_carrier: dict[int, list[TableRates]] = defaultdict(list)
    for table, zone_code in tables:
        service = by_id[table.service_id]
        per_carrier[service.carrier_id].append(
            _table_rates(table, service.code, zone_code, rules[table.zone_id], brackets[table.id])
        )
    for carrier_id in carrier_ids:
        configs = tuple(_service_config(s) for s in services if s.carrier_id == carrier_id)
        cards[carrier_id] = RateCard(configs, tuple(per_carrier[carrier_id]))
    return cards


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


# --- quotes --------------------------------------------------------------------------------


def add_business_days(start: date, days: int) -> date:
    """``days`` working days (Monday to Friday) after ``start``, which rolls past a weekend."""
    current = start
    while current.weekday() >= 5:
        current += timedelta(days=1)
    remaining = days
    while remaining > 0:
        current += timedelta(days=1)
        if current.weekday() < 5:
            remaining -= 1
    return current


def _parcels(parcels: Sequence[int] | None, total_weight_g: int | None) -> tuple[int, ...]:
    if (parcels is None) == (total_weight_g is None):
        raise ValidationProblem.field("body.parcels", "give either parcels or total_weight_g")
    if total_weight_g is not None:
        weights, field = [total_weight_g], "body.total_weight_g"
    else:
        weights, field = list(parcels or []), "body.parcels"
        if not 1 <= len(weights) <= MAX_PARCELS:
            raise ValidationProblem.field(field, f"1 to {MAX_PARCELS} parcels")
    for i, weight in enumerate(weights):
        name = field if total_weight_g is not None else f"{field}[{i}]"
        if (
            isinstance(weight, bool)
            or not isinstance(weight, int)
            or not 0 < weight <= MAX_WEIGHT_G
        ):
            raise ValidationProblem.field(name, f"a whole number of grams from 1 to {MAX_WEIGHT_G}")
    return tuple(weights)


def _destination(destination: Destination) -> Destination:
    country = _country(destination.country, "body.destination.country")
    postal = (destination.postal_code or "").strip() or None
    if postal is not None and len(postal) > 20:
        raise ValidationProblem.field("body.destination.postal_code", "at most 20 characters")
    return Destination(country, normalise_region(country, destination.region), postal)


def _rate_request(
    origin_country: str,
    destination: Destination,
    parcels: Sequence[int] | None,
    total_weight_g: int | None,
    order_value: Decimal,
    currency: str,
) -> RateRequest:
    origin = _country(origin_country, "body.origin_country")
    dest = _destination(destination)
    weights = _parcels(parcels, total_weight_g)
    cur = _currency(currency, "body.currency")
    value = _money(order_value, cur, "body.order_value")
    return RateRequest(origin, dest, weights, value, cur)


def _option_id(rate: Rate) -> str:
    """Stable for the same carrier, service, price source and amount: a price change
    gives another id, so a stored option never silently costs something else."""
    fingerprint = f"{rate.source}|{rate.amount}|{rate.currency}".encode()
    return f"{rate.carrier_code}:{rate.service_code}:{hashlib.sha256(fingerprint).hexdigest()[:12]}"


def _option(config: CarrierConfig, rate: Rate, at: datetime) -> ShippingOption:
    handed_over = at.astimezone(ZoneInfo(config.timezone)).date()
    return ShippingOption(
        option_id=_option_id(rate),
        carrier_code=rate.carrier_code,
        carrier_name=config.name,
        service_code=rate.service_code,
        service_name=rate.service_name,
        level=rate.level,
        amount=rate.amount,
        currency=rate.currency,
        free_shipping=rate.free_shipping,
        remote_surcharge=rate.remote_surcharge,
        min_days=rate.min_days,
        max_days=rate.max_days,
        earliest_delivery=add_business_days(handed_over, rate.min_days),
        latest_delivery=add_business_days(handed_over, rate.max_days),
    )


def _carrier_rates(carrier: Carrier, config: CarrierConfig, request: RateRequest) -> list[Rate]:
    if isinstance(carrier, TableRateCarrier):
        return carrier.rates(request)
    try:
        rates = carrier.rates(request)
    except Exception:  # a carrier API that is down must not take checkout down with it
        log.exception("carrier %s could not rate a parcel", config.code)
        return []
    return [r for r in rates if r.currency == request.currency and r.amount.is_finite()]


def quote(
    session: Session,
    *,
    origin_country: str,
    destination: Destination,
    parcels: Sequence[int] | None = None,
    total_weight_g: int | None = None,
    order_value: Decimal,
    currency: str,
    at: datetime,
) -> list[ShippingOption]:
    """Every way to ship these parcels, cheapest first; [] when nobody serves the route.

    ``parcels`` lists each parcel's weight in grams (each is priced separately);
    ``total_weight_g`` is the same as one parcel. ``order_value`` (in ``currency``) decides
    free shipping. Only rate tables in ``currency`` apply: there is no conversion.
    """
    request = _rate_request(
        origin_country, destination, parcels, total_weight_g, order_value, currency
    )
    at = _aware(at, "body.at")
    carriers, services = _route_with_services(
        session, request.origin_country, request.destination.country
    )
    cards = _rate_cards(
        session,
        [c.id for c in carriers],
        request.origin_country,
        request.destination.country,
        request.currency,
        services,
    )
    options = []
    for carrier in carriers:
        config = _config(carrier)
        try:
            adapter = _adapter(session, carrier, cards[carrier.id])
        except UnprocessableState:
            log.error("carrier %s names an unknown integration %s", carrier.code, carrier.adapter)
            continue
        options += [_option(config, r, at) for r in _carrier_rates(adapter, config, request)]
    return sorted(
        options,
        key=lambda o: (o.amount, o.max_days, o.min_days, o.carrier_code, o.service_code),
    )


def get_option(
    session: Session,
    option_id: str,
    *,
    origin_country: str,
    destination: Destination,
    parcels: Sequence[int] | None = None,
    total_weight_g: int | None = None,
    order_value: Decimal,
    currency: str,
    at: datetime,
) -> ShippingOption | None:
    """The option again, if the same inputs still give it at the same price; else None."""
    options = quote(
        session,
        origin_country=origin_country,
        destination=destination,
        parcels=parcels,
        total_weight_g=total_weight_g,
        order_value=order_value,
        currency=currency,
        at=at,
    )
    return next((o for o in options if o.option_id == option_id), None)


# --- labels --------------------------------------------------------------------------------


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


def _check_customs(request: LabelRequest) -> list[dict[str, Any]]:
    origin, destination = request.ship_from.country, request.ship_to.country
    if customs.crosses_customs_border(origin, destination) and not request.customs:
        raise ValidationProblem.field(
            "body.customs_items",
            f"a customs declaration is required from {origin} to {destination}",
        )
    declared: list[dict[str, Any]] = []
    for i, item in enumerate(request.customs):
        field = f"body.customs_items[{i}]"
        if not item.description.strip() or len(item.description) > 200:
            raise ValidationProblem.field(f"{field}.description", "1 to 200 characters")
        hs = _hs_digits(item.hs_code, f"{field}.hs_code", 6)
        country = _country(item.origin_country, f"{field}.origin_country")
        cur = _currency(item.currency, f"{field}.currency")
        if declared and cur != declared[0]["currency"]:
            raise ValidationProblem.field(f"{field}.currency", "all items in one currency")
        value = _money(item.value, cur, f"{field}.value")
        if item.quantity <= 0:
            raise ValidationProblem.field(f"{field}.quantity", "at least 1")
        declared.append(
            {
                "description": item.description.strip(),
                "hs_code": hs,
                "origin_country": country,
                "quantity": item.quantity,
                "value": str(value),
                "currency": cur,
            }
        )
    return declared


def _label_route(session: Session, request: LabelRequest) -> tuple[ShippingCarrier, str, str]:
    origin = _country(request.ship_from.country, "body.ship_from.country")
    destination = _country(request.ship_to.country, "body.ship_to.country")
    if isinstance(request.weight_g, bool) or not 0 < request.weight_g <= MAX_WEIGHT_G:
        raise ValidationProblem.field("body.weight_g", f"1 to {MAX_WEIGHT_G} grams")
    if request.reference is not None and len(request.reference) > 64:
        raise ValidationProblem.field("body.reference", "at most 64 characters")
    carrier = carrier_by_code(session, request.carrier_code)
    if carrier is None or not carrier.active:
        raise ValidationProblem.field("body.carrier_code", "no active carrier with this code")
    if not _route_carriers(session, origin, destination, carrier.id):
        raise ValidationProblem.field(
            "body.ship_to.country", f"{carrier.code} does not ship from {origin} to {destination}"
        )
    return carrier, origin, destination


def create_label(session: Session, actor: Principal, request: LabelRequest) -> ShippingLabel:
    """Buy a label for one parcel. Cross-border parcels need their customs items."""
    carrier, origin, destination = _label_route(session, request)
    declared = _check_customs(request)
    card = _rate_cards(session, [carrier.id], origin, destination, None)[carrier.id]
    if card.service(request.service_code) is None:
        raise ValidationProblem.field("body.service_code", "no active service with this code")
    adapter = _adapter(session, carrier, card)
    dest = Destination(destination, request.ship_to.region, request.ship_to.postal_code)
    if isinstance(adapter, TableRateCarrier) and not adapter.covers(
        request.service_code, origin, dest, request.weight_g
    ):
        raise ValidationProblem.field(
            "body.service_code",
            f"does not take {request.weight_g} g parcels from {origin} to this destination",
        )
    try:
        label = adapter.create_label(request)
    except CarrierInputError as exc:
        raise ValidationProblem.field(exc.field, exc.reason) from exc
    service = card.service(request.service_code)
    assert service is not None
    row = ShippingLabel(
        tracking_number=label.tracking_number,
        carrier_id=carrier.id,
        service_id=service.id,
        carrier_code=carrier.code,
        service_code=service.code,
        reference=request.reference,
        origin_country=origin,
        destination_country=destination,
        weight_g=request.weight_g,
        format=label.format.value,
        content=label.content,
        url=label.url,
        customs=declared,
        status=TrackingStatus.LABEL_CREATED.value,
        status_at=None,
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    audit(
        session,
        actor,
        "shipping.label_created",
        "shipping_label",
        row.id,
        {
            "tracking_number": row.tracking_number,
            "carrier": carrier.code,
            "service": service.code,
            "reference": request.reference,
        },
    )
    publish(
        session,
        "shipment.label_created",
        _label_event(row),
        aggregate_type="shipping_label",
        aggregate_id=row.id,
    )
    return row


def _label_event(label: ShippingLabel) -> dict[str, Any]:
    return {
        "label_id": label.id,
        "tracking_number": label.tracking_number,
        "carrier": label.carrier_code,
        "service": label.service_code,
        "reference": label.reference,
        "origin_country": label.origin_country,
        "destination_country": label.destination_country,
        "status": label.status,
    }


def get_label(session: Session, label_id: int) -> ShippingLabel:
    label = session.get(ShippingLabel, label_id, populate_existing=True)
    if label is None:
        raise NotFound(f"label {label_id} not found")
    return label


def label_by_tracking_number(session: Session, tracking_number: str) -> ShippingLabel:
    label = session.scalar(
        select(ShippingLabel)
        .where(ShippingLabel.tracking_number == tracking_number.strip().upper())
        .execution_options(populate_existing=True)
    )
    if label is None:
        raise NotFound(f"no label with tracking number {tracking_number}")
    return label


def list_labels(
    session: Session, *, reference: str | None, limit: int = 100, before: int | None = None
) -> list[ShippingLabel]:
    """Newest first; ``before`` continues after the label with that id."""
    query = select(ShippingLabel).order_by(ShippingLabel.id.desc()).limit(limit)
    if before is not None:
        query = query.where(ShippingLabel.id < before)
    if reference is not None:
        query = query.where(ShippingLabel.reference == reference)
    return list(session.scalars(query))


def forget_label_contents(session: Session, references: Sequence[str]) -> int:
    """Drop the printable content (it carries the recipient's name, address and phone) of
    the labels for these references; tracking and customs data stay. For erasure."""
    if not references:
        return 0
    result = session.execute(
        update(ShippingLabel)
        .where(ShippingLabel.reference.in_(list(references)), ShippingLabel.content.is_not(None))
        .values(content=None)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def void_label(session: Session, actor: Principal, label_id: int) -> ShippingLabel:
    """Cancel a label no carrier has scanned yet."""
    label = get_label(session, label_id)
    claimed = session.execute(
        update(ShippingLabel)
        .where(
            ShippingLabel.id == label.id,
            ShippingLabel.voided_at.is_(None),
            ShippingLabel.status == TrackingStatus.LABEL_CREATED.value,
        )
        .values(voided_at=utcnow())
        .returning(ShippingLabel.id)
    ).scalar_one_or_none()
    if claimed is None:
        raise UnprocessableState(
            f"label {label.tracking_number} is {'voided' if label.voided_at else label.status}; "
            "only an unused label can be voided"
        )
    carrier = get_carrier(session, label.carrier_id)
    _adapter(session, carrier).void_label(label.tracking_number)
    label = get_label(session, label_id)
    audit(
        session,
        actor,
        "shipping.label_voided",
        "shipping_label",
        label.id,
        {"tracking_number": label.tracking_number},
    )
    publish(
        session,
        "shipment.label_voided",
        _label_event(label),
        aggregate_type="shipping_label",
        aggregate_id=label.id,
    )
    return label


# --- tracking ------------------------------------------------------------------------------


def tracking_events(session: Session, label_id: int) -> list[TrackingEventRecord]:
    return list(
        session.scalars(
            select(TrackingEventRecord)
            .where(TrackingEventRecord.label_id == label_id)
            .order_by(TrackingEventRecord.occurred_at, TrackingEventRecord.id)
        )
    )


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


def track(session: Session, tracking_number: str) -> list[TrackingEvent]:
    """The parcel's history as its carrier integration reports it, oldest first."""
    label = label_by_tracking_number(session, tracking_number)
    carrier = get_carrier(session, label.carrier_id)
    return _adapter(session, carrier).track(label.tracking_number)


def _check_event(
    status: TrackingStatus | str, at: datetime, location: str | None, description: str | None
) -> TrackingStatus:
    try:
        parsed = TrackingStatus(status)
    except ValueError as exc:
        raise ValidationProblem.field(
            "body.status", "one of " + ", ".join(s.value for s in TrackingStatus)
        ) from exc
    _aware(at, "body.occurred_at")
    if at > utcnow() + MAX_EVENT_CLOCK_SKEW:
        raise ValidationProblem.field("body.occurred_at", "more than a day in the future")
    if location is not None and len(location) > 200:
        raise ValidationProblem.field("body.location", "at most 200 characters")
    if description is not None and len(description) > 2000:
        raise ValidationProblem.field("body.description", "at most 2000 characters")
    return parsed


def _insert_event(session: Session, record: TrackingEventRecord) -> bool:
    """False when the carrier's event id is already recorded (a retried webhook)."""
    if record.external_id is not None:
        seen = session.scalar(
            select(TrackingEventRecord.id).where(
                TrackingEventRecord.carrier_id == record.carrier_id,
                TrackingEventRecord.external_id == record.external_id,
            )
        )
        if seen is not None:
            return False
    try:
        # A concurrent duplicate loses on the unique constraint; only its savepoint rolls back.
        with session.begin_nested():
            session.add(record)
            session.flush()
    except IntegrityError:
        return False
    return True


def record_tracking_event(
    session: Session,
    tracking_number: str,
    status: TrackingStatus | str,
    at: datetime,
    location: str | None = None,
    description: str | None = None,
    *,
    event_id: str | None = None,
    source: str = "api",
    actor: Principal | None = None,
) -> TrackingEventRecord | None:
    """Record a scan and publish ``shipment.tracking_updated``.

    The label's status follows the latest event by ``at`` (events may arrive out of
    order). With an ``event_id`` already recorded for this carrier nothing happens and
    None is returned.
    """
    parsed = _check_event(status, at, location, description)
    label = label_by_tracking_number(session, tracking_number)
    if label.voided_at is not None:
        raise UnprocessableState(f"label {label.tracking_number} was voided")
    record = TrackingEventRecord(
        label_id=label.id,
        carrier_id=label.carrier_id,
        tracking_number=label.tracking_number,
        status=parsed.value,
        occurred_at=at,
        location=location,
        description=description,
        source=source,
        external_id=event_id,
        created_at=utcnow(),
    )
    if not _insert_event(session, record):
        return None
    # Latest event wins, decided in the WHERE clause so concurrent scans cannot regress it.
    session.execute(
        update(ShippingLabel)
        .where(
            ShippingLabel.id == label.id,
            or_(ShippingLabel.status_at.is_(None), ShippingLabel.status_at <= at),
        )
        .values(status=parsed.value, status_at=at)
    )
    label = get_label(session, label.id)
    if actor is not None:
        audit(
            session,
            actor,
            "shipping.tracking_recorded",
            "shipping_label",
            label.id,
            {"status": parsed.value, "occurred_at": at.isoformat(), "event_id": event_id},
        )
    # The carrier's description is left out: it can name who signed for the parcel.
    publish(
        session,
        "shipment.tracking_updated",
        {
            **_label_event(label),
            "event": {
                "id": record.id,
                "status": parsed.value,
                "occurred_at": at.isoformat(),
                "location": location,
                "source": source,
                "carrier_event_id": event_id,
            },
        },
        aggregate_type="shipping_label",
        aggregate_id=label.id,
    )
    return record


def receive_webhook(
    session: Session, carrier_code: str, headers: Mapping[str, str], body: bytes
) -> WebhookResult:
    """Verify and record a carrier's tracking webhook.

    A bad signature is a 401 and a malformed payload a 422, both before anything is
    written. Events for tracking numbers that are not this carrier's labels, or for voided
    labels, are skipped and listed in ``ignored`` (retrying would not help).
    """
    carrier = carrier_by_code(session, carrier_code)
    if carrier is None:
        raise NotFound(f"carrier {carrier_code} not found")
    try:
        events = _adapter(session, carrier).parse_webhook(headers, body)
    except InvalidSignature as exc:
        raise Unauthorized(str(exc), code="invalid-signature") from exc
    except CarrierInputError as exc:
        raise ValidationProblem.field(exc.field, exc.reason) from exc
    labels = _labels_by_number(session, carrier.id, {e.tracking_number for e in events})
    recorded = duplicates = 0
    ignored: list[str] = []
    for event in events:
        label = labels.get(event.tracking_number.strip().upper())
        if label is None or label.voided_at is not None:
            ignored.append(event.tracking_number)
            continue
        done = record_tracking_event(
            session,
            label.tracking_number,
            event.status,
            event.occurred_at,
            event.location,
            event.description,
            event_id=event.event_id,
            source="webhook",
        )
        if done is None:
            duplicates += 1
        else:
            recorded += 1
    return WebhookResult(len(events), recorded, duplicates, sorted(set(ignored)))


def _labels_by_number(
    session: Session, carrier_id: int, numbers: Iterable[str]
) -> dict[str, ShippingLabel]:
    wanted = sorted({n.strip().upper() for n in numbers})
    if not wanted:
        return {}
    rows = session.scalars(
        select(ShippingLabel).where(
            ShippingLabel.carrier_id == carrier_id, ShippingLabel.tracking_number.in_(wanted)
        )
    )
    return {label.tracking_number: label for label in rows}


# --- customs configuration -------------------------------------------------------------------


@dataclass(frozen=True)
class DutyRateView:
    hs_prefix: str
    rate: Decimal
    description: str | None


@dataclass(frozen=True)
class CustomsView:
    country: str
    currency: str
    duty_de_minimis: Decimal | None
    tax_de_minimis: Decimal | None
    default_duty_rate: Decimal
    import_tax_rate: Decimal
    tax_name: str
    valuation: str
    preferential_origins: list[str]
    duty_rates: list[DutyRateView]
    note: str | None
    updated_at: datetime


def _clean_duty_rates(data: CustomsIn) -> list[tuple[str, int, str | None]]:
    clean: list[tuple[str, int, str | None]] = []
    seen: set[str] = set()
    for i, entry in enumerate(data.duty_rates):
        field = f"body.duty_rates[{i}]"
        prefix = _hs_digits(entry.hs_prefix, f"{field}.hs_prefix", 2)
        if prefix in seen:
            raise ValidationProblem.field(f"{field}.hs_prefix", "listed twice")
        seen.add(prefix)
        clean.append((prefix, _ppm(entry.rate, f"{field}.rate"), entry.description))
    return clean


def put_customs(
    session: Session, actor: Principal, country: str, data: CustomsIn
) -> CustomsCountry:
    """Create or replace the import rules of one destination country."""
    code = _country(country, "path.country")
    currency = _currency(data.currency, "body.currency")
    values = {
        "currency": currency,
        "duty_de_minimis_minor": _optional_minor(
            data.duty_de_minimis, currency, "body.duty_de_minimis"
        ),
        "tax_de_minimis_minor": _optional_minor(
            data.tax_de_minimis, currency, "body.tax_de_minimis"
        ),
        "default_duty_ppm": _ppm(data.default_duty_rate, "body.default_duty_rate"),
        "import_tax_ppm": _ppm(data.import_tax_rate, "body.import_tax_rate"),
        "tax_name": data.tax_name,
        "valuation": data.valuation,
        "preferential_origins": sorted(
            {
                _country(c, f"body.preferential_origins[{i}]")
                for i, c in enumerate(data.preferential_origins)
            }
        ),
        "note": data.note,
        "updated_at": utcnow(),
    }
    rates = _clean_duty_rates(data)
    row = session.get(CustomsCountry, code)
    if row is None:
        row = CustomsCountry(country=code, **values)
        session.add(row)
    else:
        for name, value in values.items():
            setattr(row, name, value)
    session.flush()
    session.execute(delete(CustomsDutyRate).where(CustomsDutyRate.country == code))
    session.add_all(
        CustomsDutyRate(country=code, hs_prefix=p, rate_ppm=r, description=d) for p, r, d in rates
    )
    session.flush()
    audit(
        session,
        actor,
        "shipping.customs_set",
        "customs_country",
        code,
        data.model_dump(mode="json"),
    )
    return row


def get_customs(session: Session, country: str) -> CustomsCountry:
    row = session.get(CustomsCountry, country.upper(), populate_existing=True)
    if row is None:
        raise NotFound(f"no customs rules for {country}")
    return row


def list_customs(session: Session) -> list[CustomsCountry]:
    return list(session.scalars(select(CustomsCountry).order_by(CustomsCountry.country)))


def delete_customs(session: Session, actor: Principal, country: str) -> None:
    row = get_customs(session, country)
    session.execute(delete(CustomsDutyRate).where(CustomsDutyRate.country == row.country))
    session.delete(row)
    session.flush()
    audit(session, actor, "shipping.customs_deleted", "customs_country", row.country)


def customs_views(session: Session, rows: Sequence[CustomsCountry]) -> list[CustomsView]:
    rates: dict[str, list[CustomsDutyRate]] = defaultdict(list)
    if rows:
        for rate in session.scalars(
            select(CustomsDutyRate)
            .where(CustomsDutyRate.country.in_([r.country for r in rows]))
            .order_by(CustomsDutyRate.hs_prefix)
        ):
            rates[rate.country].append(rate)
    return [
        CustomsView(
            country=r.country,
            currency=r.currency,
            duty_de_minimis=_decimal(r.duty_de_minimis_minor, r.currency),
            tax_de_minimis=_decimal(r.tax_de_minimis_minor, r.currency),
            default_duty_rate=_rate(r.default_duty_ppm),
            import_tax_rate=_rate(r.import_tax_ppm),
            tax_name=r.tax_name,
            valuation=r.valuation,
            preferential_origins=list(r.preferential_origins or []),
            duty_rates=[
                DutyRateView(x.hs_prefix, _rate(x.rate_ppm), x.description)
                for x in rates[r.country]
            ],
            note=r.note,
            updated_at=r.updated_at,
        )
        for r in rows
    ]


def put_exchange_rate(
    session: Session, actor: Principal, from_currency: str, to_currency: str, rate: Decimal
) -> CustomsExchangeRate:
    """The customs valuation rate: one ``from_currency`` is ``rate`` ``to_currency``."""
    source = _currency(from_currency, "path.from_currency")
    target = _currency(to_currency, "path.to_currency")
    if source == target:
        raise ValidationProblem.field("path.to_currency", "must differ from from_currency")
    if not rate.is_finite() or rate <= 0:
        raise ValidationProblem.field("body.rate", "a positive number")
    row = session.get(CustomsExchangeRate, (source, target))
    if row is None:
        row = CustomsExchangeRate(from_currency=source, to_currency=target)
        session.add(row)
    row.rate = str(rate)
    row.updated_at = utcnow()
    session.flush()
    audit(
        session,
        actor,
        "shipping.customs_rate_set",
        "customs_exchange_rate",
        f"{source}-{target}",
        {"rate": str(rate)},
    )
    return row


def list_exchange_rates(session: Session) -> list[CustomsExchangeRate]:
    return list(
        session.scalars(
            select(CustomsExchangeRate).order_by(
                CustomsExchangeRate.from_currency, CustomsExchangeRate.to_currency
            )
        )
    )


def _exchange_rate(session: Session, source: str, target: str) -> Decimal:
    """How much ``target`` one ``source`` is worth (a stored rate or its inverse)."""
    rows = {
        (r.from_currency, r.to_currency): Decimal(r.rate)
        for r in session.scalars(
            select(CustomsExchangeRate).where(
                or_(
                    and_(
                        CustomsExchangeRate.from_currency == source,
                        CustomsExchangeRate.to_currency == target,
                    ),
                    and_(
                        CustomsExchangeRate.from_currency == target,
                        CustomsExchangeRate.to_currency == source,
                    ),
                )
            )
        )
    }
    if (source, target) in rows:
        return rows[(source, target)]
    if (target, source) in rows:
        return Decimal(1) / rows[(target, source)]
    raise UnprocessableState(
        f"no customs exchange rate between {source} and {target} is configured",
        code="customs-exchange-rate-missing",
    )


def _rules(session: Session, country: str) -> CustomsRules | None:
    row = session.get(CustomsCountry, country)
    if row is None:
        return None
    rates = {
        r.hs_prefix: _rate(r.rate_ppm)
        for r in session.scalars(select(CustomsDutyRate).where(CustomsDutyRate.country == country))
    }
    return CustomsRules(
        country=row.country,
        currency=row.currency,
        default_duty_rate=_rate(row.default_duty_ppm),
        import_tax_rate=_rate(row.import_tax_ppm),
        tax_name=row.tax_name,
        duty_de_minimis=_decimal(row.duty_de_minimis_minor, row.currency),
        tax_de_minimis=_decimal(row.tax_de_minimis_minor, row.currency),
        valuation=row.valuation,
        duty_rates=rates,
        preferential_origins=frozenset(row.preferential_origins or ()),
    )


def _duty_items(
    items: Sequence[DutyItem | tuple[str | None, str, Decimal, str]],
) -> tuple[list[DutyItem], str]:
    if not items:
        raise ValidationProblem.field("body.items", "at least one item")
    clean: list[DutyItem] = []
    currency: str | None = None
    for i, raw in enumerate(items):
        item = raw if isinstance(raw, DutyItem) else DutyItem(*raw)
        field = f"body.items[{i}]"
        cur = _currency(item.currency, f"{field}.currency")
        if currency is not None and cur != currency:
            raise ValidationProblem.field(f"{field}.currency", f"all items in {currency}")
        currency = cur
        hs = _hs_digits(item.hs_code, f"{field}.hs_code", 2) if item.hs_code else None
        origin = _country(item.origin_country, f"{field}.origin_country")
        clean.append(
            DutyItem(
                hs,
                origin,
                _money(_as_decimal(item.value, f"{field}.value"), cur, f"{field}.value"),
                cur,
            )
        )
    assert currency is not None
    return clean, currency


def _as_decimal(value: Any, field: str) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int | str) and not isinstance(value, bool):
        try:
            return Decimal(value)
        except InvalidOperation as exc:
            raise ValidationProblem.field(field, "not a number") from exc
    raise ValidationProblem.field(field, "a Decimal, an integer or a numeric string")


def estimate_duties(
    session: Session,
    destination_country: str,
    origin_country: str,
    items: Sequence[DutyItem | tuple[str | None, str, Decimal, str]],
    shipping_amount: Decimal = Decimal(0),
) -> DutyEstimate:
    """Import duty and tax of a parcel, in the items' currency (see :mod:`customs`).

    ``items`` are ``(hs_code, origin_country, value, currency)``: the value of each line
    (unit price x quantity), all in one currency, which ``shipping_amount`` is in too.
    """
    destination = _country(destination_country, "body.destination_country")
    origin = _country(origin_country, "body.origin_country")
    clean, currency = _duty_items(items)
    shipping = _money(
        _as_decimal(shipping_amount, "body.shipping_amount"), currency, "body.shipping_amount"
    )
    rules = _rules(session, destination)
    fx_rate = None
    needs_fx = rules is not None and (
        rules.duty_de_minimis is not None or rules.tax_de_minimis is not None
    )
    if (
        rules is not None
        and needs_fx
        and rules.currency != currency
        and customs.crosses_customs_border(origin, destination)
    ):
        fx_rate = _exchange_rate(session, rules.currency, currency)
    return customs.estimate(
        rules,
        destination_country=destination,
        origin_country=origin,
        items=clean,
        shipping_amount=shipping,
        currency=currency,
        fx_rate=fx_rate,
    )


# --- carriers for a route (fulfilment) --------------------------------------------------------


def service_level(session: Session, carrier_code: str, service_code: str) -> str | None:
    """The level (economy, standard, express) of a carrier's service, if it exists."""
    carrier = carrier_by_code(session, carrier_code)
    if carrier is None:
        return None
    level = session.scalar(
        select(ShippingService.level).where(
            ShippingService.carrier_id == carrier.id, ShippingService.code == service_code
        )
    )
    return None if level is None else str(level)


def serves_route(
    session: Session, carrier_code: str, service_code: str, origin: str, destination: str
) -> bool:
    """Whether this active carrier's active service takes parcels from origin to destination."""
    carrier = carrier_by_code(session, carrier_code)
    if carrier is None or not carrier.active:
        return False
    if not _route_carriers(session, origin, destination, carrier.id):
        return False
    service = session.scalar(
        select(ShippingService).where(
            ShippingService.carrier_id == carrier.id,
            ShippingService.code == service_code,
            ShippingService.active.is_(True),
        )
    )
    return service is not None and ServiceScope(service.scope).allows(origin, destination)
