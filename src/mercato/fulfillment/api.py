"""Stores and warehouses at work: pick lists, packing, shipping, click & collect."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from pydantic import Field
from sqlalchemy.orm import Session

from mercato.auth.permissions import Permission
from mercato.auth.principal import Principal
from mercato.deps import (
    DbSession,
    Pagination,
    get_database,
    require,
    require_outside_transaction,
)
from mercato.errors import NotFound
from mercato.flows import capture
from mercato.fulfillment import service
from mercato.fulfillment.models import FulfillmentOrder, Shipment
from mercato.orders import service as orders
from mercato.pagination import decode_id_cursor, page_of
from mercato.routing import router
from mercato.schemas import PageOut, ResponseModel, StrictModel

api = router("/v1/fulfillment", tags=["fulfillment"])

Reader = Annotated[Principal, Depends(require(Permission.ORDERS_READ))]
Writer = Annotated[Principal, Depends(require(Permission.ORDERS_WRITE))]
WriterNoTx = Annotated[Principal, Depends(require_outside_transaction(Permission.ORDERS_WRITE))]
SettingsWriter = Annotated[Principal, Depends(require(Permission.SHIPPING_WRITE))]


class TaskLineOut(ResponseModel):
    id: int
    order_line_id: int
    variant_id: int
    sku: str
    name: str
    quantity: int
    status: str


class ShipmentOut(ResponseModel):
    id: int
    carrier_code: str
    service_code: str
    tracking_number: str
    status: str
    packages: list[dict[str, Any]]
    customs: list[dict[str, Any]] | None
    duty_estimate: dict[str, Any] | None
    lines: list[dict[str, Any]]


class TaskOut(ResponseModel):
    id: int
    order_id: int
    order_number: str
    location_id: int
    kind: str
    status: str
    destination_location_id: int | None
    on_hold: bool
    shipping_address: dict[str, Any] | None
    ready_at: Any = None
    expires_at: Any = None
    lines: list[TaskLineOut]
    shipments: list[ShipmentOut] = []
    pickup_code: str | None = Field(
        default=None, description="Only in the answer to /ready: give it to the customer"
    )
    transfer_id: int | None = None


class PackageItemIn(StrictModel):
    order_line_id: int
    quantity: int = Field(ge=1, le=100_000)


class PackageIn(StrictModel):
    weight_g: int = Field(ge=1, le=1_000_000)
    length_mm: int | None = Field(default=None, ge=1, le=10_000)
    width_mm: int | None = Field(default=None, ge=1, le=10_000)
    height_mm: int | None = Field(default=None, ge=1, le=10_000)
    items: list[PackageItemIn] = Field(
        default_factory=list,
        max_length=500,
        description="What this parcel holds. Either every package lists its items (each "
        "becomes a shipment of its own) or none does (one shipment of all the packages).",
    )

    def package(self) -> service.Package:
        return service.Package(
            weight_g=self.weight_g,
            length_mm=self.length_mm,
            width_mm=self.width_mm,
            height_mm=self.height_mm,
            items=tuple(service.PackageItem(i.order_line_id, i.quantity) for i in self.items),
        )


class PackIn(StrictModel):
    packages: list[PackageIn] = Field(min_length=1, max_length=50)


class ShipIn(StrictModel):
    carrier_code: str | None = Field(default=None, max_length=40)
    service_code: str | None = Field(default=None, max_length=40)
    packages: list[PackageIn] = Field(default_factory=list, max_length=50)


class HandoverIn(StrictModel):
    code: str = Field(min_length=6, max_length=6, pattern=r"^\d{6}$")


class RejectIn(StrictModel):
    order_line_ids: list[int] = Field(min_length=1, max_length=500)
    reason: str = Field(min_length=1, max_length=500)


class ReceiveTransferIn(StrictModel):
    transfer_id: int


class PolicyIn(StrictModel):
    policy: dict[str, Any] = Field(
        default_factory=dict,
        description="SourcingPolicy fields: cost_per_shipment, cost_per_km, "
        "store_unit_penalty, min_store_units, allow_split, max_shipments, "
        "domestic_only, cross_border_penalty",
    )
    pickup_days: int | None = Field(default=None, ge=1, le=60)


class PolicyOut(ResponseModel):
    policy: dict[str, Any]
    pickup_days: int


# What identifies the person in an address; the country stays (analysts aggregate by it).
_ADDRESS_PERSONAL = (
    "name",
    "first_name",
    "last_name",
    "company",
    "line1",
    "line2",
    "city",
    "region",
    "postal_code",
    "phone",
    "email",
    "latitude",
    "longitude",
)


def _address_for(principal: Principal, address: dict[str, Any] | None) -> dict[str, Any] | None:
    """Roles without customers:pii (analysts) see where a parcel goes only by country."""
    if address is None or principal.has(Permission.CUSTOMERS_PII):
        return address
    return {k: (None if k in _ADDRESS_PERSONAL else v) for k, v in address.items()}


def task_out(
    session: Session, principal: Principal, task: FulfillmentOrder, **extra: Any
) -> TaskOut:
    order = orders.get_order(session, task.order_id)
    by_line = {x.id: x for x in orders.order_lines(session, task.order_id)}
    shipments: list[Shipment] = [
        s
        for s in service.shipments_for_order(session, task.order_id)
        if s.fulfillment_order_id == task.id
    ]
    return TaskOut(
        id=task.id,
        order_id=order.id,
        order_number=order.number,
        location_id=task.location_id,
        kind=task.kind,
        status=task.status,
        destination_location_id=task.destination_location_id,
        on_hold=order.on_hold,
        shipping_address=_address_for(principal, order.shipping_address)
        if task.kind == "ship"
        else None,
        ready_at=task.ready_at,
        expires_at=task.expires_at,
        lines=[
            TaskLineOut(
                id=x.id,
                order_line_id=x.order_line_id,
                variant_id=x.variant_id,
                sku=by_line[x.order_line_id].sku,
                name=by_line[x.order_line_id].name,
                quantity=x.quantity,
                status=x.status,
            )
            for x in service.task_lines(session, task.id)
        ],
        shipments=[ShipmentOut.model_validate(s) for s in shipments],
        **extra,
    )


@api.get("/orders", response_model=PageOut[TaskOut])
def list_tasks(
    session: DbSession,
    principal: Reader,
    page: Pagination,
    location_id: int | None = None,
    status: Annotated[str | None, Query(max_length=20)] = None,
    kind: Annotated[str | None, Query(pattern="^(ship|pickup|transfer)$")] = None,
    order_number: Annotated[str | None, Query(max_length=20)] = None,
) -> PageOut[TaskOut]:
    """The pick list of a location (store staff see their own locations only);
    ``order_number`` finds one order's tasks."""
    places = principal.location_ids
    if location_id is not None:
        principal.require_location(location_id)
        places = frozenset({location_id})
    cursor, limit = page
    order_id = None
    if order_number:
        try:
            order_id = orders.get_by_number(session, order_number).id
        except NotFound:
            return PageOut(items=[], next_cursor=None)
    tasks = service.list_tasks(
        session,
        location_ids=places,
        status=status,
        kind=kind,
        limit=limit + 1,
        after=decode_id_cursor(cursor),
        order_id=order_id,
    )
    found = page_of(tasks, limit, key=lambda task: task.id)
    return PageOut(
        items=[task_out(session, principal, t) for t in found.items],
        next_cursor=found.next_cursor,
    )


