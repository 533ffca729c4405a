"""What a location's staff do on the fulfilment screen: pick, pack, ship (labels bought,
payment captured), make ready for pickup and hand over with the customer's code, ship and
receive transfers, and receive returns at the desk.

Each action is the fulfilment, inventory or returns API's call with the signed-in user:
shipping and handover run the same flows outside a request transaction (they capture the
payment after the stock moves). A task's status is claimed with a conditional update, so a
double click acts once; the stock documents and returns also use the form's idempotency key.

The routes join ``web.fulfilment``'s router, which adds the back office prefix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlencode

from fastapi import Form, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from mercato.auth.permissions import Permission
from mercato.auth.principal import Principal
from mercato.deps import get_database
from mercato.errors import Problem, ValidationProblem
from mercato.flows import capture
from mercato.flows import returns as returns_flow
from mercato.fulfillment import service as fulfillment
from mercato.inventory import service as inventory
from mercato.orders import service as orders
from mercato.returns import service as returns
from mercato.returns.state import Condition
from mercato.web import PREFIX
from mercato.web.fulfilment import fulfilment_page
from mercato.web.inventory_shared import form_errors, is_form_problem
from mercato.web.pages import once, page_router, redirect
from mercato.web.rendering import gettext_for
from mercato.web.session import require_page

if TYPE_CHECKING:
    from fastapi.responses import HTMLResponse

# No prefix here: web.fulfilment includes this router under its own (/admin).
router = page_router()

Key = Annotated[str, Form(max_length=200)]
Place = Annotated[int, Form()]
Tab = Annotated[str, Form(max_length=20)]
# The order number the task list was filtered to, kept after the action.
Order = Annotated[str, Form(max_length=20)]


def _back(place: int, tab: str, order: str = "") -> str:
    """The location's page on ``tab``, still filtered to the order worked on."""
    query = {"location": place, "tab": tab, **({"order": order} if order else {})}
    return f"{PREFIX}/fulfilment?{urlencode(query)}"


def _again(
    request: Request,
    principal: Principal,
    problem: Problem,
    place: int,
    tab: str,
    target: str,
    order: str = "",
) -> HTMLResponse:
    """The page again with the refusal beside the task or document it concerns."""
    query = {"location": place, "tab": tab, **({"order": order} if order else {})}
    # The page as its GET would show it (a fresh request: Starlette caches query params).
    scope = {**request.scope, "method": "GET", "path": f"{PREFIX}/fulfilment"}
    scope["query_string"] = urlencode(query).encode()
    errors = {target: form_errors(problem)["form"]}
    return fulfilment_page(Request(scope, request.receive), principal, errors)


def _task_location(request: Request, principal: Principal, task_id: int) -> int:
    """Where the task is (store staff: refused unless it is at their store)."""
    with get_database(request).read() as session:
        task = fulfillment.get_task(session, task_id)
        principal.require_location(task.location_id)
        return task.location_id


# --- tasks ------------------------------------------------------------------------------------


@router.post("/fulfilment/tasks/{task_id}/pick")
def pick(
    request: Request,
    task_id: int,
    tab: Tab = "pick",
    order: Order = "",
    principal: Principal = require_page(Permission.ORDERS_WRITE),
) -> Response:
    place = _task_location(request, principal, task_id)
    try:
        with get_database(request).transaction() as session:
            task = fulfillment.start_picking(session, principal, task_id)
            number = task_number(session, task.order_id)
    except Problem as problem:
        if not is_form_problem(problem):
            raise
        return _again(request, principal, problem, place, tab, f"task-{task_id}", order)
    message = gettext_for(request).gettext("Picking %(number)s.", number=number)
    return redirect(request, _back(place, "picking", order), message)


def task_number(session: Session, order_id: int) -> str:
    return orders.get_order(session, order_id).number


