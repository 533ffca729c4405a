"""Labels: bought from the carrier's integration for one parcel, voided while unscanned.

Cross-border parcels declare their customs items; every label publishes
``shipment.label_created`` (and ``shipment.label_voided``) through the outbox.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.auth.service import audit
from mercato.db import utcnow
from mercato.errors import UnprocessableState, ValidationProblem
from mercato.events import publish
from mercato.shipping import customs
from mercato.shipping._carrier_context import _adapter, _rate_cards
from mercato.shipping._checks import _country, _currency, _hs_digits, _money
from mercato.shipping.carrier_setup import carrier_by_code, get_carrier
from mercato.shipping.carriers import (
    Carrier,
    CarrierInputError,
    Destination,
    LabelRequest,
    ServiceConfig,
    TableRateCarrier,
    TrackingStatus,
)
from mercato.shipping.event_types import LabelCreated, LabelVoided
from mercato.shipping.label_records import get_label, label_facts
from mercato.shipping.models import ShippingCarrier, ShippingLabel
from mercato.shipping.routes import _route_carriers
from mercato.shipping.schemas import MAX_WEIGHT_G


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
    adapter, service = _label_service(session, carrier, request, origin, destination)
    try:
        label = adapter.create_label(request)
    except CarrierInputError as exc:
        raise ValidationProblem.field(exc.field, exc.reason) from exc
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
    _announce_label(session, actor, row)
    return row


def _label_service(
    session: Session,
    carrier: ShippingCarrier,
    request: LabelRequest,
    origin: str,
    destination: str,
) -> tuple[Carrier, ServiceConfig]:
    """The carrier's integration and the active service that takes this parcel."""
    card = _rate_cards(session, [carrier.id], origin, destination, None)[carrier.id]
    service = card.service(request.service_code)
    if service is None:
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
    return adapter, service


def _announce_label(session: Session, actor: Principal, row: ShippingLabel) -> None:
    audit(
        session,
        actor,
        "shipping.label_created",
        "shipping_label",
        row.id,
        {
            "tracking_number": row.tracking_number,
            "carrier": row.carrier_code,
            "service": row.service_code,
            "reference": row.reference,
        },
    )
    publish(session, LabelCreated(**label_facts(row)))


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
    publish(session, LabelVoided(**label_facts(label)))
    return label
