"""A small shipping world: one German carrier with zones of every kind, built by the service."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.db import Database
from mercato.shipping import service
from mercato.shipping.carriers import Destination, ServiceLevel, ServiceScope
from mercato.shipping.schemas import (
    BracketIn,
    CarrierIn,
    RateTableIn,
    ServiceIn,
    ZoneIn,
    ZoneMemberIn,
)
from tests.helpers import fast_password_hashing

SECRET = "whsec-0123456789abcdef"
# A Friday morning in Berlin.
FRIDAY = datetime(2026, 3, 6, 9, 0, tzinfo=UTC)
ACTOR = Principal.system("tests")


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_password_hashing(monkeypatch)


def make_carrier(
    session: Session,
    code: str,
    prefix: str,
    ships_from: list[str],
    ships_to: list[str],
    **fields: Any,
) -> int:
    data = CarrierIn(
        code=code,
        name=code.title(),
        tracking_prefix=prefix,
        ships_from=ships_from,
        ships_to=ships_to,
        **fields,
    )
    return service.create_carrier(session, ACTOR, data).id


def make_service(
    session: Session,
    carrier_id: int,
    code: str,
    *,
    level: str = "standard",
    min_days: int = 1,
    max_days: int = 3,
    scope: str = "any",
) -> int:
    data = ServiceIn(
        code=code,
        name=code.title(),
        level=ServiceLevel(level),
        scope=ServiceScope(scope),
        min_days=min_days,
        max_days=max_days,
    )
    return service.create_service(session, ACTOR, carrier_id, data).id


def make_zone(session: Session, code: str, *members: tuple[str, str | None, str | None]) -> int:
    data = ZoneIn(
        code=code,
        name=code,
        members=[ZoneMemberIn(country=c, region=r, postal_prefix=p) for c, r, p in members],
    )
    return service.create_zone(session, ACTOR, data).id


def make_table(
    session: Session,
    service_id: int,
    zone_id: int,
    currency: str,
    brackets: list[tuple[int, str]],
    **fields: Any,
) -> int:
    data = RateTableIn(
        service_id=service_id,
        zone_id=zone_id,
        currency=currency,
        brackets=[BracketIn(up_to_g=g, price=Decimal(p)) for g, p in brackets],
        **fields,
    )
    return service.create_rate_table(session, ACTOR, data).id


@dataclass
class World:
    carrier: int
    standard: int
    express: int
    zones: dict[str, int]
    tables: dict[str, int]


@pytest.fixture
def world(db: Database) -> World:
    """``parcel-de`` ships from DE to DE, AT and FR (and US, with no rates there).

    standard, zone ``de`` (all of Germany), EUR: up to 1 kg 4.00, 2 kg 5.00, 5 kg 7.00,
    then 1.10 per started kg; free from 50.00; +2.50 per parcel to Sylt (25980).
    standard, zone ``berlin`` (postal prefix 10): 1 kg 3.00, 5 kg 4.00, nothing heavier.
    standard, zone ``bavaria`` (region BY): 1 kg 3.50, 5 kg 6.00.
    express, zone ``de``: 1 kg 9.00, 5 kg 12.00 (1-1 days).
    standard, zone ``near`` (AT, FR): 1 kg 9.50, 5 kg 15.00, 2.00 per kg.
    """
    with db.transaction() as session:
        carrier = make_carrier(
            session,
            "parcel-de",
            "PD",
            ["DE"],
            ["DE", "AT", "FR", "US"],
            webhook_secret=SECRET,
            timezone="Europe/Berlin",
        )
        standard = make_service(session, carrier, "standard", min_days=1, max_days=3)
        express = make_service(session, carrier, "express", level="express", min_days=1, max_days=1)
        zones = {
            "de": make_zone(session, "de", ("DE", None, None)),
            "berlin": make_zone(session, "berlin", ("DE", None, "10")),
            "bavaria": make_zone(session, "bavaria", ("DE", "BY", None)),
            "near": make_zone(session, "near", ("AT", None, None), ("FR", None, None)),
        }
        tables = {
            "de": make_table(
                session,
                standard,
                zones["de"],
                "EUR",
                [(1000, "4.00"), (2000, "5.00"), (5000, "7.00")],
                per_extra_kg=Decimal("1.10"),
                free_over=Decimal("50"),
                remote_surcharge=Decimal("2.50"),
                remote_postal_prefixes=["25980"],
            ),
            "berlin": make_table(
                session, standard, zones["berlin"], "EUR", [(1000, "3.00"), (5000, "4.00")]
            ),
            "bavaria": make_table(
                session, standard, zones["bavaria"], "EUR", [(1000, "3.50"), (5000, "6.00")]
            ),
            "express": make_table(
                session, express, zones["de"], "EUR", [(1000, "9.00"), (5000, "12.00")]
            ),
            "near": make_table(
                session,
                standard,
                zones["near"],
                "EUR",
                [(1000, "9.50"), (5000, "15.00")],
                per_extra_kg=Decimal("2"),
            ),
        }
    return World(carrier, standard, express, zones, tables)


def quote(
    db: Database,
    destination: Destination,
    *,
    origin: str = "DE",
    parcels: list[int] | None = None,
    weight: int | None = 800,
    value: str = "20.00",
    currency: str = "EUR",
    at: datetime = FRIDAY,
) -> list[service.ShippingOption]:
    with db.read() as session:
        return service.quote(
            session,
            origin_country=origin,
            destination=destination,
            parcels=parcels,
            total_weight_g=None if parcels else weight,
            order_value=Decimal(value),
            currency=currency,
            at=at,
        )


def prices(options: list[service.ShippingOption]) -> dict[str, Decimal]:
    return {f"{o.carrier_code}/{o.service_code}": o.amount for o in options}
