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

A checkout cut off after step 1 (a crash, or a shopper who never finishes 3-D Secure)
leaves an order ``pending_payment`` with more than its stock holds: the cart stays
``checking_out``, gift card and store credit amounts stay spent, code redemptions stay
reserved and a card authorisation may stay open. Retrying the request with the same
Idempotency-Key resumes at step 2 (the provider calls carry per-payment idempotency keys,
so nothing is charged twice), and ``/complete`` finishes a 3-D Secure payment. When
neither comes within ``MERCATO_CHECKOUT_TIMEOUT_SECONDS``, :func:`abandon_stale_checkouts`
(a periodic job, and ``mercato checkout abandon-stale``) compensates the checkout exactly
like a declined payment and records it as abandoned.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from mercato import idempotency
from mercato.auth.principal import Principal
from mercato.carts import service as carts
from mercato.channels.context import ChannelContext
from mercato.checkout import event_types as checkout_events
from mercato.checkout.fraud import FraudDecision, OrderScreening, fraud_check
from mercato.db import Database, utcnow
from mercato.errors import Forbidden, NotFound, Problem, UnprocessableState, ValidationProblem
from mercato.events import publish
from mercato.inventory import service as inventory
from mercato.money import from_minor
from mercato.orders import service as orders
from mercato.orders.models import Order, OrderLine
from mercato.orders.state import OrderStatus
from mercato.orders.views import order_json
from mercato.payments import service as payments
from mercato.payments.models import Payment, PaymentStatus
from mercato.promotions import service as promotions
from mercato.settings import get_settings

log = logging.getLogger(__name__)

HOLD_TTL = timedelta(minutes=15)
PAID = frozenset(
    {
        PaymentStatus.AUTHORIZED.value,
        PaymentStatus.CAPTURED.value,
        PaymentStatus.PARTIALLY_CAPTURED.value,
    }
)
WAITING = frozenset({PaymentStatus.REQUIRES_ACTION.value, PaymentStatus.PENDING.value})
NOT_TAKEN = frozenset({PaymentStatus.DECLINED.value, PaymentStatus.FAILED.value})
ABANDONED = "checkout abandoned"


class CheckoutAbandoned(UnprocessableState):
    code = "checkout-abandoned"


@dataclass(frozen=True)
class CheckoutRequest:
    tenders: Sequence[payments.TenderRequest]
    email: str | None = None
    note: str | None = None
    # A staff member checking out for a customer (call centre, endless aisle at the POS).
    actor: Principal | None = None
    source: str = "checkout"


@dataclass(frozen=True)
class Outcome:
    """What the endpoint answers: HTTP status and body (stored for Idempotency-Key replays)."""

    status_code: int
    body: dict[str, Any]
    # The stored answer of an earlier attempt with the same Idempotency-Key.
    replayed: bool = False


@dataclass(frozen=True)
class _Started:
    order_id: int
    number: str
    payment_ids: list[int]
    reservation_ids: list[int]
    fraud: str
    redemptions: bool
    # What step 1 wrote, kept so step 2 and 3 need not read it again (None when resuming).
    lines: list[OrderLine] | None = None
    payments: list[Payment] | None = None


class _KeyTaken(Exception):
    """The Idempotency-Key was claimed before: replay its answer or resume its checkout."""


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
    actor = request.actor or carts.shopper(channel, customer_id)
    fingerprint = idempotency.request_fingerprint(payload)
    try:
        started = _hold_and_commit(
            database,
            cart_token,
            channel,
            customer_id,
            locale,
            request,
            actor,
            key,
            fingerprint,
            request_id,
        )
    except _KeyTaken:
        assert key is not None
        return _replay_or_resume(database, cart_token, key, fingerprint, channel, actor)
    return _pay_and_confirm(database, started, channel, actor, key, cart_token, request_id)


