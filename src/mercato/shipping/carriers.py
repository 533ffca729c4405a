"""The carrier interface, the built-in table-rate carrier and the registry of integrations.

A carrier integration implements :class:`Carrier`: it prices parcels (:meth:`rates`), buys
labels (:meth:`create_label`), voids them, reports tracking history (:meth:`track`) and
turns the carrier's tracking webhooks into :class:`TrackingEvent` values
(:meth:`parse_webhook`). Integrations are registered by name with
:func:`register_carrier`; a carrier row names the integration that serves it in its
``adapter`` column, so a real carrier API is plugged in without touching the shipping
service::

    register_carrier("acme-api", lambda context: AcmeCarrier(context))

:class:`TableRateCarrier` (adapter ``"table"``) is the built-in integration. It prices
from the rate tables staff configure (zones, weight brackets, per-kg price, free-shipping
threshold, remote surcharge), issues UPU S10 tracking numbers with their check digit and
renders a deterministic ZPL or JSON label, reads tracking history from the events
recorded through the API or its webhook, and verifies webhooks with HMAC-SHA256.

Everything here is free of SQL: the shipping service loads the configuration, hands it
over in a :class:`CarrierContext` and stores what comes back.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol

from mercato.money import quantize

ZERO = Decimal(0)
SIGNATURE_HEADER = "X-Mercato-Signature"
S10_WEIGHTS = (8, 6, 4, 2, 3, 5, 9, 7)
MAX_S10_SERIAL = 99_999_999
_POSTAL_NOISE = re.compile(r"[\s\-]")


class ServiceLevel(StrEnum):
    ECONOMY = "economy"
    STANDARD = "standard"
    EXPRESS = "express"


class ServiceScope(StrEnum):
    """Which routes a service takes: within one country, across a border, or both."""

    ANY = "any"
    DOMESTIC = "domestic"
    INTERNATIONAL = "international"

    def allows(self, origin_country: str, destination_country: str) -> bool:
        if self is ServiceScope.DOMESTIC:
            return origin_country == destination_country
        if self is ServiceScope.INTERNATIONAL:
            return origin_country != destination_country
        return True


class TrackingStatus(StrEnum):
    LABEL_CREATED = "label_created"
    IN_TRANSIT = "in_transit"
    OUT_FOR_DELIVERY = "out_for_delivery"
    AVAILABLE_FOR_PICKUP = "available_for_pickup"
    DELIVERED = "delivered"
    DELIVERY_FAILED = "delivery_failed"
    EXCEPTION = "exception"
    RETURNED = "returned"


class LabelFormat(StrEnum):
    ZPL = "zpl"
    JSON = "json"


# --- values exchanged with integrations --------------------------------------------------


@dataclass(frozen=True)
class Destination:
    """Where a parcel goes. ``region`` is an ISO 3166-2 code ("CA" or "US-CA")."""

    country: str
    region: str | None = None
    postal_code: str | None = None


@dataclass(frozen=True)
class Address:
    name: str
    line1: str
    city: str
    country: str
    postal_code: str | None = None
    region: str | None = None
    line2: str | None = None
    company: str | None = None
    phone: str | None = None

    @property
    def destination(self) -> Destination:
        return Destination(self.country, self.region, self.postal_code)


@dataclass(frozen=True)
class RateRequest:
    origin_country: str
    destination: Destination
    parcels_g: tuple[int, ...]
    order_value: Decimal
    currency: str


@dataclass(frozen=True)
class Rate:
    carrier_code: str
    service_code: str
    service_name: str
    level: str
    amount: Decimal
    currency: str
    min_days: int
    max_days: int
    # Identifies where the price came from ("rate-table:12"); part of the option id.
    source: str
    free_shipping: bool = False
    remote_surcharge: Decimal = ZERO


@dataclass(frozen=True)
class CustomsItem:
    """One line of a customs declaration (CN22/CN23): per item, not per unit."""

    description: str
    hs_code: str
    origin_country: str
    quantity: int
    value: Decimal
    currency: str


@dataclass(frozen=True)
class LabelRequest:
    carrier_code: str
    service_code: str
    ship_from: Address
    ship_to: Address
    weight_g: int
    reference: str | None = None
    customs: tuple[CustomsItem, ...] = ()
    format: LabelFormat = LabelFormat.ZPL


@dataclass(frozen=True)
class Label:
    tracking_number: str
    carrier_code: str
    service_code: str
    format: LabelFormat
    content: str | None = None
    url: str | None = None


@dataclass(frozen=True)
class TrackingEvent:
    tracking_number: str
    status: TrackingStatus
    occurred_at: datetime
    location: str | None = None
    description: str | None = None
    # The carrier's own id of the event: a webhook delivered twice is recorded once.
    event_id: str | None = None


class InvalidSignature(Exception):
    """A webhook whose signature does not verify (or that cannot be verified)."""


class CarrierInputError(ValueError):
    """A request or webhook payload the carrier rejects, naming the offending field."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class Carrier(Protocol):
    """What every carrier integration offers the shipping service."""

    def rates(self, request: RateRequest) -> list[Rate]:
        """Every service of this carrier that can take the parcels, priced."""
        ...

    def create_label(self, request: LabelRequest) -> Label:
        """Buy a label; raise :class:`CarrierInputError` for a request it refuses."""
        ...

    def void_label(self, tracking_number: str) -> None:
        """Cancel an unused label (refund it at the carrier)."""
        ...

    def track(self, tracking_number: str) -> list[TrackingEvent]:
        """The parcel's history, oldest first."""
        ...

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> list[TrackingEvent]:
        """Verify a tracking webhook (:class:`InvalidSignature`) and read its events."""
        ...


