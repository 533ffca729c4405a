"""Shipping API: carrier configuration, quotes, labels, tracking, customs, carrier webhooks."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from mercato.auth.permissions import Permission
from mercato.auth.principal import Principal
from mercato.db import utcnow
from mercato.deps import DbSession, IdempotencyKey, Pagination, require
from mercato.errors import ValidationProblem
from mercato.idempotency import Idempotent, scope_for
from mercato.openapi import problem_responses
from mercato.pagination import decode_id_cursor, page_of
from mercato.routing import router
from mercato.schemas import PageOut
from mercato.shipping import service
from mercato.shipping.carriers import Address, CustomsItem, Destination, LabelRequest
from mercato.shipping.models import ShippingCarrier, ShippingLabel, ShippingZone
from mercato.shipping.schemas import (
    AddressIn,
    CarrierIn,
    CarrierOut,
    CarrierPatch,
    CustomsIn,
    CustomsOut,
    DutyEstimateIn,
    DutyEstimateOut,
    ExchangeRateIn,
    ExchangeRateOut,
    LabelIn,
    LabelOut,
    OptionOut,
    QuoteIn,
    QuoteOut,
    RateTableIn,
    RateTableOut,
    ServiceIn,
    ServiceOut,
    ServicePatch,
    TrackingEventIn,
    TrackingEventOut,
    TrackingOut,
    WebhookResultOut,
    ZoneIn,
    ZoneMemberOut,
    ZoneOut,
    ZonePatch,
)

api = router("/v1/shipping", tags=["shipping"])

Reader = Annotated[Principal, Depends(require(Permission.SHIPPING_READ))]
Writer = Annotated[Principal, Depends(require(Permission.SHIPPING_WRITE))]

MAX_WEBHOOK_BYTES = 1_000_000


# --- shaping answers ------------------------------------------------------------------------


def carriers_out(session: Session, carriers: list[ShippingCarrier]) -> list[CarrierOut]:
    ids = [c.id for c in carriers]
    countries = service.carrier_countries(session, ids)
    services = service.list_services(session, ids)
    return [
        CarrierOut(
            id=c.id,
            code=c.code,
            name=c.name,
            active=c.active,
            adapter=c.adapter,
            tracking_prefix=c.tracking_prefix,
            timezone=c.timezone,
            has_webhook_secret=bool(c.webhook_secret),
            ships_from=countries[c.id]["from"],
            ships_to=countries[c.id]["to"],
            services=[ServiceOut.model_validate(s) for s in services[c.id]],
            created_at=c.created_at,
            updated_at=c.updated_at,
        )
        for c in carriers
    ]


def zones_out(session: Session, zones: list[ShippingZone]) -> list[ZoneOut]:
    members = service.zone_members(session, [z.id for z in zones])
    return [
        ZoneOut(
            id=z.id,
            code=z.code,
            name=z.name,
            members=[ZoneMemberOut.model_validate(m) for m in members[z.id]],
            created_at=z.created_at,
            updated_at=z.updated_at,
        )
        for z in zones
    ]


def table_out(session: Session, table_id: int) -> RateTableOut:
    table = service.get_rate_table(session, table_id)
    (view,) = service.rate_table_views(session, [table])
    return RateTableOut.model_validate(view)


def customs_out(session: Session, country: str) -> CustomsOut:
    (view,) = service.customs_views(session, [service.get_customs(session, country)])
    return CustomsOut.model_validate(view)


def tracking_out(session: Session, label: ShippingLabel, reader: Principal) -> TrackingOut:
    """The parcel's scans; a carrier's description can name who signed for it, so readers
    without customers:pii get it as null."""
    events = [
        TrackingEventOut.model_validate(e) for e in service.tracking_events(session, label.id)
    ]
    if not reader.has(Permission.CUSTOMERS_PII):
        events = [e.model_copy(update={"description": None}) for e in events]
    return TrackingOut(
        tracking_number=label.tracking_number,
        carrier_code=label.carrier_code,
        service_code=label.service_code,
        status=label.status,
        status_at=label.status_at,
        events=events,
    )


def _address(data: AddressIn) -> Address:
    return Address(
        name=data.name,
        line1=data.line1,
        city=data.city,
        country=data.country,
        postal_code=data.postal_code,
        region=data.region,
        line2=data.line2,
        company=data.company,
        phone=data.phone,
    )


def label_request(body: LabelIn) -> LabelRequest:
    return LabelRequest(
        carrier_code=body.carrier_code,
        service_code=body.service_code,
        ship_from=_address(body.ship_from),
        ship_to=_address(body.ship_to),
        weight_g=body.weight_g,
        reference=body.reference,
        customs=tuple(
            CustomsItem(x.description, x.hs_code, x.origin_country, x.quantity, x.value, x.currency)
            for x in body.customs_items
        ),
        format=body.format,
    )


# --- carriers and services --------------------------------------------------------------------


@api.get("/carriers", response_model=PageOut[CarrierOut])
def list_carriers(session: DbSession, principal: Reader) -> PageOut[CarrierOut]:
    return PageOut(items=carriers_out(session, service.list_carriers(session)))


@api.post("/carriers", response_model=CarrierOut, status_code=201)
def create_carrier(body: CarrierIn, session: DbSession, principal: Writer) -> CarrierOut:
    """A carrier account. Its webhook secret is write-only: answers say whether one is set."""
    carrier = service.create_carrier(session, principal, body)
    return carriers_out(session, [carrier])[0]


@api.get("/carriers/{carrier_id}", response_model=CarrierOut)
def get_carrier(carrier_id: int, session: DbSession, principal: Reader) -> CarrierOut:
    return carriers_out(session, [service.get_carrier(session, carrier_id)])[0]


@api.patch("/carriers/{carrier_id}", response_model=CarrierOut)
def update_carrier(
    carrier_id: int, body: CarrierPatch, session: DbSession, principal: Writer
) -> CarrierOut:
    carrier = service.update_carrier(session, principal, carrier_id, body)
    return carriers_out(session, [carrier])[0]


@api.post("/carriers/{carrier_id}/services", response_model=ServiceOut, status_code=201)
def create_service(
    carrier_id: int, body: ServiceIn, session: DbSession, principal: Writer
) -> ServiceOut:
    return ServiceOut.model_validate(service.create_service(session, principal, carrier_id, body))


@api.patch("/services/{service_id}", response_model=ServiceOut)
def update_service(
    service_id: int, body: ServicePatch, session: DbSession, principal: Writer
) -> ServiceOut:
    return ServiceOut.model_validate(service.update_service(session, principal, service_id, body))


# --- zones ---------------------------------------------------------------------------------


@api.get("/zones", response_model=PageOut[ZoneOut])
def list_zones(session: DbSession, principal: Reader) -> PageOut[ZoneOut]:
    return PageOut(items=zones_out(session, service.list_zones(session)))


@api.post("/zones", response_model=ZoneOut, status_code=201)
def create_zone(body: ZoneIn, session: DbSession, principal: Writer) -> ZoneOut:
    """Countries, regions (ISO 3166-2) or postal prefixes; the most specific match wins."""
    return zones_out(session, [service.create_zone(session, principal, body)])[0]


@api.get("/zones/{zone_id}", response_model=ZoneOut)
def get_zone(zone_id: int, session: DbSession, principal: Reader) -> ZoneOut:
    return zones_out(session, [service.get_zone(session, zone_id)])[0]


@api.patch("/zones/{zone_id}", response_model=ZoneOut)
def update_zone(zone_id: int, body: ZonePatch, session: DbSession, principal: Writer) -> ZoneOut:
    return zones_out(session, [service.update_zone(session, principal, zone_id, body)])[0]


@api.delete("/zones/{zone_id}", status_code=204)
def delete_zone(zone_id: int, session: DbSession, principal: Writer) -> Response:
    service.delete_zone(session, principal, zone_id)
    return Response(status_code=204)


# --- rate tables ---------------------------------------------------------------------------


@api.get("/rate-tables", response_model=PageOut[RateTableOut])
def list_rate_tables(
    session: DbSession,
    principal: Reader,
    service_id: int | None = None,
    zone_id: int | None = None,
) -> PageOut[RateTableOut]:
    tables = service.list_rate_tables(session, service_id=service_id, zone_id=zone_id)
    views = service.rate_table_views(session, tables)
    return PageOut(items=[RateTableOut.model_validate(v) for v in views])


@api.post("/rate-tables", response_model=RateTableOut, status_code=201)
def create_rate_table(body: RateTableIn, session: DbSession, principal: Writer) -> RateTableOut:
    """Weight brackets (ascending, "up to N grams") with optional per-kg price above the
    last one, free-shipping threshold and remote-area surcharge."""
    return table_out(session, service.create_rate_table(session, principal, body).id)


@api.get("/rate-tables/{table_id}", response_model=RateTableOut)
def get_rate_table(table_id: int, session: DbSession, principal: Reader) -> RateTableOut:
    return table_out(session, table_id)


@api.put("/rate-tables/{table_id}", response_model=RateTableOut)
def replace_rate_table(
    table_id: int, body: RateTableIn, session: DbSession, principal: Writer
) -> RateTableOut:
    return table_out(session, service.replace_rate_table(session, principal, table_id, body).id)


@api.delete("/rate-tables/{table_id}", status_code=204)
def delete_rate_table(table_id: int, session: DbSession, principal: Writer) -> Response:
    service.delete_rate_table(session, principal, table_id)
    return Response(status_code=204)


# --- quotes --------------------------------------------------------------------------------


@api.post("/quotes", response_model=QuoteOut)
def quote(body: QuoteIn, session: DbSession, principal: Reader) -> QuoteOut:
    """Shipping options for a parcel, cheapest first (an empty list: nobody ships there)."""
    options = service.quote(
        session,
        origin_country=body.origin_country,
        destination=Destination(
            body.destination.country, body.destination.region, body.destination.postal_code
        ),
        parcels=body.parcels,
        total_weight_g=body.total_weight_g,
        order_value=body.order_value,
        currency=body.currency,
        at=body.at or utcnow(),
    )
    return QuoteOut(options=[OptionOut.model_validate(o, from_attributes=True) for o in options])


# --- labels and tracking --------------------------------------------------------------------


@api.post("/labels", response_model=LabelOut, status_code=201)
def create_label(
    body: LabelIn, session: DbSession, principal: Writer, key: IdempotencyKey
) -> JSONResponse:
    """Buy a label for one parcel (send an Idempotency-Key: a retry never buys two)."""

    def run() -> LabelOut:
        label = service.create_label(session, principal, label_request(body))
        return LabelOut.model_validate(label)

    return Idempotent(session, scope_for("shipping.label", principal), key, body).run(run)


def label_out(label: ShippingLabel, reader: Principal) -> LabelOut:
    """The label; its printable ``content`` and ``url`` show the recipient's name, address
    and phone, so readers without customers:pii get them as null."""
    out = LabelOut.model_validate(label)
    if reader.has(Permission.CUSTOMERS_PII):
        return out
    return out.model_copy(update={"content": None, "url": None})


@api.get("/labels", response_model=PageOut[LabelOut])
def list_labels(
    session: DbSession,
    principal: Reader,
    page: Pagination,
    reference: Annotated[str | None, Query(max_length=64)] = None,
) -> PageOut[LabelOut]:
    """Labels, newest first; ``content`` and ``url`` are null without customers:pii."""
    cursor, limit = page
    before = decode_id_cursor(cursor)
    labels = service.list_labels(session, reference=reference, limit=limit + 1, before=before)
    found = page_of(labels, limit, key=lambda label: label.id)
    items = [label_out(x, principal) for x in found.items]
    return PageOut(items=items, next_cursor=found.next_cursor)


@api.get("/labels/{label_id}", response_model=LabelOut)
def get_label(label_id: int, session: DbSession, principal: Reader) -> LabelOut:
    """The label; ``content`` and ``url`` are null without customers:pii."""
    return label_out(service.get_label(session, label_id), principal)


@api.post("/labels/{label_id}/void", response_model=LabelOut)
def void_label(label_id: int, session: DbSession, principal: Writer) -> LabelOut:
    return label_out(service.void_label(session, principal, label_id), principal)


TrackingNumber = Annotated[str, Path(min_length=1, max_length=40)]


@api.get("/tracking/{tracking_number}", response_model=TrackingOut)
def get_tracking(
    tracking_number: TrackingNumber, session: DbSession, principal: Reader
) -> TrackingOut:
    label = service.label_by_tracking_number(session, tracking_number)
    return tracking_out(session, label, principal)


@api.post("/tracking/{tracking_number}/events", response_model=TrackingOut, status_code=201)
def record_tracking_event(
    tracking_number: TrackingNumber,
    body: TrackingEventIn,
    session: DbSession,
    principal: Writer,
) -> JSONResponse:
    """Record a scan. An ``event_id`` already recorded for the carrier changes nothing (200)."""
    recorded = service.record_tracking_event(
        session,
        tracking_number,
        body.status,
        body.occurred_at,
        body.location,
        body.description,
        event_id=body.event_id,
        actor=principal,
    )
    label = service.label_by_tracking_number(session, tracking_number)
    out = tracking_out(session, label, principal)
    return JSONResponse(out.model_dump(mode="json"), status_code=201 if recorded else 200)


@api.post(
    "/webhooks/{carrier_code}", response_model=WebhookResultOut, responses=problem_responses(401)
)
async def carrier_webhook(
    carrier_code: Annotated[str, Path(min_length=1, max_length=40)],
    request: Request,
    session: DbSession,
) -> WebhookResultOut:
    """Tracking updates pushed by a carrier, signed with its webhook secret (HMAC-SHA256 of
    the raw body in ``X-Mercato-Signature: sha256=<hex>`` for the built-in integration).
    A bad signature is a 401; an event id already received is not recorded again."""
    raw = await request.body()
    if len(raw) > MAX_WEBHOOK_BYTES:
        raise ValidationProblem.field("body", f"larger than {MAX_WEBHOOK_BYTES} bytes")
    result = await run_in_threadpool(
        service.receive_webhook, session, carrier_code, dict(request.headers), raw
    )
    return WebhookResultOut.model_validate(result, from_attributes=True)


# --- customs -------------------------------------------------------------------------------


@api.get("/customs", response_model=PageOut[CustomsOut])
def list_customs(session: DbSession, principal: Reader) -> PageOut[CustomsOut]:
    views = service.customs_views(session, service.list_customs(session))
    return PageOut(items=[CustomsOut.model_validate(v) for v in views])


Country = Annotated[str, Path(min_length=2, max_length=2, description="ISO 3166-1 alpha-2")]


@api.get("/customs/{country}", response_model=CustomsOut)
def get_customs(country: Country, session: DbSession, principal: Reader) -> CustomsOut:
    return customs_out(session, country)


@api.put("/customs/{country}", response_model=CustomsOut)
def put_customs(
    country: Country, body: CustomsIn, session: DbSession, principal: Writer
) -> CustomsOut:
    """Import rules of a destination country, replacing what was there."""
    row = service.put_customs(session, principal, country, body)
    return customs_out(session, row.country)


@api.delete("/customs/{country}", status_code=204)
def delete_customs(country: Country, session: DbSession, principal: Writer) -> Response:
    service.delete_customs(session, principal, country)
    return Response(status_code=204)


@api.get("/customs-exchange-rates", response_model=PageOut[ExchangeRateOut])
def list_exchange_rates(session: DbSession, principal: Reader) -> PageOut[ExchangeRateOut]:
    rates = service.list_exchange_rates(session)
    return PageOut(items=[ExchangeRateOut.model_validate(r) for r in rates])


Currency = Annotated[str, Path(min_length=3, max_length=3, description="ISO 4217")]


@api.put("/customs-exchange-rates/{from_currency}/{to_currency}", response_model=ExchangeRateOut)
def put_exchange_rate(
    from_currency: Currency,
    to_currency: Currency,
    body: ExchangeRateIn,
    session: DbSession,
    principal: Writer,
) -> ExchangeRateOut:
    """The customs valuation rate used to compare goods with a foreign de minimis threshold."""
    row = service.put_exchange_rate(session, principal, from_currency, to_currency, body.rate)
    return ExchangeRateOut.model_validate(row)


@api.post("/duty-estimates", response_model=DutyEstimateOut)
def estimate_duties(body: DutyEstimateIn, session: DbSession, principal: Reader) -> DutyEstimateOut:
    """Import duty and tax of a parcel, in the items' currency."""
    estimate = service.estimate_duties(
        session,
        body.destination_country,
        body.origin_country,
        [(x.hs_code, x.origin_country, x.value, x.currency) for x in body.items],
        body.shipping_amount,
    )
    return DutyEstimateOut.model_validate(estimate, from_attributes=True)