def _replay_or_resume(
    database: Database,
    cart_token: str,
    key: str,
    fingerprint: str,
    channel: ChannelContext,
    actor: Principal,
) -> Outcome:
    """The stored answer, or (first attempt cut off after step 1) finish that checkout."""
    with database.read() as session:
        record = idempotency.record_for(session, _scope(cart_token), key)
        if record is None:  # claimed by a transaction that then rolled back: start afresh
            raise UnprocessableState("retry this request", code="idempotency-key-in-use")
        if record.request_hash != fingerprint:
            raise ValidationProblem(
                "this Idempotency-Key was used with a different request body",
                code="idempotency-key-reused",
            )
        if record.status_code != idempotency.IN_PROGRESS:
            return Outcome(record.status_code, dict(record.response or {}), replayed=True)
        started = _pending(session, cart_token)
    if started is None:
        raise UnprocessableState(
            "this checkout is in progress; retry in a moment", code="idempotency-key-in-use"
        )
    return _pay_and_confirm(database, started, channel, actor, key, cart_token, None)


def _pending(session: Session, cart_token: str) -> _Started | None:
    order = carts.pending_order_of(session, cart_token)
    if order is None:
        return None
    return _started_from(session, order)


def _started_from(session: Session, order: Order) -> _Started:
    return _Started(
        order.id,
        order.number,
        [p.id for p in payments.payments_for_reference(session, order.number)],
        [r.id for r in inventory.reservations_for(session, "order", order.number)],
        (order.fraud or {}).get("action", "allow"),
        bool(order.promotions),
    )


def _hold_and_commit(
    database: Database,
    cart_token: str,
    channel: ChannelContext,
    customer_id: int | None,
    locale: str,
    request: CheckoutRequest,
    actor: Principal,
    key: str | None,
    fingerprint: str,
    request_id: str | None,
) -> _Started:
    with database.transaction() as session:
        session.info["request_id"] = request_id
        if key is not None and not idempotency.try_claim(
            session, _scope(cart_token), key, fingerprint
        ):
            raise _KeyTaken
        cart = carts.claim_by_token(session, cart_token, customer_id, email=request.email)
        computed = carts.compute(session, cart, channel, locale, check_stock=False)
        if not computed.can_checkout:
            raise carts.view_problem(computed)
        if customer_id is None and not cart.email:
            raise ValidationProblem.field("body.email", "a guest checkout needs an email")
        decision = fraud_check().screen(_screening(computed, customer_id))
        if decision.action == "deny":
            raise Forbidden(
                "this order cannot be accepted",
                code="checkout-refused",
                extra={"reasons": list(decision.reasons)},
            )
        order, order_lines = orders.create_order_with_lines(
            session, actor, _draft(computed, cart, channel, locale, customer_id, request, decision)
        )
        ctx = inventory.Context(actor, channel.id, "order", order.number)
        # The shopper's own cart hold becomes the order's: let it go in this transaction,
        # so the units are free for the holds just below and for no one else.
        carts.release_stock(session, cart, actor)
        held = inventory.hold(
            session,
            ctx,
            _hold_lines(computed),
            candidate_locations=channel.location_order,
            ttl=HOLD_TTL,
        )
        redeemed = computed.promotion_result is not None and bool(computed.promotion_result.applied)
        if redeemed:
            assert computed.promotion_result is not None
            promotions.reserve_redemptions(
                session,
                computed.promotion_result,
                reference=order.number,
                customer_id=customer_id,
                currency=computed.currency,
                new_reference=True,
            )
        paid = payments.create_payments(
            session,
            reference=order.number,
            customer_id=customer_id,
            channel_id=channel.id,
            currency=computed.currency,
            total=computed.grand_total,
            tenders=request.tenders,
            channel_type=channel.type,
            order_id=order.id,
        )
        return _Started(
            order.id,
            order.number,
            [p.id for p in paid],
            [r.id for r in held],
            decision.action,
            redeemed,
            order_lines,
            paid,
        )


