"""Return endpoints: staff (``/v1/returns``, ``/v1/return-policies``) and shoppers
(``/v1/store/returns``).

Receiving and settling a return reach other domains, so they call the returns flow
(``mercato.flows.returns``); every other endpoint calls the returns service alone.
Settling calls payment providers: that endpoint authenticates in a short read transaction
of its own and the flow opens its own transactions around each call; every other endpoint
runs in the request's one transaction.

Every step of a return, its refund included, needs ``orders:write``: a store associate who
takes a return back pays it out to the order's own tenders (or as store credit), for the
amount the inspection priced and no more. ``refunds:write`` stays what it is, the right to
refund any amount of any payment. Store roles receive, refund and close returns only at
their own locations.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session

from mercato.auth.permissions import Permission
from mercato.auth.principal import Principal
from mercato.channels.deps import ChannelCtx
from mercato.customers.deps import CustomerId
from mercato.deps import (
    DbSession,
    IdempotencyKey,
    Pagination,
    get_database,
    require,
    require_outside_transaction,
)
from mercato.errors import PROBLEM_CONTENT_TYPE, Unauthorized
from mercato.flows import returns as flow
from mercato.idempotency import Idempotent, scope_for
from mercato.payments.deps import RequestId
from mercato.returns import service
from mercato.returns.models import Return, ReturnPolicy
from mercato.returns.schemas import (
    DecisionIn,
    PolicyIn,
    PolicyOut,
    PolicyPatch,
    ReasonIn,
    ReceiveIn,
    RefundIn,
    ReturnIn,
    ReturnLineIn,
    ReturnOut,
    ReturnSummaryOut,
    StoreReturnIn,
)
from mercato.returns.state import ReturnStatus
from mercato.returns.views import return_out, shown_to
from mercato.routing import router
from mercato.schemas import PageOut

api = router("/v1", tags=["returns"])
store_api = router("/v1/store", tags=["returns"])

Reader = Annotated[Principal, Depends(require(Permission.ORDERS_READ))]
Writer = Annotated[Principal, Depends(require(Permission.ORDERS_WRITE))]
WriterNoTx = Annotated[Principal, Depends(require_outside_transaction(Permission.ORDERS_WRITE))]
Number = Annotated[str, Path(max_length=20)]


def _out(session: Session, ret: Return, reader: Principal | None = None) -> ReturnOut:
    """The return; for staff ``reader``s without customers:pii, without free text."""
    out = return_out(
        ret,
        service.return_lines(session, ret.id),
        service.timeline(session, ret.id),
        service.settlements(session, ret.id),
    )
    return shown_to(reader, out)


def _policy_out(policy: ReturnPolicy | service.EffectivePolicy) -> PolicyOut:
    return PolicyOut(
        id=policy.id,
        scope=policy.scope,
        channel_id=policy.channel_id,
        country=policy.country,
        days_allowed=policy.days_allowed,
        non_returnable_category_ids=list(policy.non_returnable_category_ids or ()),
        accept_store_returns=policy.accept_store_returns,
        restocking_fee_percent=policy.restocking_fee_percent,
        auto_approve=policy.auto_approve,
    )


def _request(lines: list[ReturnLineIn], note: str | None, method: Any) -> service.ReturnRequest:
    return service.ReturnRequest(
        lines=[
            service.LineRequest(
                x.order_line_id, x.quantity, x.reason, x.note, x.exchange_variant_id
            )
            for x in lines
        ],
        note=note,
        refund_method=method,
    )


# --- policies -----------------------------------------------------------------------------------


@api.get("/return-policies", response_model=PageOut[PolicyOut])
def list_policies(session: DbSession, principal: Reader) -> PageOut[PolicyOut]:
    return PageOut(items=[_policy_out(p) for p in service.list_policies(session)])


@api.get("/return-policies/effective", response_model=PolicyOut)
def effective_policy(
    session: DbSession,
    principal: Reader,
    channel_id: int | None = None,
    country: Annotated[str | None, Query(min_length=2, max_length=2)] = None,
) -> PolicyOut:
    """The policy that applies to orders of ``channel_id`` shipped to ``country``: the most
    specific of channel+country, channel, country and the default (id null: built in)."""
    return _policy_out(
        service.policy_for(session, channel_id, country.upper() if country else None)
    )


@api.get("/return-policies/{policy_id}", response_model=PolicyOut)
def get_policy(policy_id: int, session: DbSession, principal: Reader) -> PolicyOut:
    return _policy_out(service.get_policy(session, policy_id))


@api.post("/return-policies", response_model=PolicyOut, status_code=201)
def create_policy(body: PolicyIn, session: DbSession, principal: Writer) -> PolicyOut:
    """Rules for a channel, a country, a channel in a country, or everything (neither)."""
    return _policy_out(service.create_policy(session, principal, body))


@api.patch("/return-policies/{policy_id}", response_model=PolicyOut)
def update_policy(
    policy_id: int, body: PolicyPatch, session: DbSession, principal: Writer
) -> PolicyOut:
    return _policy_out(service.update_policy(session, principal, policy_id, body))


@api.delete("/return-policies/{policy_id}", status_code=204)
def delete_policy(policy_id: int, session: DbSession, principal: Writer) -> Response:
    service.delete_policy(session, principal, policy_id)
    return Response(status_code=204)


# --- returns (staff) ----------------------------------------------------------------------------


@api.post("/returns", response_model=ReturnOut, status_code=201)
def create_return(
    body: ReturnIn, session: DbSession, principal: Writer, key: IdempotencyKey
) -> JSONResponse:
    """A return for an order of any channel, started by an associate or support."""

    def run() -> ReturnOut:
        order = service.order_to_return(session, body.order_id, body.order_number)
        request = _request(body.lines, body.note, body.refund_method)
        return _out(
            session, service.request_return(session, principal, order, request), principal
        )

    return Idempotent(session, scope_for("returns.create", principal), key, body).run(run)


@api.get("/returns", response_model=PageOut[ReturnSummaryOut])
def search_returns(
    session: DbSession,
    page: Pagination,
    principal: Reader,
    order_id: int | None = None,
    customer_id: int | None = None,
    status: ReturnStatus | None = None,
    location_id: int | None = None,
    channel_id: int | None = None,
) -> PageOut[ReturnSummaryOut]:
    cursor, limit = page
    flt = service.ReturnFilter(
        order_id=order_id,
        customer_id=customer_id,
        status=status.value if status else None,
        location_id=location_id,
        channel_id=channel_id,
    )
    result = service.search(session, flt, cursor, limit)
    return PageOut(
        items=[ReturnSummaryOut.model_validate(r) for r in result.items],
        next_cursor=result.next_cursor,
    )


@api.get("/returns/{return_id}", response_model=ReturnOut)
def get_return(return_id: int, session: DbSession, principal: Reader) -> ReturnOut:
    """The return with its lines, its timeline and its refund attempts."""
    return _out(session, service.get_return(session, return_id), principal)


@api.post("/returns/{return_id}/approve", response_model=ReturnOut)
def approve_return(
    return_id: int, session: DbSession, principal: Writer, body: DecisionIn | None = None
) -> ReturnOut:
    reason = body.reason if body else None
    return _out(session, service.approve(session, principal, return_id, reason), principal)


@api.post("/returns/{return_id}/reject", response_model=ReturnOut)
def reject_return(
    return_id: int, body: ReasonIn, session: DbSession, principal: Writer
) -> ReturnOut:
    ret = service.reject(session, principal, return_id, body.reason)
    return _out(session, ret, principal)


@api.post("/returns/{return_id}/cancel", response_model=ReturnOut)
def cancel_return(
    return_id: int, session: DbSession, principal: Writer, body: DecisionIn | None = None
) -> ReturnOut:
    ret = service.get_return(session, return_id)
    cancelled = service.cancel(session, principal, ret, body.reason if body else None)
    return _out(session, cancelled, principal)


@api.post("/returns/{return_id}/receive", response_model=ReturnOut)
def receive_return(
    return_id: int, body: ReceiveIn, session: DbSession, principal: Writer, key: IdempotencyKey
) -> JSONResponse:
    """The units arrived at a location that takes returns (store roles: their own), with
    what inspection found per line: restocked there, damaged (received and written off) or
    set aside for the vendor."""

    def run() -> ReturnOut:
        found = [service.Inspection(x.return_line_id, x.condition, x.note) for x in body.lines]
        ret = flow.receive(session, principal, return_id, body.location_id, found, body.note)
        return _out(session, ret, principal)

    scope = scope_for(f"returns.receive.{return_id}", principal)
    return Idempotent(session, scope, key, body).run(run, status_code=200)


@api.post(
    "/returns/{return_id}/refund",
    response_model=ReturnOut,
    responses={
        202: {"description": "The refund is with the payment provider: call again later"},
        402: {"description": "The provider refused the refund or the price difference"},
    },
)
def refund_return(
    return_id: int,
    request: Request,
    principal: WriterNoTx,
    key: IdempotencyKey,
    request_id: RequestId,
    body: RefundIn | None = None,
) -> JSONResponse:
    """Pay an inspected return out: to the original payments (split over the order's
    tenders) or as store credit; with an exchange, place the replacement order first and
    charge or refund the price difference. Calling it again resumes an interrupted refund."""
    body = body or RefundIn()
    outcome = flow.settle(
        get_database(request),
        principal,
        return_id,
        service.SettleRequest(
            method=body.method,
            tenders=[t.to_request() for t in body.payments],
            exchange=body.exchange,
        ),
        key=key,
        payload=body.model_dump(mode="json"),
        request_id=request_id,
    )
    if outcome.status_code >= 400:
        return JSONResponse(
            outcome.body, status_code=outcome.status_code, media_type=PROBLEM_CONTENT_TYPE
        )
    shown = shown_to(principal, ReturnOut.model_validate(outcome.body))
    return JSONResponse(shown.model_dump(mode="json"), status_code=outcome.status_code)


@api.post("/returns/{return_id}/close", response_model=ReturnOut)
def close_return(
    return_id: int, body: ReasonIn, session: DbSession, principal: Writer
) -> ReturnOut:
    """End an inspected return without paying (more) out."""
    return _out(session, service.close(session, principal, return_id, body.reason), principal)


# --- returns (shoppers) -------------------------------------------------------------------------


def signed_in(customer_id: CustomerId) -> int:
    if customer_id is None:
        raise Unauthorized("sign in to return an order", code="customer-required")
    return customer_id


Customer = Annotated[int, Depends(signed_in)]


def _shopper(channel_id: int, customer_id: int, label: str) -> Principal:
    return Principal(
        kind="customer",
        id=customer_id,
        label=label,
        channel_id=channel_id,
        customer_id=customer_id,
    )


@store_api.post("/returns", response_model=ReturnOut, status_code=201)
def store_create_return(
    body: StoreReturnIn,
    session: DbSession,
    channel: ChannelCtx,
    customer_id: Customer,
    key: IdempotencyKey,
) -> JSONResponse:
    """Return units of one of your orders, bought in any channel."""
    actor = _shopper(channel.id, customer_id, channel.code)

    def run() -> ReturnOut:
        order = service.order_for_customer(session, customer_id, body.order_number)
        request = _request(body.lines, body.note, body.refund_method)
        ret = service.request_return(session, actor, order, request, origin_channel_id=channel.id)
        return _out(session, ret)

    return Idempotent(session, scope_for("returns.create", actor), key, body).run(run)


@store_api.get("/returns", response_model=PageOut[ReturnSummaryOut])
def store_list_returns(
    session: DbSession, page: Pagination, channel: ChannelCtx, customer_id: Customer
) -> PageOut[ReturnSummaryOut]:
    cursor, limit = page
    result = service.search(session, service.ReturnFilter(customer_id=customer_id), cursor, limit)
    return PageOut(
        items=[ReturnSummaryOut.model_validate(r) for r in result.items],
        next_cursor=result.next_cursor,
    )


@store_api.get("/returns/{number}", response_model=ReturnOut)
def store_get_return(
    number: Number, session: DbSession, channel: ChannelCtx, customer_id: Customer
) -> ReturnOut:
    return _out(session, service.customer_return(session, customer_id, number))


@store_api.post("/returns/{number}/cancel", response_model=ReturnOut)
def store_cancel_return(
    number: Number,
    session: DbSession,
    channel: ChannelCtx,
    customer_id: Customer,
    key: IdempotencyKey,
) -> JSONResponse:
    """Withdraw your return while nothing has been received."""
    ret = service.customer_return(session, customer_id, number)
    actor = _shopper(channel.id, customer_id, channel.code)

    def run() -> ReturnOut:
        return _out(session, service.cancel(session, actor, ret, "cancelled by the customer"))

    scope = scope_for(f"returns.cancel.{number}", actor)
    return Idempotent(session, scope, key, {"number": number}).run(run, 200)
