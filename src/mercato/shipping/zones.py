"""Shipping zones: the destinations a rate table prices.

A zone lists whole countries, regions of a country (ISO 3166-2) or postal prefixes; a zone
used by a rate table cannot be deleted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pycountry
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.auth.service import audit
from mercato.db import get_or_404, utcnow
from mercato.errors import Conflict, ValidationProblem
from mercato.shipping._checks import _country, _postal_prefix
from mercato.shipping.carriers import normalise_region
from mercato.shipping.models import RateTable, ShippingZone, ZoneMember
from mercato.shipping.schemas import ZoneIn, ZoneMemberIn, ZonePatch


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
    return get_or_404(session, ShippingZone, zone_id, f"shipping zone {zone_id}")


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
