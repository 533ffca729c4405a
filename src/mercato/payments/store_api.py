"""Shopper-facing payment endpoints (``X-Channel-Key``): card tokens for the test gateway,
gift card balance, completing a 3-D Secure action."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.responses import JSONResponse

from mercato.channels.deps import ChannelCtx
from mercato.db import Database
from mercato.deps import DbSession, IdempotencyKey, get_database
from mercato.errors import ValidationProblem
from mercato.idempotency import run_repeatable, secret_fingerprint, shopper_scope
from mercato.payments import service
from mercato.payments.deps import ChannelNoTx
from mercato.payments.providers import CardError, SimulatedGateway
from mercato.payments.schemas import (
    CardTokenIn,
    CardTokenOut,
    CompleteActionIn,
    GiftCardBalanceIn,
    GiftCardBalanceOut,
    StorePaymentOut,
)
from mercato.routing import router

api = router("/v1/store", tags=["storefront payments"])

DatabaseDep = Annotated[Database, Depends(get_database)]


@api.post("/payments/test-gateway/tokens", response_model=CardTokenOut, status_code=201)
def create_card_token(
    body: CardTokenIn, channel: ChannelNoTx, database: DatabaseDep, key: IdempotencyKey
) -> JSONResponse:
    """Turn a test card into an opaque token (``tok_...``) for a ``test_gateway`` tender.

    Stands for the tokenisation a real gateway does in the shopper's browser: the card
    number goes to the gateway only, never into Mercato's tables or logs. Test numbers:
    4242424242424242 (authorised), 4000000000000002 (declined), 4000000000009995
    (insufficient funds), 4000000000003220 (3-D Secure required). With an
    ``Idempotency-Key`` a retry gets the same token.
    """

    def run() -> tuple[int, CardTokenOut]:
        try:
            token = SimulatedGateway(database).tokenize(
                body.number, body.exp_month, body.exp_year, body.cvc
            )
        except CardError as exc:
            raise ValidationProblem.field(f"body.{exc.field}", exc.reason) from None
        return 201, CardTokenOut(
            token=token.token,
            brand=token.brand,
            last4=token.last4,
            exp_month=token.exp_month,
            exp_year=token.exp_year,
        )

    # Card data never reaches the stored fingerprint in a form that could be tested.
    card = secret_fingerprint(f"{body.number}|{body.exp_month}|{body.exp_year}|{body.cvc}")
    scope = shopper_scope("test-gateway.token", channel.id)
    return run_repeatable(database, scope, key, {"card": card}, run)


@api.post("/gift-cards/balance", response_model=GiftCardBalanceOut)
def gift_card_balance(
    body: GiftCardBalanceIn, session: DbSession, channel: ChannelCtx
) -> GiftCardBalanceOut:
    """The balance of a gift card. Unknown, disabled and expired codes get the same
    answer (422 ``gift-card-not-usable``), so it says nothing about which codes exist."""
    card = service.find_usable_gift_card(session, body.code, "body.code")
    return GiftCardBalanceOut(
        usable=True,
        currency=card.currency,
        balance=card.balance,
        last4=card.last4,
        expires_at=card.expires_at,
    )


@api.post("/payments/{payment_id}/complete-action", response_model=StorePaymentOut)
def complete_action(
    payment_id: int,
    body: CompleteActionIn,
    channel: ChannelNoTx,
    database: DatabaseDep,
    key: IdempotencyKey,
) -> JSONResponse:
    """After the shopper's 3-D Secure step: ask the provider and record the result.

    Needs the payment's ``client_secret`` (given to the checkout that created it). Safe to
    repeat; with an ``Idempotency-Key`` a retry gets the first answer.
    """

    def run() -> tuple[int, StorePaymentOut]:
        payment = service.complete_action(
            database,
            payment_id,
            channel_id=channel.id,
            client_secret=body.client_secret,
            data={"outcome": body.outcome},
        )
        return 200, StorePaymentOut.model_validate(payment)

    secret = secret_fingerprint(body.client_secret)
    payload = {**body.model_dump(mode="json"), "client_secret": secret}
    scope = shopper_scope(f"payment.action:{payment_id}", channel.id)
    return run_repeatable(database, scope, key, payload, run)
