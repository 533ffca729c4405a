"""Checkout: cart -> stock holds, codes, payment -> order, without a transaction open across
the payment provider call.

1. **Hold and commit** (one transaction): claim the Idempotency-Key and the cart, compute
   the cart, run the fraud hook, create the order (``pending_payment``), hold stock (lines
   of one variant summed first), reserve promotion redemptions, record the payments
   (gift cards and store credit are spent here, atomically). Any failure rolls all of it
   back.
2. **Pay** (no transaction): ask the payment providers to authorise.
3. **Confirm and commit** (one transaction): record the answers; if paid, the order is
   placed, its holds become allocations, the codes are final, the cart is completed; if
   declined, holds and codes are released and the cart reopens for another attempt.
4. **Compensate** (no transaction): void whatever was authorised of a failed checkout.

A crash between the steps leaves an order ``pending_payment`` whose holds expire by
themselves; retrying the request with the same Idempotency-Key resumes at step 2 (the
provider calls carry per-payment idempotency keys, so nothing is charged twice).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from fastapi.encoders import jsonable_encoder
from sqlalchemy.orm import Session

from mercato import idempotency
from mercato.auth.principal import Principal
from mercato.carts import service as carts
from mercato.channels.context import ChannelContext
from mercato.checkout.fraud import FraudDecision, OrderScreening, fraud_check
from mercato.db import Database
from mercato.errors import Forbidden, Problem, UnprocessableState
from mercato.inventory import service as inventory
from mercato.orders import service as orders
from mercato.orders.models import Order
from mercato.orders.state import OrderStatus
from mercato.orders.views import order_json
from mercato.payments import service as payments
from mercato.payments.models import PaymentStatus
from mercato.promotions import service as promotions

HOLD_TTL = timedelta(minutes=15)
PAID = frozenset({PaymentStatus.AUTHORIZED.value, PaymentStatus.CAPTURED.value,
                  PaymentStatus.PARTIALLY_CAPTURED.value})
WAITING = frozenset({PaymentStatus.REQUIRES_ACTION.value, PaymentStatus.PENDING.value})


@dataclass(frozen=True)
class CheckoutRequest:
    tenders: Sequence[payments.TenderRequest]
    email: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class Outcome:
    """What the endpoint answers: HTTP status and body (stored for Idempotency-Key replays)."""

    status_code: int
    body: dict[str, Any]


@dataclass(frozen=True)
class _Started:
    order_id: int
    payment_ids: list[int]
    reservation_ids: list[int]
    fraud: str


def _scope(cart_token: str) -> str:
    return f"checkout:{cart_token}"[:120]


def checkout(
    database: Database,
    *,
    cart_token: str,
    channel: ChannelContext,
    customer_id: int | None,
    locale: str,
    request: CheckoutRequest,
    key: str | None,
    payload: Any,
    request_id: str | None = None,
) -> Outcome:
    actor = Principal(kind="customer" if customer_id else "channel", id=customer_id,
                      label=channel.code, channel_id=channel.id, customer_id=customer_id)
    fingerprint = idempotency.request_fingerprint(payload)
    if key is not None:
        replay = _replay_or_resume(database, _scope(cart_token), key, fingerprint, channel, actor)
        if replay is not None:
            return replay
    started = _hold_and_commit(database, cart_token, channel, customer_id, locale, request,
                               actor, key, fingerprint, request_id)
    return _pay_and_confirm(database, started, channel, actor, key, cart_token, request_id)


def _replay_or_resume(
    database: Database, scope: str, key: str, fingerprint: str, channel: ChannelContext,
    actor: Principal,
) -> Outcome | None:
    with database.read() as session:
        try:
            record = idempotency.lookup(session, scope, key, fingerprint)
        except Problem as exc:
            if exc.code != "idempotency-key-in-use":
                raise
            record = _in_progress(session, scope, key)
        if record is None:
            return None
        if record.status_code != idempotency.IN_PROGRESS:
            return Outcome(record.status_code, dict(record.response or {}))
        pending = dict(record.response or {})
    if "order_id" not in pending:
        raise UnprocessableState("this checkout is starting; retry in a moment",
                                 code="idempotency-key-in-use")
    started = _Started(pending["order_id"], list(pending["payment_ids"]),
                       list(pending["reservation_ids"]), pending["fraud"])
    return _pay_and_confirm(database, started, channel, actor, key, pending["cart_token"], None)


def _in_progress(session: Session, scope: str, key: str) -> idempotency.IdempotencyRecord | None:
    from sqlalchemy import select

    return session.scalar(select(idempotency.IdempotencyRecord).where(
        idempotency.IdempotencyRecord.scope == scope, idempotency.IdempotencyRecord.key == key))


def _hold_and_commit(
    database: Database, cart_token: str, channel: ChannelContext, customer_id: int | None,
    locale: str, request: CheckoutRequest, actor: Principal, key: str | None, fingerprint: str,
    request_id: str | None,
) -> _Started:
    with database.transaction() as session:
        session.info["request_id"] = request_id
        record = (idempotency.claim(session, _scope(cart_token), key, fingerprint)
                  if key is not None else None)
        cart = carts.get_cart(session, cart_token, customer_id)
        if request.email:
            cart.email = request.email.lower()
        carts.claim_for_checkout(session, cart)
        computed = carts.compute(session, cart, channel, locale)
        if not computed.can_checkout:
            raise carts.view_problem(computed)
        if customer_id is None and not cart.email:
            raise carts.ValidationProblem.field("body.email", "a guest checkout needs an email")
        decision = fraud_check().screen(_screening(computed, customer_id))
        if decision.action == "deny":
            raise Forbidden("this order cannot be accepted", code="checkout-refused",
                            extra={"reasons": list(decision.reasons)})
        order = orders.create_order(session, actor, _draft(computed, cart, channel, locale,
                                                           customer_id, request))
        order.fraud = {"action": decision.action, "score": decision.score,
                       "reasons": list(decision.reasons)}
        ctx = inventory.Context(actor, channel.id, "order", order.number)
        held = inventory.hold(session, ctx, _hold_lines(computed),
                              candidate_locations=channel.location_order, ttl=HOLD_TTL)
        if computed.promotion_result is not None and computed.promotion_result.applied:
            promotions.reserve_redemptions(session, computed.promotion_result,
                                           reference=order.number, customer_id=customer_id,
                                           currency=computed.currency)
        paid = payments.create_payments(
            session, reference=order.number, customer_id=customer_id, channel_id=channel.id,
            currency=computed.currency, total=computed.grand_total, tenders=request.tenders,
        )
        started = _Started(order.id, [p.id for p in paid], [r.id for r in held],
                           decision.action)
        if record is not None:
            # Enough to resume at step 2 if this process dies before step 3.
            record.response = {"order_id": order.id, "payment_ids": started.payment_ids,
                               "reservation_ids": started.reservation_ids,
                               "fraud": decision.action, "cart_token": cart_token}
        return started


def _screening(computed: carts.CartComputation, customer_id: int | None) -> OrderScreening:
    address = computed.cart.shipping_address or {}
    return OrderScreening(
        channel_id=computed.channel.id, customer_id=customer_id, email=computed.cart.email,
        currency=computed.currency, grand_total=computed.grand_total,
        ship_country=address.get("country"), line_count=len(computed.lines),
        units=sum(x.line.quantity for x in computed.lines),
    )


def _hold_lines(computed: carts.CartComputation) -> list[inventory.HoldLine]:
    """Inventory sums lines of one variant (per pickup store) before holding anything."""
    return [inventory.HoldLine(x.line.variant_id, x.line.quantity, x.line.pickup_location_id)
            for x in computed.lines]


def _draft(
    computed: carts.CartComputation, cart: Any, channel: ChannelContext, locale: str,
    customer_id: int | None, request: CheckoutRequest,
) -> orders.OrderDraft:
    option = computed.shipping_option
    return orders.OrderDraft(
        channel_id=channel.id, currency=computed.currency, source="checkout",
        lines=[
            orders.LineDraft(
                variant_id=x.line.variant_id, sku=x.sku, name=x.name, tax_class=x.tax_class,
                quantity=x.line.quantity, unit_price=x.unit_price or Decimal(0),
                subtotal=x.subtotal, discount=x.discount, tax=x.tax, tax_rate=x.tax_rate,
                total=x.total, delivery_mode=x.line.delivery_mode,
                pickup_location_id=x.line.pickup_location_id,
            )
            for x in computed.lines
        ],
        subtotal=computed.subtotal, discount_total=computed.discount_total,
        shipping_total=computed.shipping_total, tax_total=computed.tax_total,
        grand_total=computed.grand_total, tax_included=computed.tax_included,
        customer_id=customer_id, cart_id=cart.id, price_list=cart.price_list, locale=locale,
        email=cart.email, shipping_address=cart.shipping_address,
        billing_address=cart.billing_address or cart.shipping_address,
        shipping_option=None if option is None else {
            "option_id": option.option_id, "carrier": option.carrier,
            "service": option.service, "name": option.name, "amount": str(option.amount),
            "discount": str(computed.shipping_discount),
        },
        tax_breakdown=[{k: str(v) if isinstance(v, Decimal) else v for k, v in t.items()}
                       for t in computed.taxes],
        promotions=[
            {"promotion_id": p.promotion_id, "name": p.name, "code": p.code,
             "kind": p.kind.value, "amount": str(p.amount)}
            for p in computed.promotions
        ],
    )


def _pay_and_confirm(
    database: Database, started: _Started, channel: ChannelContext, actor: Principal,
    key: str | None, cart_token: str, request_id: str | None,
) -> Outcome:
    outcomes = payments.authorize_pending(database, started.payment_ids)
    to_void: list[int] = []
    with database.transaction() as session:
        session.info["request_id"] = request_id
        recorded = payments.record_outcomes(session, outcomes) if outcomes else (
            payments._fetch_payments(session, started.payment_ids))
        statuses = {p.id: p.status for p in recorded}
        order = orders.get_order(session, started.order_id)
        if order.status != OrderStatus.PENDING_PAYMENT.value:
            outcome = _answer(session, order, statuses)  # finished by a concurrent retry
        elif all(s in PAID for s in statuses.values()):
            outcome = _confirm(session, order, started, actor)
        elif any(s in WAITING for s in statuses.values()) and not any(
                s in ("declined", "failed") for s in statuses.values()):
            outcome = _answer(session, order, statuses, status_code=202)
        else:
            outcome = _decline(session, order, started, actor, statuses)
            to_void = [pid for pid, s in statuses.items() if s not in ("declined", "failed")]
        if key is not None and outcome.status_code != 202:
            _remember(session, cart_token, key, outcome)
    if to_void:
        payments.void_payments(database, to_void, request_id=request_id)
    return outcome


def _confirm(session: Session, order: Order, started: _Started, actor: Principal) -> Outcome:
    ctx = inventory.Context(actor, order.channel_id, "order", order.number)
    orders.transition(session, actor, order.id, OrderStatus.PLACED, reason="payment authorised")
    try:
        inventory.allocate(session, ctx, started.reservation_ids, "order", order.number)
    except Problem:
        # The holds expired before payment finished (a very late resume): hold again.
        inventory.release(session, ctx, started.reservation_ids)
        lines = [inventory.HoldLine(x.variant_id, x.quantity, x.pickup_location_id)
                 for x in orders.order_lines(session, order.id)]
        inventory.hold(session, ctx, lines, status=inventory.ReservationStatus.ALLOCATED)
    promotions.confirm_redemptions(session, order.number)
    if order.cart_id is not None:
        carts.finish_checkout(session, order.cart_id, order.id, completed=True)
    next_status = (OrderStatus.FRAUD_REVIEW if started.fraud == "review"
                   else OrderStatus.CONFIRMED)
    orders.transition(session, actor, order.id, next_status,
                      reason="held for fraud review" if started.fraud == "review"
                      else "paid and screened")
    return _answer(session, orders.get_order(session, order.id), {}, status_code=201)


def _decline(
    session: Session, order: Order, started: _Started, actor: Principal,
    statuses: dict[int, str],
) -> Outcome:
    ctx = inventory.Context(actor, order.channel_id, "order", order.number,
                            note="payment declined")
    inventory.release(session, ctx, started.reservation_ids)
    promotions.release_redemptions(session, order.number)
    orders.transition(session, actor, order.id, OrderStatus.PAYMENT_FAILED,
                      reason="payment declined")
    if order.cart_id is not None:
        carts.finish_checkout(session, order.cart_id, order.id, completed=False)
    problem = payments.PaymentDeclined(
        "the payment was declined; the cart is open again for another payment method",
        extra={"order_number": order.number, "payments": statuses},
    )
    return Outcome(problem.status, problem.body())


def _answer(
    session: Session, order: Order, statuses: dict[int, str], status_code: int = 201
) -> Outcome:
    if order.status == OrderStatus.PAYMENT_FAILED.value:
        problem = payments.PaymentDeclined("the payment was declined",
                                           extra={"order_number": order.number})
        return Outcome(problem.status, problem.body())
    body = order_body(session, order)
    if status_code == 202:
        body["payments"] = _payment_actions(session, order.number)
    return Outcome(status_code, body)


def _payment_actions(session: Session, reference: str) -> list[dict[str, Any]]:
    return [
        {"payment_id": p.id, "method": p.method, "status": p.status,
         "amount": str(p.amount) if hasattr(p, "amount") else None,
         "action_url": getattr(p, "action_url", None),
         "client_secret": getattr(p, "client_secret", None)}
        for p in payments.payments_for_reference(session, reference)
    ]


def _remember(session: Session, cart_token: str, key: str, outcome: Outcome) -> None:
    from sqlalchemy import update

    session.execute(
        update(idempotency.IdempotencyRecord)
        .where(idempotency.IdempotencyRecord.scope == _scope(cart_token),
               idempotency.IdempotencyRecord.key == key)
        .values(status_code=outcome.status_code, response=jsonable_encoder(outcome.body))
    )


def order_body(session: Session, order: Order) -> dict[str, Any]:
    return order_json(session, order)


def finish_after_action(
    database: Database, order_number: str, channel: ChannelContext, customer_id: int | None,
) -> Outcome:
    """After 3-D Secure: the shopper's payment is complete; place the order (idempotent)."""
    with database.read() as session:
        order = orders.get_by_number(session, order_number)
        if order.channel_id != channel.id or (order.customer_id is not None
                                              and order.customer_id != customer_id):
            raise orders.NotFound(f"order {order_number} not found")
        started = _Started(
            order.id,
            [p.id for p in payments.payments_for_reference(session, order_number)],
            [r.id for r in inventory.reservations_for(session, "order", order_number)],
            (order.fraud or {}).get("action", "allow"),
        )
    actor = Principal(kind="customer" if customer_id else "channel", id=customer_id,
                      label=channel.code, channel_id=channel.id, customer_id=customer_id)
    return _pay_and_confirm(database, started, channel, actor, None, "", None)


__all__ = ["CheckoutRequest", "FraudDecision", "Outcome", "checkout", "finish_after_action"]