@router.post("/fulfilment/tasks/{task_id}/pack")
def pack(
    request: Request,
    task_id: int,
    weight_g: Annotated[int, Form(ge=1, le=1_000_000)],
    tab: Tab = "picking",
    order: Order = "",
    principal: Principal = require_page(Permission.ORDERS_WRITE),
) -> Response:
    """One parcel of this weight holding every open unit of the task."""
    place = _task_location(request, principal, task_id)
    try:
        with get_database(request).transaction() as session:
            package = fulfillment.Package(weight_g=weight_g)
            task = fulfillment.pack(session, principal, task_id, [package])
            number = task_number(session, task.order_id)
    except Problem as problem:
        if not is_form_problem(problem):
            raise
        return _again(request, principal, problem, place, tab, f"task-{task_id}", order)
    message = gettext_for(request).gettext("Packed %(number)s.", number=number)
    return redirect(request, _back(place, "packed", order), message)


@router.post("/fulfilment/tasks/{task_id}/ship")
def ship(
    request: Request,
    task_id: int,
    tab: Tab = "packed",
    order: Order = "",
    carrier_code: Annotated[str, Form(max_length=40)] = "",
    service_code: Annotated[str, Form(max_length=40)] = "",
    weight_g: Annotated[str, Form(max_length=10)] = "",
    principal: Principal = require_page(Permission.ORDERS_WRITE),
) -> Response:
    """Labels bought from the carrier (the cheapest fitting one unless named), the units
    sold here, the order's lines fulfilled, then the payment for them captured."""
    place = _task_location(request, principal, task_id)
    packages = []
    if weight_g.strip():
        if not weight_g.strip().isdigit() or not 0 < int(weight_g) <= 1_000_000:
            problem = ValidationProblem.field("weight_g", "grams, 1 to 1000000")
            return _again(request, principal, problem, place, tab, f"task-{task_id}", order)
        packages = [fulfillment.Package(weight_g=int(weight_g))]
    try:
        shipped = capture.ship(
            get_database(request),
            principal,
            task_id,
            packages=packages,
            carrier_code=carrier_code or None,
            service_code=service_code or None,
            request_id=getattr(request.state, "request_id", None),
        )
    except Problem as problem:
        if not is_form_problem(problem):
            raise
        return _again(request, principal, problem, place, tab, f"task-{task_id}", order)
    with get_database(request).read() as session:
        number = task_number(session, shipped.order_id)
    message = gettext_for(request).gettext(
        "Shipped %(number)s: label bought, tracking below.", number=number
    )
    return redirect(request, _back(place, "shipped", order), message)


@router.post("/fulfilment/tasks/{task_id}/ready")
def ready(
    request: Request,
    task_id: int,
    tab: Tab = "picking",
    order: Order = "",
    principal: Principal = require_page(Permission.ORDERS_WRITE),
) -> Response:
    """On the pickup shelf. The code is shown once, as the API answers it once (only its
    hash is kept; the customer is sent it too)."""
    place = _task_location(request, principal, task_id)
    try:
        with get_database(request).transaction() as session:
            result = fulfillment.ready_for_pickup(session, principal, task_id)
            number = task_number(session, result.task.order_id)
    except Problem as problem:
        if not is_form_problem(problem):
            raise
        return _again(request, principal, problem, place, tab, f"task-{task_id}", order)
    message = gettext_for(request).gettext(
        "%(number)s is on the pickup shelf. Pickup code: %(code)s",
        number=number,
        code=result.code,
    )
    return redirect(request, _back(place, "shelf", order), message)


@router.post("/fulfilment/tasks/{task_id}/handover")
def handover(
    request: Request,
    task_id: int,
    code: Annotated[str, Form(max_length=20)],
    tab: Tab = "shelf",
    order: Order = "",
    principal: Principal = require_page(Permission.ORDERS_WRITE),
) -> Response:
    """The customer shows their code and collects; the payment is settled."""
    place = _task_location(request, principal, task_id)
    _ = gettext_for(request).gettext
    try:
        if not (len(code.strip()) == 6 and code.strip().isdigit()):
            raise ValidationProblem.field("code", "the six digits of the pickup code")
        order_id = capture.hand_over(
            get_database(request),
            principal,
            task_id,
            code.strip(),
            request_id=getattr(request.state, "request_id", None),
        )
    except Problem as problem:
        # A wrong code is the API's 403 (pickup-code-mismatch): said beside the form here.
        if not (is_form_problem(problem) or problem.code == "pickup-code-mismatch"):
            raise
        if problem.code == "pickup-code-mismatch":
            problem = ValidationProblem(_("The pickup code does not match."))
        return _again(request, principal, problem, place, tab, f"task-{task_id}", order)
    with get_database(request).read() as session:
        number = task_number(session, order_id)
    return redirect(
        request, _back(place, "collected", order), _("Handed over %(number)s.", number=number)
    )


