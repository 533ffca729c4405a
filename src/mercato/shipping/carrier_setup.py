"""Carriers and their services, as staff configure them.

A carrier names the integration that prices its parcels and prints its labels
(:mod:`mercato.shipping.carriers`), the countries it ships from and to, its tracking number
prefix and the time zone its delivery estimates count in. Each of its services has a level,
the routes it takes (domestic, international or both) and a delivery time in business days.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.auth.service import audit
from mercato.db import get_or_404, utcnow
from mercato.errors import Conflict, ValidationProblem
from mercato.shipping._checks import _check_adapter, _country
from mercato.shipping.models import CarrierCountry, ShippingCarrier, ShippingService
from mercato.shipping.schemas import CarrierIn, CarrierPatch, ServiceIn, ServicePatch

# --- carriers ------------------------------------------------------------------------------


def get_carrier(session: Session, carrier_id: int) -> ShippingCarrier:
    return get_or_404(session, ShippingCarrier, carrier_id, f"carrier {carrier_id}")


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
    return get_or_404(session, ShippingService, service_id, f"shipping service {service_id}")


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
