"""Shipping a task: labels bought, units out of stock, the order's lines fulfilled.

:func:`ship` goes step by step: the task's open lines, its parcels (as packed, else one
parcel of the lines' weight), the carrier, the shipments the parcels make (one per parcel
that lists its items, else one of all of them), the customs declarations when the parcels
cross a border (all checked before the first label is bought: a carrier's label is not
undone by a rollback), then per shipment the duty estimate, the labels and the shipment
row. The units then leave stock (a sale at this location) and count as fulfilled on the
order; payment capture follows outside this transaction (``mercato.flows.capture``). A
transfer task (stock for a pickup store) ships as a transfer instead.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from mercato import money
from mercato.auth.principal import Principal
from mercato.auth.service import audit
from mercato.catalog import service as catalog
from mercato.db import utcnow
from mercato.errors import FieldError, UnprocessableState
from mercato.events import publish
from mercato.fulfillment.carriers import CarrierChoice, choose_carrier, tell_shopper
from mercato.fulfillment.event_types import ShipmentShipped, ShippedLine, TransferShipped
from mercato.fulfillment.models import FulfillmentLine, FulfillmentOrder, Shipment
from mercato.fulfillment.tasks import (
    Package,
    check_contents,
    consume_stock,
    move_task,
    task_for,
    task_lines,
    units_by_line,
    units_by_variant,
)
from mercato.inventory import service as inventory
from mercato.locations import service as locations
from mercato.locations.models import Location
from mercato.orders import service as orders
from mercato.orders.models import Order
from mercato.shipping import customs as customs_rules
from mercato.shipping import service as shipping
from mercato.shipping.carriers import Address, CustomsItem, LabelRequest

# The statuses a task ships from.
SHIPPABLE = ("open", "picking", "packed")


@dataclass(frozen=True)
class ShipResult:
    task: FulfillmentOrder
    shipments: list[Shipment]
    order: Order
    transfer_id: int | None = None


@dataclass(frozen=True)
class _Dispatch:
    """What every shipment of one task shares: where from, where to, which carrier."""

    task: FulfillmentOrder
    order: Order
    place: Location
    address: dict[str, Any]
    choice: CarrierChoice
    cross_border: bool


@dataclass(frozen=True)
class _Consignment:
    """One shipment: its parcels and the units they carry (order line id -> units)."""

    parcels: list[Package]
    contents: dict[int, int]


def ship(
    session: Session,
    actor: Principal,
    task_id: int,
    *,
    packages: Sequence[Package] = (),
    carrier_code: str | None = None,
    service_code: str | None = None,
) -> ShipResult:
    """Buy labels, take the units out of stock (a sale at this location), count them as
    fulfilled on the order. Payment capture follows, outside this transaction.

    Packages that list their items become one shipment each; packages that do not travel
    together as one shipment of every open line. A unit is counted shipped once either way.
    """
    task, order = task_for(session, actor, task_id, SHIPPABLE)
    lines = _lines_to_ship(session, task)
    if task.kind == "transfer":
        return _ship_transfer(session, actor, task, order, lines)
    place = locations.get_location(session, task.location_id)
    address = _shipping_address(order)
    parcels = _parcels(session, task, lines, packages)
    open_qty = units_by_line(lines)
    check_contents(parcels, open_qty)
    weights = [p.weight_g for p in parcels]
    choice = choose_carrier(session, order, place, address, weights, carrier_code, service_code)
    cross_border = customs_rules.crosses_customs_border(place.country, address["country"])
    dispatch = _Dispatch(task, order, place, address, choice, cross_border)
    consignments = _consignments(parcels, open_qty)
    declarations = _declarations(session, dispatch, consignments)
    made = _ship_consignments(session, actor, dispatch, consignments, declarations, lines)
    session.add_all(made)
    consume_stock(session, actor, order, lines, "shipped")
    move_task(session, task, SHIPPABLE, "shipped")
    session.flush()
    if choice.substituted:
        _record_substitution(session, actor, dispatch)
    _publish_shipped(session, dispatch, made)
    updated = orders.record_fulfilled(
        session, actor, order.id, open_qty, reason=f"shipped from {place.code}"
    )
    return ShipResult(task, made, updated)


def _lines_to_ship(session: Session, task: FulfillmentOrder) -> list[FulfillmentLine]:
    """The task's open lines; a pickup task is handed over instead, and an empty one has
    nothing to ship."""
    if task.kind == "pickup":
        raise UnprocessableState(
            "a pickup order is handed over, not shipped", code="illegal-transition"
        )
    lines = [x for x in task_lines(session, task.id) if x.status == "open"]
    if not lines:
        raise UnprocessableState(
            "nothing left to ship on this fulfillment order", code="illegal-transition"
        )
    return lines


def _shipping_address(order: Order) -> dict[str, Any]:
    address = order.shipping_address
    if not address:
        raise UnprocessableState(
            f"order {order.number} has no shipping address", code="no-shipping-address"
        )
    return address


def _parcels(
    session: Session,
    task: FulfillmentOrder,
    lines: Sequence[FulfillmentLine],
    packages: Sequence[Package],
) -> list[Package]:
    """The parcels given now, else those packed, else one parcel of the lines' weight."""
    infos = catalog.variant_infos(session, [x.variant_id for x in lines])
    return (
        list(packages)
        or [Package.from_json(p) for p in task.packages or []]
        or [_default_package(infos, lines)]
    )