def _screening(computed: carts.CartComputation, customer_id: int | None) -> OrderScreening:
    address = computed.cart.shipping_address or {}
    return OrderScreening(
        channel_id=computed.channel.id,
        customer_id=customer_id,
        email=computed.cart.email,
        currency=computed.currency,
        grand_total=computed.grand_total,
        ship_country=address.get("country"),
        line_count=len(computed.lines),
        units=sum(x.line.quantity for x in computed.lines),
    )


def _hold_lines(computed: carts.CartComputation) -> list[inventory.HoldLine]:
    """Inventory sums lines of one variant (per pickup store) before holding anything."""
    return [
        inventory.HoldLine(x.line.variant_id, x.line.quantity, x.line.pickup_location_id)
        for x in computed.lines
    ]


def _draft(
    computed: carts.CartComputation,
    cart: Any,
    channel: ChannelContext,
    locale: str,
    customer_id: int | None,
    request: CheckoutRequest,
    decision: FraudDecision,
) -> orders.OrderDraft:
    option = computed.shipping_option
    return orders.OrderDraft(
        channel_id=channel.id,
        currency=computed.currency,
        source=request.source,
        lines=[
            orders.LineDraft(
                variant_id=x.line.variant_id,
                sku=x.sku,
                name=x.name,
                tax_class=x.tax_class,
                quantity=x.line.quantity,
                unit_price=x.unit_price or Decimal(0),
                subtotal=x.subtotal,
                discount=x.discount,
                tax=x.tax,
                tax_rate=x.tax_rate,
                total=x.total,
                delivery_mode=x.line.delivery_mode,
                pickup_location_id=x.line.pickup_location_id,
            )
            for x in computed.lines
        ],
        subtotal=computed.subtotal,
        discount_total=computed.discount_total,
        shipping_total=computed.shipping_total,
        tax_total=computed.tax_total,
        grand_total=computed.grand_total,
        tax_included=computed.tax_included,
        customer_id=customer_id,
        cart_id=cart.id,
        price_list=cart.price_list,
        locale=locale,
        email=cart.email,
        shipping_address=cart.shipping_address,
        billing_address=cart.billing_address or cart.shipping_address,
        shipping_option=None
        if option is None
        else {
            "option_id": option.option_id,
            "carrier": option.carrier,
            "service": option.service,
            "name": option.name,
            "amount": str(option.amount),
            "discount": str(computed.shipping_discount),
            "origin_country": option.origin_country,
            "min_days": option.min_days,
            "max_days": option.max_days,
        },
        import_charges=None
        if computed.import_charges is None
        else computed.import_charges.as_json(),
        tax_breakdown=[
            {k: str(v) if isinstance(v, Decimal) else v for k, v in t.items()}
            for t in computed.taxes
        ],
        promotions=[
            {
                "promotion_id": p.promotion_id,
                "name": p.name,
                "code": p.code,
                "kind": p.kind.value,
                "amount": str(p.amount),
            }
            for p in computed.promotions
        ],
        fraud={
            "action": decision.action,
            "score": decision.score,
            "reasons": list(decision.reasons),
        },
        note=request.note,
        store_location_id=channel.store_location_id,
    )