# --- configuration handed to integrations --------------------------------------------------


def normalise_postal(code: str | None) -> str:
    """Postal codes compare without spaces or hyphens, in upper case ("100-0001" -> "1000001")."""
    return _POSTAL_NOISE.sub("", code or "").upper()


def normalise_region(country: str, region: str | None) -> str | None:
    """The subdivision part of an ISO 3166-2 code: "US-CA" and "ca" both give "CA"."""
    if not region:
        return None
    value = region.strip().upper()
    prefix = country.upper() + "-"
    if value.startswith(prefix):
        value = value[len(prefix) :]
    return value or None


@dataclass(frozen=True)
class ZoneRule:
    """One member of a zone. A postal prefix is more specific than a region, a region
    more specific than a whole country; a longer prefix beats a shorter one."""

    country: str
    region: str | None = None
    postal_prefix: str | None = None

    def specificity(self, destination: Destination) -> tuple[int, int] | None:
        if destination.country != self.country:
            return None
        if self.postal_prefix:
            if normalise_postal(destination.postal_code).startswith(self.postal_prefix):
                return (2, len(self.postal_prefix))
            return None
        if self.region:
            if normalise_region(destination.country, destination.region) == self.region:
                return (1, 0)
            return None
        return (0, 0)


def zone_specificity(rules: Sequence[ZoneRule], destination: Destination) -> tuple[int, int] | None:
    """How specifically a zone matches ``destination`` (None: it does not match)."""
    found = [s for s in (r.specificity(destination) for r in rules) if s is not None]
    return max(found) if found else None


@dataclass(frozen=True)
class Bracket:
    up_to_g: int
    price: Decimal


@dataclass(frozen=True)
class TableRates:
    """One rate table with the zone it prices, as the built-in carrier needs it."""

    id: int
    service_code: str
    origin_country: str | None  # None: any origin
    zone_code: str
    zone: tuple[ZoneRule, ...]
    currency: str
    brackets: tuple[Bracket, ...]  # ascending up_to_g
    per_extra_kg: Decimal | None = None
    free_over: Decimal | None = None
    remote_surcharge: Decimal | None = None
    remote_postal_prefixes: tuple[str, ...] = ()

    def parcel_price(self, weight_g: int) -> Decimal | None:
        """The price of one parcel, or None when it is heavier than the table allows."""
        for bracket in self.brackets:
            if weight_g <= bracket.up_to_g:
                return bracket.price
        if self.per_extra_kg is None or not self.brackets:
            return None
        last = self.brackets[-1]
        # Every started kilogram above the last bracket is charged.
        extra_kg = math.ceil((weight_g - last.up_to_g) / 1000)
        return last.price + extra_kg * self.per_extra_kg

    def is_remote(self, destination: Destination) -> bool:
        postal = normalise_postal(destination.postal_code)
        return bool(postal) and any(postal.startswith(p) for p in self.remote_postal_prefixes)


@dataclass(frozen=True)
class ServiceConfig:
    id: int
    code: str
    name: str
    level: str
    min_days: int
    max_days: int
    scope: ServiceScope = ServiceScope.ANY