def _consignments(parcels: Sequence[Package], open_qty: dict[int, int]) -> list[_Consignment]:
    """Parcels that list their items are one shipment each; parcels that do not travel
    together as one shipment of every open unit."""
    if not parcels[0].items:
        return [_Consignment(list(parcels), open_qty)]
    consignments = []
    for parcel in parcels:
        contents: dict[int, int] = defaultdict(int)
        for item in parcel.items:
            contents[item.order_line_id] += item.quantity
        consignments.append(_Consignment([parcel], dict(contents)))
    return consignments


def _declarations(
    session: Session, dispatch: _Dispatch, consignments: Sequence[_Consignment]
) -> list[list[CustomsItem]]:
    """The customs declaration of each shipment (none at home). Every declaration is checked
    before the first label is bought: a carrier's label is not undone by a rollback."""
    place, address = dispatch.place, dispatch.address
    route = f"from {place.country} to {address['country']}"
    return [
        _customs(session, dispatch.order, c.contents, route) if dispatch.cross_border else []
        for c in consignments
    ]


def _ship_consignments(
    session: Session,
    actor: Principal,
    dispatch: _Dispatch,
    consignments: Sequence[_Consignment],
    declarations: Sequence[list[CustomsItem]],
    lines: Sequence[FulfillmentLine],
) -> list[Shipment]:
    """Per shipment: its duty estimate, a label for each parcel, the shipment row."""
    variant_of = {x.order_line_id: x.variant_id for x in lines}
    made = []
    for index, (consignment, declared) in enumerate(zip(consignments, declarations, strict=True)):
        duty = None
        if dispatch.cross_border:
            duty = _duty_estimate(session, dispatch, declared, first=index == 0)
        packed = _buy_labels(session, actor, dispatch, consignment.parcels, declared)
        made.append(_shipment(dispatch, consignment, packed, declared, duty, variant_of))
    return made


def _duty_estimate(
    session: Session, dispatch: _Dispatch, declared: Sequence[CustomsItem], *, first: bool
) -> dict[str, Any]:
    estimate = shipping.estimate_duties(
        session,
        dispatch.address["country"],
        dispatch.place.country,
        [(c.hs_code, c.origin_country, c.value, c.currency) for c in declared],
        # The shipping charge is paid once: it counts towards the first parcel.
        dispatch.order.shipping_total if first else Decimal(0),
    )
    return {
        "duty": str(estimate.duty),
        "import_tax": str(estimate.import_tax),
        "currency": estimate.currency,
        "de_minimis_applied": estimate.de_minimis_applied,
    }


def _buy_labels(
    session: Session,
    actor: Principal,
    dispatch: _Dispatch,
    parcels: Sequence[Package],
    declared: Sequence[CustomsItem],
) -> list[dict[str, Any]]:
    """A carrier label for each parcel; the parcels as the shipment records them."""
    packed = []
    for parcel in parcels:
        label = shipping.create_label(
            session,
            actor,
            LabelRequest(
                carrier_code=dispatch.choice.carrier,
                service_code=dispatch.choice.service,
                ship_from=_location_address(dispatch.place),
                ship_to=_address(dispatch.address),
                weight_g=parcel.weight_g,
                reference=dispatch.order.number,
                customs=tuple(declared),
            ),
        )
        packed.append(
            {
                **parcel.as_json(),
                "tracking_number": label.tracking_number,
                "label_id": label.id,
                "status": "shipped",
            }
        )
    return packed


def _shipment(
    dispatch: _Dispatch,
    consignment: _Consignment,
    packed: list[dict[str, Any]],
    declared: Sequence[CustomsItem],
    duty: dict[str, Any] | None,
    variant_of: dict[int, int],
) -> Shipment:
    """The shipment row; it carries the first parcel's tracking number and label."""
    return Shipment(
        order_id=dispatch.order.id,
        fulfillment_order_id=dispatch.task.id,
        location_id=dispatch.place.id,
        carrier_code=dispatch.choice.carrier,
        service_code=dispatch.choice.service,
        tracking_number=packed[0]["tracking_number"],
        label_id=packed[0]["label_id"],
        status="shipped",
        packages=packed,
        customs=[{**vars(c), "value": str(c.value)} for c in declared] or None,
        duty_estimate=duty,
        lines=[
            {"order_line_id": line_id, "variant_id": variant_of[line_id], "quantity": qty}
            for line_id, qty in sorted(consignment.contents.items())
        ],
        shipped_at=utcnow(),
        updated_at=utcnow(),
    )