@api.get("/orders/{task_id}", response_model=TaskOut)
def get_task(task_id: int, session: DbSession, principal: Reader) -> TaskOut:
    task = service.get_task(session, task_id)
    principal.require_location(task.location_id)
    return task_out(session, principal, task)


@api.post("/orders/{task_id}/pick", response_model=TaskOut)
def pick(task_id: int, session: DbSession, principal: Writer) -> TaskOut:
    return task_out(session, principal, service.start_picking(session, principal, task_id))


@api.post("/orders/{task_id}/pack", response_model=TaskOut)
def pack(task_id: int, body: PackIn, session: DbSession, principal: Writer) -> TaskOut:
    packages = [p.package() for p in body.packages]
    return task_out(session, principal, service.pack(session, principal, task_id, packages))


@api.post("/orders/{task_id}/ship", response_model=TaskOut)
def ship(request: Request, task_id: int, body: ShipIn, principal: WriterNoTx) -> TaskOut:
    """Labels bought, units out of stock (a sale here), the order's lines fulfilled; then
    the payment for what shipped is captured (no transaction open around that call)."""
    database = get_database(request)
    shipped = capture.ship(
        database,
        principal,
        task_id,
        packages=[p.package() for p in body.packages],
        carrier_code=body.carrier_code,
        service_code=body.service_code,
        request_id=getattr(request.state, "request_id", None),
    )
    with database.read() as session:
        task = service.get_task(session, task_id)
        return task_out(session, principal, task, transfer_id=shipped.transfer_id)


@api.post("/orders/{task_id}/ready", response_model=TaskOut)
def ready(task_id: int, session: DbSession, principal: Writer) -> TaskOut:
    """On the pickup shelf. The answer carries the code the customer shows at the counter
    (stored only as a hash: send it to the customer now)."""
    result = service.ready_for_pickup(session, principal, task_id)
    return task_out(session, principal, result.task, pickup_code=result.code)


@api.post("/orders/{task_id}/handover", response_model=TaskOut)
def handover(request: Request, task_id: int, body: HandoverIn, principal: WriterNoTx) -> TaskOut:
    """The customer shows their code and collects; the payment is settled."""
    database = get_database(request)
    request_id = getattr(request.state, "request_id", None)
    capture.hand_over(database, principal, task_id, body.code, request_id=request_id)
    with database.read() as session:
        return task_out(session, principal, service.get_task(session, task_id))


@api.post("/orders/{task_id}/reject", response_model=TaskOut)
def reject(task_id: int, body: RejectIn, session: DbSession, principal: Writer) -> TaskOut:
    """This location cannot supply these lines: they are sourced again elsewhere."""
    service.reject_lines(session, principal, task_id, body.order_line_ids, body.reason)
    return task_out(session, principal, service.get_task(session, task_id))


@api.post("/orders/{task_id}/receive-transfer", response_model=TaskOut)
def receive_transfer(
    task_id: int, body: ReceiveTransferIn, session: DbSession, principal: Writer
) -> TaskOut:
    """The pickup store received the stock sent for this order: it is held for the customer."""
    store_task = service.receive_transfer_for_pickup(session, principal, task_id, body.transfer_id)
    return task_out(session, principal, store_task)


@api.get("/policy", response_model=PolicyOut)
def get_policy(session: DbSession, principal: Reader) -> PolicyOut:
    return PolicyOut(
        policy=asdict(service.policy(session)), pickup_days=service.pickup_days(session)
    )


@api.put("/policy", response_model=PolicyOut)
def put_policy(body: PolicyIn, session: DbSession, principal: SettingsWriter) -> PolicyOut:
    """The routing weights and rules (prefer warehouses, never ship from a store with fewer
    than N units, splits, distance cost) and how long pickups wait."""
    row = service.set_policy(session, principal, body.policy, body.pickup_days)
    return PolicyOut(policy=asdict(service.policy(session)), pickup_days=row.pickup_days)
