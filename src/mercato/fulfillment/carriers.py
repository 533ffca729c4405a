"""Which carrier takes a customer's parcel, and telling the shopper when routing changes
what checkout quoted.

Checkout quotes shipping from the country the order is expected to leave from (see
``fulfillment.preview``). Stock moves in between: routing may then pick a location in
another country, from which the quoted carrier does not go. As soon as routing decides,
the carrier that will take the parcel is chosen the way shipping will choose it (the same
service level first, else the cheapest), the change is recorded on the order (what the
shopper's order shows) and the shopper gets a message. Shipping later uses the carrier
announced for that origin, so what the shopper was told is what happens.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.catalog import service as catalog
from mercato.customers import service as customers
from mercato.db import utcnow
from mercato.errors import UnprocessableState, ValidationProblem
from mercato.fulfillment import messages, sourcing
from mercato.locations.models import Location
from mercato.marketing import notifier
from mercato.orders import service as orders
from mercato.orders.models import Order
from mercato.shipping import service as shipping
from mercato.shipping.carriers import Destination as ShippingDestination


@dataclass(frozen=True)
class CarrierChoice:
    carrier: str
    service: str
    # Why another carrier than the one quoted at checkout ships this parcel (None if not).
    substituted: str | None = None
    # What the shopper is told of a substitute: its name and transit time.
    name: str | None = None
    min_days: int | None = None
    max_days: int | None = None


def _announced(order: Order, origin_country: str) -> dict[str, Any] | None:
    """The last change the shopper was told of for parcels leaving this country."""
    changes: list[dict[str, Any]] = order.shipping_changes or []
    return next((c for c in reversed(changes) if c.get("origin_country") == origin_country), None)


def choose_carrier(
    session: Session,
    order: Order,
    place: Location,
    address: dict[str, Any],
    weights: Sequence[int],
    carrier_code: str | None,
    service_code: str | None,
) -> CarrierChoice:
    """The carrier the staff named, else the one announced to the shopper for this origin,
    else the one quoted at checkout when it serves this location's route, else another one
    that does (the same service level first)."""
    if carrier_code or service_code:
        return _named(session, order, place, address, carrier_code, service_code)
    option = order.shipping_option or {}
    quoted_carrier, quoted_service = option.get("carrier"), option.get("service")
    origin, destination = place.country, address["country"]
    announced = _announced(order, origin)
    if announced is not None and shipping.serves_route(
        session, announced["carrier"], announced["service"], origin, destination
    ):
        return CarrierChoice(
            announced["carrier"],
            announced["service"],
            None if announced["carrier"] == quoted_carrier else announced.get("reason"),
            announced.get("name"),
            announced.get("min_days"),
            announced.get("max_days"),
        )
    if (
        quoted_carrier
        and quoted_service
        and shipping.serves_route(session, quoted_carrier, quoted_service, origin, destination)
    ):
        return CarrierChoice(quoted_carrier, quoted_service)
    return _substitute(session, order, place, address, weights)


def _named(
    session: Session,
    order: Order,
    place: Location,
    address: dict[str, Any],
    carrier_code: str | None,
    service_code: str | None,
) -> CarrierChoice:
    option = order.shipping_option or {}
    carrier = carrier_code or option.get("carrier")
    service = service_code or option.get("service")
    if not carrier or not service:
        raise ValidationProblem.field(
            "body.carrier_code" if not carrier else "body.service_code",
            "name both the carrier and its service",
        )
    if not shipping.serves_route(session, carrier, service, place.country, address["country"]):
        raise ValidationProblem.field(
            "body.carrier_code",
            f"{carrier} {service} does not ship from {place.code} ({place.country}) "
            f"to {address['country']}",
        )
    return CarrierChoice(carrier, service)


def _substitute(
    session: Session, order: Order, place: Location, address: dict[str, Any], weights: Sequence[int]
) -> CarrierChoice:
    option = order.shipping_option or {}
    quoted_carrier, quoted_service = option.get("carrier"), option.get("service")
    origin, destination = place.country, address["country"]
    level = (
        shipping.service_level(session, quoted_carrier, quoted_service)
        if quoted_carrier and quoted_service
        else None
    )
    options = shipping.quote(
        session,
        origin_country=origin,
        destination=ShippingDestination(
            destination, address.get("region"), address.get("postal_code")
        ),
        parcels=list(weights),
        order_value=order.subtotal,
        currency=order.currency,
        at=utcnow(),
    )
    if not options:
        raise UnprocessableState(
            f"no carrier ships from {place.code} ({origin}) to {destination}"
            + (f"; {quoted_carrier} was quoted at checkout" if quoted_carrier else ""),
            code="no-carrier-for-route",
            extra={"origin_country": origin, "destination_country": destination},
        )
    same_level = [o for o in options if level is not None and o.level == level]
    chosen = (same_level or options)[0]  # cheapest first
    if quoted_carrier:
        why = (
            f"{quoted_carrier} {quoted_service} (quoted at checkout) does not ship from "
            f"{origin} to {destination}; {chosen.carrier_code} {chosen.service_code} "
            + ("at the same service level" if same_level else "as the cheapest option")
            + f" ships from {place.code}"
        )
    else:
        why = f"no carrier was quoted; {chosen.carrier_code} {chosen.service_code} is cheapest"
    return CarrierChoice(
        chosen.carrier_code,
        chosen.service_code,
        why,
        f"{chosen.carrier_name} {chosen.service_name}",
        chosen.min_days,
        chosen.max_days,
    )


# --- telling the shopper ----------------------------------------------------------------------


def announce_route(
    session: Session,
    actor: Principal,
    order: Order,
    plan: sourcing.SourcingPlan,
    places: Mapping[int, Location],
) -> None:
    """After routing: for each country the customer's parcels leave from, the carrier that
    will take them; a change from the quote is recorded on the order and told the shopper."""
    option = order.shipping_option or {}
    address = order.shipping_address
    if not option.get("carrier") or not address:
        return  # nothing was quoted (staff and imported orders, pickups): nothing to change
    origins: dict[str, Location] = {}
    for shipment in plan.shipments:
        place = places.get(shipment.origin_id)
        if shipment.destination_id is None and place is not None:
            origins.setdefault(place.country, place)
    # Leaving from the country quoted: the quoted carrier serves it, as checkout saw.
    moved = {c: p for c, p in origins.items() if c != option.get("origin_country")}
    if not moved:
        return
    weights = _weights_by_origin(session, order, plan)
    for place in moved.values():
        try:
            choice = choose_carrier(
                session, order, place, address, [weights[place.id]], None, None
            )
        except UnprocessableState:
            continue  # no carrier at all: shipping stops and says so, staff decide
        if choice.substituted is None and option.get("origin_country") is None:
            continue  # an order quoted before origins were recorded, and its carrier serves
        tell_shopper(session, actor, order, place, choice)


def _weights_by_origin(
    session: Session, order: Order, plan: sourcing.SourcingPlan
) -> dict[int, int]:
    lines = {x.id: x for x in orders.order_lines(session, order.id)}
    infos = catalog.variant_infos(session, [x.variant_id for x in lines.values()])
    weights: dict[int, int] = defaultdict(int)
    for shipment in plan.shipments:
        for line_id, units in shipment.lines:
            info = infos.get(lines[int(line_id)].variant_id)
            weights[shipment.origin_id] += ((info.weight_g or 0) if info else 0) * units
    return {k: max(1, v) for k, v in weights.items()}


def tell_shopper(
    session: Session, actor: Principal, order: Order, place: Location, choice: CarrierChoice
) -> None:
    """Record on the order that its parcel from ``place`` goes with ``choice``, and email
    the shopper, unless they were told exactly that already."""
    option = order.shipping_option or {}
    change = {
        "at": utcnow().isoformat(),
        "origin_country": place.country,
        "carrier": choice.carrier,
        "service": choice.service,
        "name": choice.name
        or (option.get("name") if choice.carrier == option.get("carrier") else None)
        or f"{choice.carrier} {choice.service}",
        "min_days": choice.min_days,
        "max_days": choice.max_days,
        "reason": choice.substituted,
        "quoted": {
            k: option.get(k)
            for k in ("origin_country", "carrier", "service", "name", "min_days", "max_days")
        },
    }
    if orders.record_shipping_change(session, actor, order.id, change):
        _notify(session, order, change)  # else the shopper already knows


def recipient_of(session: Session, order: Order) -> tuple[int | None, str | None, str | None]:
    """Who hears about the order (profile id, email, locale): the order's email, or its
    customer's; a guest who used an account's email is that account."""
    customer_id = order.customer_id
    recipient = order.email
    if customer_id is not None and not recipient:
        recipient = customers.get_customer(session, customer_id).email
    if customer_id is None and recipient:
        account = customers.find_account(session, recipient)
        customer_id = account.id if account is not None else None
    locale = order.locale
    if locale is None and customer_id is not None:
        locale = customers.customer_locale(session, customer_id)
    return customer_id, recipient, locale


def _notify(session: Session, order: Order, change: dict[str, Any]) -> int | None:
    """Queue the "your order ships differently" email (a service message: no marketing
    consent applies)."""
    customer_id, recipient, locale = recipient_of(session, order)
    if not recipient:
        return None
    quoted = change["quoted"]
    rendered = messages.render_shipping_changed(
        locale,
        messages.ShippingChange(
            order_number=order.number,
            origin_country=change["origin_country"],
            carrier=change["name"],
            days=messages.days_text(change["min_days"], change["max_days"]),
            quoted_carrier=quoted.get("name") or quoted.get("carrier") or "",
            quoted_days=messages.days_text(quoted.get("min_days"), quoted.get("max_days")),
        ),
    )
    message = notifier.queue_message(
        session,
        notifier.NewMessage(
            customer_id=customer_id,
            channel=notifier.MessageChannel.EMAIL,
            recipient=recipient,
            template=messages.SHIPPING_CHANGED,
            locale=rendered.language,
            subject=rendered.subject,
            body_text=rendered.text,
            body_html=rendered.html,
            purpose=None,
            reference_type="order",
            reference_id=str(order.id),
            order_id=order.id,
        ),
    )
    return message.id
