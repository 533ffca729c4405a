"""Checkout endpoints: they open their own short transactions (none spans a payment call)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Header, Path, Query, Request
from fastapi.responses import JSONResponse

from mercato.channels.deps import StandaloneChannelCtx
from mercato.checkout.schemas import CheckoutIn
from mercato.customers.deps import StandaloneCustomerId
from mercato.deps import IdempotencyKey, get_database
from mercato.errors import PROBLEM_CONTENT_TYPE
from mercato.flows import checkout as flow
from mercato.idempotency import run_repeatable, shopper_scope
from mercato.routing import router
from mercato.storefront.api import resolve_locale

api = router("/v1/store", tags=["checkout"])


def _response(outcome: flow.Outcome) -> JSONResponse:
    media = PROBLEM_CONTENT_TYPE if outcome.status_code >= 400 else "application/json"
    headers = {"Idempotent-Replayed": "true"} if outcome.replayed else None
    return JSONResponse(
        outcome.body, status_code=outcome.status_code, media_type=media, headers=headers
    )


@api.post(
    "/carts/{token}/checkout",
    status_code=201,
    responses={
        201: {"description": "Paid: the order"},
        202: {"description": "The payment needs the shopper (3-D Secure): follow action_url"},
        402: {
            "description": "Declined: provider_code says why (docs/commerce.md); holds and "
            "codes released, the cart is open again"
        },
    },
)
def checkout(
    request: Request,
    token: Annotated[str, Path(max_length=80)],
    body: CheckoutIn,
    channel: StandaloneChannelCtx,
    customer_id: StandaloneCustomerId,
    key: IdempotencyKey,
    locale: Annotated[str | None, Query(max_length=20)] = None,
    accept_language: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> JSONResponse:
    """Hold stock, reserve codes, take payment and create the order, all or nothing.

    Send an ``Idempotency-Key``: a retry with the same key returns the same order and never
    charges twice, even if the first attempt was cut off half-way.
    """
    outcome = flow.checkout(
        get_database(request),
        cart_token=token,
        channel=channel,
        customer_id=customer_id,
        locale=resolve_locale(channel, locale, accept_language),
        request=flow.CheckoutRequest(
            tenders=[t.to_request() for t in body.payments],
            email=body.email,
            note=body.note,
        ),
        key=key,
        payload=_payload(token, body),
        request_id=getattr(request.state, "request_id", None),
    )
    return _response(outcome)


def _payload(token: str, body: CheckoutIn) -> dict[str, Any]:
    return {"cart": token, **body.model_dump(mode="json")}


@api.post("/orders/{number}/complete")
def complete(
    request: Request,
    number: Annotated[str, Path(max_length=20)],
    channel: StandaloneChannelCtx,
    customer_id: StandaloneCustomerId,
    key: IdempotencyKey,
) -> JSONResponse:
    """After the shopper finished 3-D Secure: place the order if the payment went through.

    Safe to repeat (a placed order answers as it is); with an ``Idempotency-Key`` a retry
    gets the first answer.
    """
    database = get_database(request)

    def run() -> tuple[int, Any]:
        outcome = flow.finish_after_action(database, number, channel, customer_id)
        return outcome.status_code, outcome.body

    scope = shopper_scope(f"checkout.complete:{number}", channel.id, customer_id)
    return run_repeatable(database, scope, key, {"number": number}, run)