# --- transfers --------------------------------------------------------------------------------


@router.post("/fulfilment/transfers/{transfer_id}/ship")
def ship_transfer(
    request: Request,
    transfer_id: int,
    location: Place,
    principal: Principal = require_page(Permission.INVENTORY_WRITE),
) -> Response:
    try:
        with get_database(request).transaction() as session:
            inventory.ship_transfer(session, inventory.Context(principal), transfer_id)
    except Problem as problem:
        if not is_form_problem(problem):
            raise
        return _again(request, principal, problem, location, "transfers", f"transfer-{transfer_id}")
    message = gettext_for(request).gettext("Transfer %(id)s shipped.", id=transfer_id)
    return redirect(request, _back(location, "transfers"), message)


@router.post("/fulfilment/transfers/{transfer_id}/receive")
def receive_transfer(
    request: Request,
    transfer_id: int,
    location: Place,
    idempotency_key: Key,
    principal: Principal = require_page(Permission.INVENTORY_WRITE),
) -> Response:
    """Everything shipped arrived (the inventory API's receive without lines)."""
    try:
        with get_database(request).transaction() as session:

            def produce() -> dict[str, Any]:
                ctx = inventory.Context(principal)
                transfer, missing = inventory.receive_transfer(session, ctx, transfer_id, None)
                return {"status": transfer.status, "missing": missing}

            payload = {"transfer": transfer_id}
            once(session, principal, "transfer.receive", idempotency_key, payload, produce)
    except Problem as problem:
        if not is_form_problem(problem):
            raise
        return _again(request, principal, problem, location, "transfers", f"transfer-{transfer_id}")
    message = gettext_for(request).gettext("Transfer %(id)s received.", id=transfer_id)
    return redirect(request, _back(location, "transfers"), message)


# --- the returns desk -----------------------------------------------------------------------


@router.post("/fulfilment/returns/{return_id}/receive")
async def receive_return(
    request: Request,
    return_id: int,
    principal: Principal = require_page(Permission.ORDERS_WRITE),
) -> Response:
    """The parcel is at the desk: each line's ``condition_<line id>`` says what inspection
    found (restock here, damaged, or set aside for the vendor)."""
    form = await request.form()
    location = str(form.get("location") or "")
    if not location.isdigit():
        raise ValidationProblem.field("location", "the location receiving the return")
    inspections: list[returns.Inspection] = []
    for name, value in form.items():
        if name.startswith("condition_") and isinstance(value, str):
            line = name.removeprefix("condition_")
            if line.isdigit() and value in {c.value for c in Condition}:
                inspections.append(returns.Inspection(int(line), Condition(value), None))
    note = str(form.get("note") or "") or None
    key = str(form.get("idempotency_key") or "") or None
    return await run_in_threadpool(
        _receive_return, request, principal, return_id, int(location), inspections, note, key
    )


def _receive_return(
    request: Request,
    principal: Principal,
    return_id: int,
    location: int,
    inspections: list[returns.Inspection],
    note: str | None,
    key: str | None,
) -> Response:
    try:
        with get_database(request).transaction() as session:

            def produce() -> dict[str, Any]:
                ret = returns_flow.receive(
                    session, principal, return_id, location, inspections, note
                )
                return {"number": ret.number, "status": ret.status}

            payload = {
                "return": return_id,
                "location": location,
                "lines": [[x.return_line_id, x.condition.value] for x in inspections],
                "note": note,
            }
            done, _replayed = once(session, principal, "returns.receive", key, payload, produce)
    except Problem as problem:
        if not is_form_problem(problem):
            raise
        return _again(request, principal, problem, location, "returns", f"return-{return_id}")
    message = gettext_for(request).gettext(
        "Return %(number)s received and inspected.", number=done["number"]
    )
    return redirect(request, _back(location, "returns"), message)
