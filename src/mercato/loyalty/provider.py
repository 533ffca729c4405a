"""Points as a payment tender in every channel: the ``loyalty_points`` payment provider.

A shopper (or an associate at the POS, with the shopper signed in) pays part or all of a
checkout with a ``loyalty_points`` tender whose amount is in the checkout's currency. The
provider turns it into points with the programme's value of a point in that currency
(1 point = 1 JPY = 0.01 EUR) and spends them when the payment is authorised: authorised
and captured at once, like cash at a till. Refunds give the points back in proportion,
never more than were spent.

It goes through the payments provider protocol rather than as a balance tender of the
payments domain, so the existing checkout takes it without any change: checkout records
a ``pending`` payment, calls :meth:`LoyaltyPointsProvider.authorize` with no transaction
open, and records the answer. The provider keeps its own state in its own short
transactions, like a remote gateway would, and answers every idempotency key once: a
retried or reconciled call gets the first answer and never spends points twice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.db import Database, utcnow
from mercato.errors import NotFound, ValidationProblem
from mercato.loyalty import rules, service
from mercato.loyalty.models import TenderCall
from mercato.money import from_minor, to_minor
from mercato.payments import service as payments
from mercato.payments.providers import (
    ActionRequest,
    AuthorizeRequest,
    ChargeRequest,
    Outcome,
    ProviderResult,
    ProviderUnavailable,
    WebhookEvent,
    WebhooksNotSupported,
)

NAME = service.TENDER_METHOD

_MESSAGES = {
    "customer_required": "paying with points needs a signed-in customer",
    "not_redeemable": "points cannot be redeemed in this currency",
    "not_whole_points": "the amount is not a whole number of points",
    "insufficient_points": "the customer does not have enough points",
    "voided": "the payment was voided before it was authorised",
    "not_redeemed": "no points were spent by this payment",
    "amount_exceeds_redeemed": "the amount exceeds what is left to refund",
    "not_supported": "points payments need no shopper action",
}


@dataclass(frozen=True)
class _Call:
    """What a call is about, written on its key before the work starts."""

    key: str
    operation: str
    payment_id: int
    customer_id: int | None
    currency: str


def _declined(code: str, outcome: Outcome = Outcome.DECLINED) -> ProviderResult:
    return ProviderResult(outcome, code=code, message=_MESSAGES[code])


class LoyaltyPointsProvider:
    name = NAME

    def __init__(self, database: Database) -> None:
        self.database = database

    # -- the provider protocol ------------------------------------------------------------

    def authorize(self, request: AuthorizeRequest) -> ProviderResult:
        call = _Call(
            request.idempotency_key,
            "authorize",
            request.payment_id,
            request.customer_id,
            request.currency,
        )
        return self._once(call, lambda s, row: self._authorize(s, row, request))

    def capture(self, request: ChargeRequest) -> ProviderResult:
        # Points are taken when authorised: there is nothing left to capture.
        return ProviderResult(Outcome.SUCCEEDED, request.provider_reference, amount=request.amount)

    def void(self, request: ChargeRequest) -> ProviderResult:
        call = _Call(request.idempotency_key, "void", request.payment_id, None, request.currency)
        return self._once(call, lambda s, row: self._void(s, request))

    def refund(self, request: ChargeRequest) -> ProviderResult:
        call = _Call(request.idempotency_key, "refund", request.payment_id, None, request.currency)
        return self._once(call, lambda s, row: self._refund(s, request))

    def complete_action(self, request: ActionRequest) -> ProviderResult:
        return _declined("not_supported", Outcome.FAILED)

    def parse_webhook(self, headers: Mapping[str, str], body: bytes, secret: bytes) -> WebhookEvent:
        raise WebhooksNotSupported(self.name)

    # -- one answer per key -----------------------------------------------------------------

    def _once(
        self, call: _Call, work: Callable[[Session, TenderCall], ProviderResult]
    ) -> ProviderResult:
        try:
            with self.database.transaction() as session:
                stored = session.get(TenderCall, call.key)
                if stored is not None:
                    return _result(stored)
                # Claim the key before the work: a concurrent duplicate fails on it.
                row = TenderCall(
                    key=call.key,
                    operation=call.operation,
                    payment_id=call.payment_id,
                    customer_id=call.customer_id,
                    outcome="pending",
                    currency=call.currency,
                    created_at=utcnow(),
                )
                session.add(row)
                session.flush()
                result = work(session, row)
                row.outcome = result.outcome.value
                row.code = result.code
                row.message = result.message
                return result
        except IntegrityError as exc:
            with self.database.read() as session:
                stored = session.get(TenderCall, call.key)
                if stored is None:
                    # Raced with another call on the same payment: the outcome is unknown
                    # until it commits, so payments leaves this one pending and reconciles.
                    raise ProviderUnavailable(f"{NAME}: concurrent call on {call.key}") from exc
                return _result(stored)

    # -- the operations -------------------------------------------------------------------

    def _authorize(
        self, session: Session, row: TenderCall, request: AuthorizeRequest
    ) -> ProviderResult:
        if request.customer_id is None:
            return _declined("customer_required")
        value = service.redemption_value(session, request.currency)
        if value is None:
            return _declined("not_redeemable")
        points = rules.points_for_amount(request.amount, value)
        if points is None or points <= 0:
            return _declined("not_whole_points")
        try:
            with session.begin_nested():
                service.redeem(
                    session,
                    _actor(request.customer_id),
                    request.customer_id,
                    points,
                    reference_type="payment",
                    reference_id=request.reference,
                    channel_id=_channel_of(session, request.payment_id),
                )
        except (service.InsufficientPoints, ValidationProblem):
            # ValidationProblem: more points than any balance may hold.
            return _declined("insufficient_points")
        row.points = points
        row.amount_minor = to_minor(request.amount, request.currency)
        return ProviderResult(
            Outcome.CAPTURED, reference(request.payment_id), amount=request.amount
        )

    def _void(self, session: Session, request: ChargeRequest) -> ProviderResult:
        auth = session.get(TenderCall, request.authorization_key, with_for_update=True)
        if auth is None:
            # Never authorised: make sure a late authorisation cannot spend points now.
            session.add(
                TenderCall(
                    key=request.authorization_key,
                    operation="authorize",
                    payment_id=request.payment_id,
                    outcome=Outcome.FAILED.value,
                    code="voided",
                    message=_MESSAGES["voided"],
                    currency=request.currency,
                    created_at=utcnow(),
                )
            )
            session.flush()
            return ProviderResult(Outcome.SUCCEEDED, request.provider_reference)
        left = auth.amount_minor - auth.refunded_minor
        if auth.outcome == Outcome.CAPTURED.value and left > 0:
            self._give_back(session, request, left)
        return ProviderResult(Outcome.SUCCEEDED, request.provider_reference)

    def _refund(self, session: Session, request: ChargeRequest) -> ProviderResult:
        minor = to_minor(request.amount, request.currency)
        if minor <= 0:
            return _declined("amount_exceeds_redeemed", Outcome.FAILED)
        return self._give_back(session, request, minor)

    def _give_back(self, session: Session, request: ChargeRequest, minor: int) -> ProviderResult:
        """Return the points of ``minor`` of the payment (cumulative, so a full refund
        returns exactly the points spent and partial ones never more than their share)."""
        claimed = session.execute(
            update(TenderCall)
            .where(
                TenderCall.key == request.authorization_key,
                TenderCall.outcome == Outcome.CAPTURED.value,
                TenderCall.refunded_minor + minor <= TenderCall.amount_minor,
            )
            .values(refunded_minor=TenderCall.refunded_minor + minor)
            .returning(
                TenderCall.customer_id,
                TenderCall.points,
                TenderCall.amount_minor,
                TenderCall.refunded_minor,
                TenderCall.restored_points,
            )
            .execution_options(synchronize_session=False)
        ).one_or_none()
        if claimed is None:
            return _declined("amount_exceeds_redeemed", Outcome.FAILED)
        customer_id, points, amount_minor, refunded_minor, restored = claimed
        if customer_id is None:  # only captured calls match, and they all have a customer
            return _declined("not_redeemed", Outcome.FAILED)
        target = rules.restored_points(points, amount_minor, refunded_minor)
        if target > restored:
            session.execute(
                update(TenderCall)
                .where(TenderCall.key == request.authorization_key)
                .values(restored_points=target)
                .execution_options(synchronize_session=False)
            )
            service.refund_points(
                session,
                Principal.system(NAME),
                customer_id,
                target - restored,
                reference_type="payment",
                reference_id=_reference_of(session, request.payment_id),
            )
        return ProviderResult(
            Outcome.SUCCEEDED,
            request.provider_reference,
            f"{NAME}_refund_{request.idempotency_key[-24:]}",
            amount=request.amount,
        )


def reference(payment_id: int) -> str:
    return f"{NAME}_{payment_id}"


def _actor(customer_id: int) -> Principal:
    return Principal(kind="customer", id=customer_id, label=NAME, customer_id=customer_id)


def _channel_of(session: Session, payment_id: int) -> int | None:
    try:
        return payments.get_payment(session, payment_id).channel_id
    except NotFound:
        return None


def _reference_of(session: Session, payment_id: int) -> str:
    """What the payment paid for (the order number), written on the points entry."""
    try:
        return payments.get_payment(session, payment_id).reference
    except NotFound:
        return str(payment_id)


def _result(row: TenderCall) -> ProviderResult:
    outcome = Outcome(row.outcome) if row.outcome != "pending" else Outcome.FAILED
    data: dict[str, Any] = {"code": row.code, "message": row.message}
    if outcome is Outcome.CAPTURED:
        amount = from_minor(row.amount_minor, row.currency)
        return ProviderResult(outcome, reference(row.payment_id), amount=amount, **data)
    return ProviderResult(outcome, **data)