def _record_substitution(session: Session, actor: Principal, dispatch: _Dispatch) -> None:
    """Another carrier than the one quoted ships: audited, noted on the order, and the
    shopper who chose a carrier is told."""
    task, order, choice = dispatch.task, dispatch.order, dispatch.choice
    audit(
        session,
        actor,
        "fulfillment.carrier_substituted",
        "fulfillment_order",
        task.id,
        {
            "quoted": {
                "carrier": (order.shipping_option or {}).get("carrier"),
                "service": (order.shipping_option or {}).get("service"),
            },
            "used": {"carrier": choice.carrier, "service": choice.service},
            "reason": choice.substituted,
        },
    )
    orders.add_note(session, actor, order.id, f"Carrier changed: {choice.substituted}")
    if (order.shipping_option or {}).get("carrier"):
        tell_shopper(session, actor, order, dispatch.place, choice)


def _publish_shipped(session: Session, dispatch: _Dispatch, made: Sequence[Shipment]) -> None:
    order, choice = dispatch.order, dispatch.choice
    for shipment in made:
        publish(
            session,
            ShipmentShipped(
                shipment_id=shipment.id,
                order_id=order.id,
                number=order.number,
                location_id=dispatch.place.id,
                carrier=choice.carrier,
                service=choice.service,
                carrier_substituted=choice.substituted,
                tracking_number=shipment.tracking_number,
                tracking_numbers=tuple(p["tracking_number"] for p in shipment.packages),
                lines=tuple(ShippedLine(**x) for x in shipment.lines),
            ),
        )


def _default_package(
    infos: dict[int, catalog.VariantInfo], lines: Sequence[FulfillmentLine]
) -> Package:
    weight = sum(
        ((infos[x.variant_id].weight_g or 0) if x.variant_id in infos else 0) * x.quantity
        for x in lines
    )
    return Package(max(1, weight))


def _address(data: dict[str, Any]) -> Address:
    return Address(
        name=data.get("name") or "",
        line1=data.get("line1") or "",
        city=data.get("city") or "",
        country=data["country"],
        postal_code=data.get("postal_code"),
        region=data.get("region"),
        line2=data.get("line2"),
        phone=data.get("phone"),
    )


def _location_address(place: Location) -> Address:
    return Address(
        name=place.name,
        line1=place.address_line1 or place.name,
        city=place.city or "",
        country=place.country,
        postal_code=place.postal_code,
        region=place.region,
    )


def _customs(
    session: Session, order: Order, contents: dict[int, int], route: str
) -> list[CustomsItem]:
    """The declaration of a cross-border parcel, one item per order line.

    The value declared is the net price paid for the goods: sales tax charged at checkout
    is not part of the customs value (an export is not taxed where it leaves). HS code and
    origin come from the catalogue; a variant without them cannot cross a border, since a
    made-up code would be a false declaration.
    """
    by_id = {x.id: x for x in orders.order_lines(session, order.id)}
    infos = catalog.variant_infos(session, [by_id[i].variant_id for i in contents])
    items: list[CustomsItem] = []
    missing: list[FieldError] = []
    for line_id, quantity in sorted(contents.items()):
        line = by_id[line_id]
        info = infos.get(line.variant_id)
        hs_code = info.hs_code if info else None
        origin = info.country_of_origin if info else None
        if not hs_code:
            missing.append(
                FieldError(
                    f"variants[{line.variant_id}].hs_code",
                    f"{line.sku} has no HS code: required to ship {route}",
                )
            )
        if not origin:
            missing.append(
                FieldError(
                    f"variants[{line.variant_id}].country_of_origin",
                    f"{line.sku} has no country of origin: required to ship {route}",
                )
            )
        if not hs_code or not origin:
            continue
        net = line.total - line.tax
        unit = net / line.quantity if line.quantity else Decimal(0)
        items.append(
            CustomsItem(
                description=line.name[:100],
                hs_code=hs_code,
                origin_country=origin,
                quantity=quantity,
                value=money.quantize(unit * quantity, order.currency),
                currency=order.currency,
            )
        )
    if missing:
        raise UnprocessableState(
            f"customs data missing to ship {route}: "
            + "; ".join(f"{e['field']}: {e['reason']}" for e in missing),
            code="customs-data-missing",
            errors=missing,
        )
    return items


def _ship_transfer(
    session: Session,
    actor: Principal,
    task: FulfillmentOrder,
    order: Order,
    lines: list[FulfillmentLine],
) -> ShipResult:
    """Stock for a pickup store leaves its origin as a transfer (not a sale)."""
    assert task.destination_location_id is not None
    ctx = inventory.Context(
        actor, order.channel_id, "order", order.number, note="transfer for pickup"
    )
    for x in lines:
        if x.reservation_id is not None:
            inventory.release_quantity(session, ctx, x.reservation_id, x.quantity)
    transfer = inventory.create_transfer(
        session,
        inventory.Context(actor, order.channel_id, "fulfillment_order", str(task.id)),
        task.location_id,
        task.destination_location_id,
        [(v, q) for v, q in units_by_variant(lines).items()],
        ship_now=True,
    )
    for x in lines:
        x.status = "shipped"
    move_task(session, task, ("open", "picking", "packed"), "shipped")
    publish(
        session,
        TransferShipped(
            fulfillment_order_id=task.id,
            order_id=order.id,
            transfer_id=transfer.id,
            to_location_id=task.destination_location_id,
        ),
    )
    return ShipResult(task, [], order, transfer.id)