@dataclass(frozen=True)
class RateCard:
    """The services of one carrier and the rate tables that may apply to a request."""

    services: tuple[ServiceConfig, ...] = ()
    tables: tuple[TableRates, ...] = ()

    def service(self, code: str) -> ServiceConfig | None:
        return next((s for s in self.services if s.code == code), None)


@dataclass(frozen=True)
class CarrierConfig:
    id: int
    code: str
    name: str
    adapter: str
    tracking_prefix: str
    timezone: str = "UTC"
    webhook_secret: str | None = None


def _no_serial() -> int:
    raise RuntimeError("this context cannot issue label serial numbers")


def _no_events(tracking_number: str) -> list[TrackingEvent]:
    return []


@dataclass(frozen=True)
class CarrierContext:
    """What the service gives an integration: its configuration and two callbacks."""

    config: CarrierConfig
    rate_card: RateCard = field(default_factory=RateCard)
    # Issues the next label serial of this carrier (one conditional UPDATE in the service).
    next_serial: Callable[[], int] = _no_serial
    # The tracking events recorded for a tracking number, oldest first.
    recorded_events: Callable[[str], list[TrackingEvent]] = _no_events


# --- tracking numbers ----------------------------------------------------------------------


def s10_check_digit(serial: str) -> int:
    """The UPU S10 check digit of an 8-digit serial number (weights 8 6 4 2 3 5 9 7)."""
    if len(serial) != 8 or not serial.isdigit():
        raise ValueError("an S10 serial number has 8 digits")
    check = 11 - sum(int(d) * w for d, w in zip(serial, S10_WEIGHTS, strict=True)) % 11
    return {10: 0, 11: 5}.get(check, check)


def s10_tracking_number(prefix: str, serial: int, country: str) -> str:
    """``prefix`` + 8-digit serial + check digit + country, e.g. ``RA473124829GB``."""
    if not 0 < serial <= MAX_S10_SERIAL:
        raise ValueError("serial out of range")
    digits = f"{serial:08d}"
    return f"{prefix.upper()}{digits}{s10_check_digit(digits)}{country.upper()}"


def is_valid_s10(number: str) -> bool:
    if not re.fullmatch(r"[A-Z]{2}\d{9}[A-Z]{2}", number):
        return False
    return s10_check_digit(number[2:10]) == int(number[10])


# --- webhook signatures --------------------------------------------------------------------


