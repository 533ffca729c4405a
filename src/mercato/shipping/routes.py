"""Which active carriers and services take parcels from one country to another.

Quotes, labels and fulfilment's carrier choice all ask this; a carrier serves a route when it
ships from the origin and to the destination country.
"""

from __future__ import annotations

from sqlalchemy import and_, select
from sqlalchemy.orm import Session, aliased

from mercato.shipping.carrier_setup import carrier_by_code
from mercato.shipping.carriers import ServiceScope
from mercato.shipping.models import CarrierCountry, ShippingCarrier, ShippingService


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
