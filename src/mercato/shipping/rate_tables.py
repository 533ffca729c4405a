"""Rate tables: what a service costs to a zone, from an origin, in one currency.

A table prices weight brackets, with an optional price per extra kilogram, free shipping
over an order value and a surcharge for remote postal prefixes. One table per service, zone,
origin and currency.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.auth.service import audit
from mercato.db import get_or_404, utcnow
from mercato.errors import Conflict, ValidationProblem
from mercato.money import from_minor, to_minor
from mercato.shipping._checks import (
    _country,
    _currency,
    _decimal,
    _money,
    _optional_minor,
    _postal_prefix,
)
from mercato.shipping.carriers import Bracket
from mercato.shipping.models import (
    ANY_ORIGIN,
    RateBracket,
    RateTable,
    ShippingCarrier,
    ShippingService,
    ShippingZone,
)
from mercato.shipping.schemas import MAX_WEIGHT_G, RateTableIn


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
    return get_or_404(session, RateTable, table_id, f"rate table {table_id}")


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