def _pay_and_confirm(
    database: Database,
    started: _Started,
    channel: ChannelContext,
    actor: Principal,
    key: str | None,
    cart_token: str,
    request_id: str | None,
) -> Outcome:
    outcomes = payments.authorize_pending(database, started.payment_ids, known=started.payments)
    to_void: list[int] = []
    with database.transaction() as session:
        session.info["request_id"] = request_id
        recorded = payments.record_outcomes(session, outcomes) if outcomes else []
        if len(recorded) < len(started.payment_ids):  # balance tenders had no provider call
            recorded = payments.get_payments(session, started.payment_ids)
        statuses = {p.id: p.status for p in recorded}
        if all(s in PAID for s in statuses.values()):
            outcome = _confirm(session, started, actor)
        elif any(s in WAITING for s in statuses.values()) and not any(
            s in ("declined", "failed") for s in statuses.values()
        ):
            outcome = _answer(session, orders.get_order(session, started.order_id), status_code=202)
        else:
            outcome = _decline(session, started, actor, recorded)
            to_void = [pid for pid, s in statuses.items() if s not in ("declined", "failed")]
        if key is not None and outcome.status_code != 202:
            idempotency.finish(session, _scope(cart_token), key, outcome.status_code, outcome.body)
    if to_void:
        payments.void_payments(database, to_void, request_id=request_id)
    return outcome


def _confirm(session: Session, started: _Started, actor: Principal) -> Outcome:
    review = started.fraud == "review"
    try:
        order = orders.advance(
            session,
            actor,
            started.order_id,
            OrderStatus.PENDING_PAYMENT,
            [
                (OrderStatus.PLACED, "payment authorised"),
                (OrderStatus.FRAUD_REVIEW, "held for fraud review")
                if review
                else (OrderStatus.CONFIRMED, "paid and screened"),
            ],
        )
    except Problem:
        # Finished already by a concurrent retry of the same checkout: answer with it.
        return _answer(session, orders.get_order(session, started.order_id))
    ctx = inventory.Context(actor, order.channel_id, "order", order.number)
    try:
        inventory.allocate(session, ctx, started.reservation_ids, "order", order.number)
    except Problem:
        # The holds expired before payment finished (a very late resume): hold again.
        inventory.release(session, ctx, started.reservation_ids)
        lines = [
            inventory.HoldLine(x.variant_id, x.quantity, x.pickup_location_id)
            for x in orders.order_lines(session, order.id)
        ]
        inventory.hold(session, ctx, lines, status=inventory.ReservationStatus.ALLOCATED)
    if started.redemptions:
        promotions.confirm_redemptions(session, order.number)
    if order.cart_id is not None:
        carts.finish_checkout(session, order.cart_id, order.id, completed=True)
    return _answer(session, order, status_code=201, lines=started.lines)


def _decline(
    session: Session,
    started: _Started,
    actor: Principal,
    recorded: Sequence[Payment],
) -> Outcome:
    try:
        order = orders.advance(
            session,
            actor,
            started.order_id,
            OrderStatus.PENDING_PAYMENT,
            [(OrderStatus.PAYMENT_FAILED, "payment declined")],
        )
    except Problem:
        return _answer(session, orders.get_order(session, started.order_id))
    ctx = inventory.Context(actor, order.channel_id, "order", order.number, note="payment declined")
    inventory.release(session, ctx, started.reservation_ids)
    if started.redemptions:
        promotions.release_redemptions(session, order.number)
    if order.cart_id is not None:
        carts.finish_checkout(session, order.cart_id, order.id, completed=False)
    return _declined_outcome(
        order.number, recorded, "the cart is open again for another payment method"
    )


def _declined_outcome(number: str, tenders: Sequence[Payment], then: str) -> Outcome:
    """The 402 of a declined checkout, with the providers' reason codes."""
    why = payments.decline_details(tenders)
    code = f" ({why['provider_code']})" if why["provider_code"] else ""
    problem = payments.PaymentDeclined(
        f"the payment was declined{code}; {then}",
        extra={"order_number": number, "payments": {p.id: p.status for p in tenders}, **why},
    )
    return Outcome(problem.status, problem.body())


def _answer(
    session: Session,
    order: Order,
    status_code: int = 201,
    lines: Sequence[OrderLine] | None = None,
) -> Outcome:
    if order.status == OrderStatus.PAYMENT_FAILED.value:
        if _was_abandoned(session, order):
            return _abandoned_outcome(order.number)
        tenders = payments.payments_for_reference(session, order.number)
        return _declined_outcome(order.number, tenders, "check out again to pay")
    body = order_json(session, order, lines)
    if status_code == 202:
        body["payments"] = _payment_actions(session, order.number)
    return Outcome(status_code, body)