def sign_webhook(secret: str, body: bytes) -> str:
    """The signature header value of ``body``: ``sha256=<hex HMAC-SHA256>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(secret: str | None, headers: Mapping[str, str], body: bytes) -> None:
    if not secret:
        raise InvalidSignature("no webhook secret is configured for this carrier")
    lowered = {k.lower(): v for k, v in headers.items()}
    given = lowered.get(SIGNATURE_HEADER.lower(), "")
    # Constant-time comparison: the answer time must not reveal how much of it matched.
    if not given or not hmac.compare_digest(given.strip(), sign_webhook(secret, body)):
        raise InvalidSignature("the webhook signature does not match")


# --- the built-in carrier ------------------------------------------------------------------


class TableRateCarrier:
    """Rates from the configured tables, S10 tracking numbers, ZPL/JSON labels, HMAC webhooks."""

    def __init__(self, context: CarrierContext) -> None:
        self.context = context
        self.config = context.config

    # rates

    def _best_table(
        self, service_code: str, origin: str, destination: Destination, currency: str | None
    ) -> TableRates | None:
        """The table of the most specific matching zone; an exact origin beats "any"."""
        best: tuple[tuple[int, int], int, int] | None = None
        chosen = None
        for table in self.context.rate_card.tables:
            if table.service_code != service_code:
                continue
            if currency is not None and table.currency != currency:
                continue
            if table.origin_country not in (None, origin):
                continue
            specificity = zone_specificity(table.zone, destination)
            if specificity is None:
                continue
            key = (specificity, int(table.origin_country is not None), -table.id)
            if best is None or key > best:
                best, chosen = key, table
        return chosen

    def _price(self, table: TableRates, request: RateRequest) -> Rate | None:
        prices = [table.parcel_price(w) for w in request.parcels_g]
        if any(p is None for p in prices):
            return None
        base = sum((p for p in prices if p is not None), ZERO)
        free = table.free_over is not None and request.order_value >= table.free_over
        surcharge = ZERO
        if table.remote_surcharge and table.is_remote(request.destination):
            # Remote-area surcharges are carrier costs per parcel: free shipping waives
            # the base price only.
            surcharge = table.remote_surcharge * len(request.parcels_g)
        service = self.context.rate_card.service(table.service_code)
        assert service is not None
        return Rate(
            carrier_code=self.config.code,
            service_code=service.code,
            service_name=service.name,
            level=service.level,
            amount=quantize((ZERO if free else base) + surcharge, request.currency),
            currency=request.currency,
            min_days=service.min_days,
            max_days=service.max_days,
            source=f"rate-table:{table.id}",
            free_shipping=free,
            remote_surcharge=quantize(surcharge, request.currency),
        )

    def rates(self, request: RateRequest) -> list[Rate]:
        found = []
        for service in self.context.rate_card.services:
            if not service.scope.allows(request.origin_country, request.destination.country):
                continue
            table = self._best_table(
                service.code, request.origin_country, request.destination, request.currency
            )
            rate = None if table is None else self._price(table, request)
            if rate is not None:
                found.append(rate)
        return found

    def covers(
        self, service_code: str, origin: str, destination: Destination, weight_g: int
    ) -> bool:
        """Whether a table of the service prices this parcel (in any of its currencies)."""
        service = self.context.rate_card.service(service_code)
        if service is None or not service.scope.allows(origin, destination.country):
            return False
        currencies = sorted({t.currency for t in self.context.rate_card.tables})
        for currency in currencies:
            table = self._best_table(service_code, origin, destination, currency)
            if table is not None and table.parcel_price(weight_g) is not None:
                return True
        return False

    # labels

    def create_label(self, request: LabelRequest) -> Label:
        service = self.context.rate_card.service(request.service_code)
        if service is None:
            raise CarrierInputError("body.service_code", "not a service of this carrier")
        number = s10_tracking_number(
            self.config.tracking_prefix, self.context.next_serial(), request.ship_from.country
        )
        if request.format is LabelFormat.JSON:
            content = render_json_label(self.config, service, request, number)
        else:
            content = render_zpl_label(self.config, service, request, number)
        return Label(number, self.config.code, service.code, request.format, content=content)

    def void_label(self, tracking_number: str) -> None:
        # Table-rate labels are generated locally: there is nothing to refund.
        return None

    # tracking

    def track(self, tracking_number: str) -> list[TrackingEvent]:
        return self.context.recorded_events(tracking_number)

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> list[TrackingEvent]:
        verify_signature(self.config.webhook_secret, headers, body)
        return parse_tracking_payload(body)


# --- webhook payload of the built-in carrier -----------------------------------------------


def _text(raw: Any, field: str, max_length: int, *, required: bool) -> str | None:
    if raw is None and not required:
        return None
    if not isinstance(raw, str) or not raw.strip():
        raise CarrierInputError(field, "a non-empty string is required")
    if len(raw) > max_length:
        raise CarrierInputError(field, f"at most {max_length} characters")
    return raw.strip()


def _timestamp(raw: Any, field: str) -> datetime:
    if not isinstance(raw, str):
        raise CarrierInputError(field, "an ISO 8601 timestamp with a UTC offset is required")
    try:
        value = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise CarrierInputError(field, "not an ISO 8601 timestamp") from exc
    if value.tzinfo is None:
        raise CarrierInputError(field, "the timestamp needs a UTC offset")
    return value


def _event(raw: Any, field: str) -> TrackingEvent:
    if not isinstance(raw, dict):
        raise CarrierInputError(field, "an object is required")
    unknown = sorted(
        set(raw) - {"id", "tracking_number", "status", "occurred_at", "location", "description"}
    )
    if unknown:
        raise CarrierInputError(f"{field}.{unknown[0]}", "unknown field")
    try:
        status = TrackingStatus(str(raw.get("status")))
    except ValueError as exc:
        allowed = ", ".join(s.value for s in TrackingStatus)
        raise CarrierInputError(f"{field}.status", f"one of {allowed}") from exc
    return TrackingEvent(
        tracking_number=str(
            _text(raw.get("tracking_number"), f"{field}.tracking_number", 40, required=True)
        ),
        status=status,
        occurred_at=_timestamp(raw.get("occurred_at"), f"{field}.occurred_at"),
        location=_text(raw.get("location"), f"{field}.location", 200, required=False),
        description=_text(raw.get("description"), f"{field}.description", 2000, required=False),
        event_id=_text(raw.get("id"), f"{field}.id", 100, required=True),
    )


def parse_tracking_payload(body: bytes) -> list[TrackingEvent]:
    """``{"events": [{"id", "tracking_number", "status", "occurred_at", ...}]}``."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CarrierInputError("body", "not JSON") from exc
    events = data.get("events") if isinstance(data, dict) else None
    if not isinstance(events, list) or not 1 <= len(events) <= 500:
        raise CarrierInputError("body.events", "a list of 1 to 500 events is required")
    return [_event(raw, f"body.events[{i}]") for i, raw in enumerate(events)]


