"""Quotes: every way to ship parcels to a destination, cheapest first.

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
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from mercato.errors import UnprocessableState, ValidationProblem
from mercato.shipping._carrier_context import _adapter, _config, _rate_cards
from mercato.shipping._checks import _aware, _country, _currency, _money
from mercato.shipping.carriers import (
    Carrier,
    CarrierConfig,
    Destination,
    Rate,
    RateRequest,
    TableRateCarrier,
    normalise_region,
)
from mercato.shipping.routes import _route_with_services
from mercato.shipping.schemas import MAX_WEIGHT_G

log = logging.getLogger(__name__)

MAX_PARCELS = 50


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