def _payment_actions(session: Session, reference: str) -> list[dict[str, Any]]:
    return [
        {
            "payment_id": p.id,
            "method": p.method,
            "status": p.status,
            "amount": str(from_minor(p.amount_minor, p.currency)),
            "action_url": p.action_url,
            "client_secret": p.client_secret,
        }
        for p in payments.payments_for_reference(session, reference)
    ]


def order_body(session: Session, order: Order) -> dict[str, Any]:
    return order_json(session, order)


def finish_after_action(
    database: Database,
    order_number: str,
    channel: ChannelContext,
    customer_id: int | None,
) -> Outcome:
    """After 3-D Secure: the shopper's payment is complete; place the order (idempotent)."""
    with database.read() as session:
        order = orders.get_by_number(session, order_number)
        if order.channel_id != channel.id or (
            order.customer_id is not None and order.customer_id != customer_id
        ):
            raise NotFound(f"order {order_number} not found")
        started = _started_from(session, order)
        if order.status != OrderStatus.PENDING_PAYMENT.value:
            return _answer(session, order)
    return _pay_and_confirm(
        database, started, channel, carts.shopper(channel, customer_id), None, "", None
    )


# --- abandoned checkouts ---------------------------------------------------------------------


def _was_abandoned(session: Session, order: Order) -> bool:
    steps = orders.timeline(session, order.id)
    return bool(steps) and (steps[-1].reason or "").startswith(ABANDONED)


def _abandoned_outcome(number: str) -> Outcome:
    problem = CheckoutAbandoned(
        "this checkout was abandoned before its payment finished: its payments are released "
        "and the cart is open again; check out again with a new Idempotency-Key",
        extra={"order_number": number},
    )
    return Outcome(problem.status, problem.body())


def checkout_timeout() -> timedelta:
    return timedelta(seconds=get_settings().checkout_timeout_seconds)


def abandon_stale_checkouts(
    database: Database,
    *,
    timeout: timedelta | None = None,
    now: datetime | None = None,
    limit: int = 100,
) -> list[str]:
    """Compensate checkouts still ``pending_payment`` ``timeout`` after they started.

    Each is undone like a declined payment: the order goes to ``payment_failed`` with the
    reason recorded, its holds and code redemptions are released, the cart reopens, the
    Idempotency-Key of the attempt answers ``checkout-abandoned`` from now on, then (no
    transaction open) authorisations are voided and gift card and store credit amounts
    credited back. The order's move out of ``pending_payment`` is one conditional UPDATE:
    against a concurrent ``/complete`` or retry, whichever commits first decides, and the
    other changes nothing. Running it again, or in several processes, is harmless.
    Returns the numbers of the orders it abandoned (at most ``limit``).
    """
    wait = checkout_timeout() if timeout is None else timeout
    reason = f"{ABANDONED}: no payment within {int(wait.total_seconds()) // 60} minutes"
    abandoned = []
    for order_id in _stale_checkouts((now or utcnow()) - wait, database, limit):
        try:
            number = _abandon(database, order_id, reason)
        except Exception:  # one order's trouble must not keep the others stuck
            log.exception("could not abandon the checkout of order %s", order_id)
            continue
        if number is not None:
            abandoned.append(number)
    return abandoned


def _stale_checkouts(cutoff: datetime, database: Database, limit: int) -> list[int]:
    """Orders of checkouts (they have a cart) pending since before ``cutoff``, oldest first.

    Other orders waiting for payment (a return's replacement order) belong to the process
    that created them and are left alone.
    """
    found: list[int] = []
    cursor = None
    flt = orders.OrderFilter(status=OrderStatus.PENDING_PAYMENT.value, placed_to=cutoff)
    with database.read() as session:
        while len(found) < limit:
            page = orders.search(session, flt, cursor, limit)
            found += [o.id for o in page.items if o.cart_id is not None]
            cursor = page.next_cursor
            if cursor is None:
                break
    return sorted(found)[:limit]