# --- label documents -----------------------------------------------------------------------


def _zpl_text(value: str) -> str:
    # ^ and ~ start ZPL commands; a field must not contain them.
    return value.replace("^", " ").replace("~", " ")


def _address_lines(address: Address) -> list[str]:
    lines = [address.name, address.company, address.line1, address.line2]
    city = " ".join(x for x in (address.postal_code, address.city) if x)
    lines += [city, " ".join(x for x in (address.region, address.country) if x)]
    return [x for x in lines if x]


def render_zpl_label(
    config: CarrierConfig, service: ServiceConfig, request: LabelRequest, tracking_number: str
) -> str:
    """A 4x6 inch thermal label in ZPL II (UTF-8 with ^CI28). Same request, same label."""
    out = [
        "^XA",
        "^CI28",
        f"^FO40,30^A0N,40,40^FD{_zpl_text(config.name)}^FS",
        f"^FO40,80^A0N,30,30^FD{_zpl_text(service.name)}^FS",
        "^FO40,130^A0N,24,24^FDFROM^FS",
    ]
    y = 160
    for line in _address_lines(request.ship_from):
        out.append(f"^FO40,{y}^A0N,24,24^FD{_zpl_text(line)}^FS")
        y += 28
    y += 20
    out.append(f"^FO40,{y}^A0N,28,28^FDTO^FS")
    y += 34
    for line in _address_lines(request.ship_to):
        out.append(f"^FO40,{y}^A0N,34,34^FD{_zpl_text(line)}^FS")
        y += 40
    y += 20
    out.append(f"^FO40,{y}^A0N,24,24^FDWEIGHT {request.weight_g} G^FS")
    if request.reference:
        out.append(f"^FO400,{y}^A0N,24,24^FDREF {_zpl_text(request.reference)}^FS")
    if request.customs:
        y += 34
        total = sum((item.value for item in request.customs), ZERO)
        out.append(
            f"^FO40,{y}^A0N,24,24^FDCUSTOMS DECLARATION CN22 {len(request.customs)} ITEM(S) "
            f"{total} {request.customs[0].currency}^FS"
        )
    out.append(f"^FO40,{y + 50}^BY3^BCN,140,Y,N,N^FD{tracking_number}^FS")
    out.append("^XZ")
    return "\n".join(out) + "\n"


def render_json_label(
    config: CarrierConfig, service: ServiceConfig, request: LabelRequest, tracking_number: str
) -> str:
    """The label's data as canonical JSON (sorted keys) for printers that lay it out."""

    def address(a: Address) -> dict[str, Any]:
        return {k: v for k, v in vars(a).items() if v is not None}

    document = {
        "carrier": {"code": config.code, "name": config.name},
        "service": {"code": service.code, "name": service.name, "level": service.level},
        "tracking_number": tracking_number,
        "ship_from": address(request.ship_from),
        "ship_to": address(request.ship_to),
        "weight_g": request.weight_g,
        "reference": request.reference,
        "customs": [{**vars(item), "value": str(item.value)} for item in request.customs],
    }
    return json.dumps(document, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


# --- registry ------------------------------------------------------------------------------

CarrierFactory = Callable[[CarrierContext], Carrier]
_REGISTRY: dict[str, CarrierFactory] = {"table": TableRateCarrier}


def register_carrier(name: str, factory: CarrierFactory) -> None:
    """Make an integration available to carriers whose ``adapter`` is ``name``."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,39}", name):
        raise ValueError("adapter names are 1 to 40 lower-case letters, digits, - or _")
    _REGISTRY[name] = factory


def unregister_carrier(name: str) -> None:
    if name == "table":
        raise ValueError("the built-in table carrier cannot be removed")
    _REGISTRY.pop(name, None)


def registered_adapters() -> list[str]:
    return sorted(_REGISTRY)


def carrier_for(context: CarrierContext) -> Carrier:
    """The integration named by the carrier's ``adapter``, built for this context."""
    factory = _REGISTRY.get(context.config.adapter)
    if factory is None:
        raise LookupError(f"no carrier integration named {context.config.adapter!r}")
    return factory(context)