def _abandon(database: Database, order_id: int, reason: str) -> str | None:
    actor = Principal.system("checkout-expiry")
    with database.transaction() as session:
        order = orders.get_order(session, order_id)
        if order.status != OrderStatus.PENDING_PAYMENT.value:
            return None
        started = _started_from(session, order)
        try:
            order = orders.advance(
                session,
                actor,
                order_id,
                OrderStatus.PENDING_PAYMENT,
                [(OrderStatus.PAYMENT_FAILED, reason)],
            )
        except Problem:  # finished meanwhile by /complete or a retry: theirs is the answer
            return None
        ctx = inventory.Context(actor, order.channel_id, "order", order.number, note=reason)
        inventory.release(session, ctx, started.reservation_ids)
        promotions.release_redemptions(session, order.number)
        token = None
        if order.cart_id is not None:
            carts.finish_checkout(session, order.cart_id, order.id, completed=False)
            token = carts.token_of(session, order.cart_id)
        if token is not None:
            outcome = _abandoned_outcome(order.number)
            for key in idempotency.keys_in_progress(session, _scope(token)):
                idempotency.finish(session, _scope(token), key, outcome.status_code, outcome.body)
        to_void = [
            p.id
            for p in payments.payments_for_reference(session, order.number)
            if p.status not in NOT_TAKEN
        ]
        publish(
            session,
            checkout_events.CheckoutAbandoned(
                order_id=order.id,
                number=order.number,
                channel_id=order.channel_id,
                customer_id=order.customer_id,
                cart_id=order.cart_id,
                reason=reason,
                payment_ids=tuple(to_void),
            ),
        )
        number = order.number
    if to_void:
        payments.void_payments(database, to_void, actor=actor)
    return number


# A failed checkout's compensation normally runs a moment after its commit; the sweep
# leaves it that long, and looks back far enough to cover a server down for a weekend.
COMPENSATION_GRACE = timedelta(minutes=2)
COMPENSATION_WINDOW = timedelta(days=3)


def finish_compensations(
    database: Database, *, now: datetime | None = None, page_size: int = 200
) -> list[int]:
    """Give back what failed checkouts still hold: the process that failed them may have
    stopped between committing the failure and voiding the payments (authorisations left
    open, gift card and store credit amounts left spent).

    Looks at checkout orders that ended ``payment_failed`` (declined or abandoned) in the
    last days and voids their payments still taking or holding money, exactly as the
    failing process would have; voiding is idempotent, so a sweep that meets a
    compensation in progress does no harm. Returns the ids of the payments it voided.
    """
    at = now or utcnow()
    flt = orders.OrderFilter(
        status=OrderStatus.PAYMENT_FAILED.value,
        placed_from=at - COMPENSATION_WINDOW,
        placed_to=at - COMPENSATION_GRACE,
    )
    unsettled: list[int] = []
    cursor = None
    with database.read() as session:
        while True:
            page = orders.search(session, flt, cursor, page_size)
            numbers = [o.number for o in page.items if o.cart_id is not None]
            unsettled += [p.id for p in payments.unsettled_for_references(session, numbers)]
            cursor = page.next_cursor
            if cursor is None:
                break
    if unsettled:
        log.warning("finishing the compensation of payments %s", unsettled)
        payments.void_payments(database, unsettled, actor=Principal.system("checkout-recovery"))
    return unsettled


__all__ = [
    "CheckoutAbandoned",
    "CheckoutRequest",
    "FraudDecision",
    "Outcome",
    "abandon_stale_checkouts",
    "checkout",
    "finish_after_action",
    "finish_compensations",
]
