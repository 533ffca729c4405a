"""Checkout, steps 2 and 3: ask the providers to authorise, then record their answers.

:func:`authorize_pending` runs with no transaction open and writes nothing;
:func:`record_outcomes` applies the answers in the checkout's second transaction. A
shopper's action (3-D Secure) is finished by :func:`complete_action` or by the provider's
webhook, whichever comes first.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mercato.db import Database, utcnow
from mercato.errors import NotFound, UnprocessableState
from mercato.events import publish
from mercato.payments.event_types import AUTHORIZATION_EVENTS
from mercato.payments.models import (
    BALANCE_METHODS,
    Payment,
    PaymentStatus,
    TxnKind,
    TxnStatus,
)
from mercato.payments.problems import ProviderUnavailableProblem
from mercato.payments.providers import (
    ActionRequest,
    AuthorizeRequest,
    Outcome,
    ProviderResult,
    ProviderUnavailable,
    get_provider,
)
from mercato.payments.reading import get_payment, get_payments
from mercato.payments.records import (
    add_transaction,
    authorization_key,
    payment_facts,
    read_transaction,
    update_payments,
)

# Every payments use case logs under the domain's one name, whichever module it lives in.
log = logging.getLogger("mercato.payments.service")

_AUTH_STATUS = {
    Outcome.AUTHORIZED: PaymentStatus.AUTHORIZED,
    Outcome.CAPTURED: PaymentStatus.CAPTURED,
    Outcome.REQUIRES_ACTION: PaymentStatus.REQUIRES_ACTION,
    Outcome.DECLINED: PaymentStatus.DECLINED,
    Outcome.FAILED: PaymentStatus.FAILED,
}
_LEDGER_STATUS = {
    PaymentStatus.REQUIRES_ACTION: TxnStatus.REQUIRES_ACTION,
    PaymentStatus.DECLINED: TxnStatus.FAILED,
    PaymentStatus.FAILED: TxnStatus.FAILED,
}


@dataclass(frozen=True)
class ProviderOutcome:
    """A provider's answer to an authorisation, not yet recorded."""

    payment_id: int
    result: ProviderResult

    @property
    def status(self) -> str:
        return self.result.outcome.value


# --- 2. ask the providers (no transaction open) ---------------------------------------------------


def authorize_pending(
    database: Database, payment_ids: Sequence[int], *, known: Sequence[Payment] | None = None
) -> list[ProviderOutcome]:
    """Call the provider of every pending payment among ``payment_ids``; write nothing.

    Must be called with no transaction open. Each call carries :func:`authorization_key`,
    so calling this again for the same payments (a retried checkout) gets the same answers
    and never a second charge. ``known`` are the rows just committed by the caller (as
    ``create_payments`` returned them), which saves reading them again.
    """
    if known is not None and {p.id for p in known} == set(payment_ids):
        requests = _requests_of_known(known)
    else:
        requests = _requests_of_pending(database, payment_ids)
    return [
        ProviderOutcome(request.payment_id, _call_authorize(database, method, request))
        for method, request in requests
    ]


def _requests_of_known(known: Sequence[Payment]) -> list[tuple[str, AuthorizeRequest]]:
    pending = [
        p
        for p in known
        if p.status == PaymentStatus.PENDING.value and p.method not in BALANCE_METHODS
    ]
    return [
        (p.method, _authorize_request(p)) for p in sorted(pending, key=lambda p: (p.position, p.id))
    ]


def _requests_of_pending(
    database: Database, payment_ids: Sequence[int]
) -> list[tuple[str, AuthorizeRequest]]:
    with read_transaction(database) as session:
        rows = session.scalars(
            select(Payment)
            .where(
                Payment.id.in_(list(payment_ids)),
                Payment.status == PaymentStatus.PENDING.value,
                Payment.method.not_in(sorted(BALANCE_METHODS)),
            )
            .order_by(Payment.position, Payment.id)
        ).all()
        return [(p.method, _authorize_request(p)) for p in rows]


def _authorize_request(p: Payment) -> AuthorizeRequest:
    return AuthorizeRequest(
        payment_id=p.id,
        reference=p.reference,
        amount=p.amount,
        currency=p.currency,
        idempotency_key=authorization_key(p.id),
        token=p.card_token,
        approval_code=p.approval_code,
        customer_id=p.customer_id,
    )


def _call_authorize(database: Database, method: str, request: AuthorizeRequest) -> ProviderResult:
    try:
        return get_provider(method, database).authorize(request)
    except ProviderUnavailable as exc:
        return ProviderResult(Outcome.FAILED, code="provider_unavailable", message=str(exc))
    except Exception as exc:  # a provider's bug must not leave the checkout uncompensated
        log.exception("payment provider %s failed to authorise payment %s", method, request)
        return ProviderResult(Outcome.FAILED, code="provider_error", message=repr(exc))


# --- 3. record the answers ------------------------------------------------------------------------


def record_outcomes(session: Session, outcomes: Sequence[ProviderOutcome]) -> list[Payment]:
    """Apply providers' answers to pending payments (in the caller's transaction).

    A payment that is no longer pending (recorded already, by a retry or a webhook) is left
    as it is, so recording the same outcomes twice changes nothing the second time.
    """
    changed = {
        payment.id: payment
        for outcome in outcomes
        if (
            payment := apply_authorization(
                session, outcome.payment_id, outcome.result, PaymentStatus.PENDING
            )
        )
        is not None
    }
    if len(changed) == len(outcomes):
        return [changed[o.payment_id] for o in outcomes]
    return get_payments(session, [o.payment_id for o in outcomes])


def apply_authorization(
    session: Session, payment_id: int, result: ProviderResult, from_status: PaymentStatus
) -> Payment | None:
    """The payment as recorded, or None when it had left ``from_status`` already."""
    status = _AUTH_STATUS.get(result.outcome, PaymentStatus.FAILED)
    payment = session.scalars(
        update_payments()
        .where(Payment.id == payment_id, Payment.status == from_status.value)
        .values(_authorization_values(status, result))
        .returning(Payment)
        .execution_options(populate_existing=True)
    ).one_or_none()
    if payment is None:
        return None
    _record_authorization(session, payment, status, result)
    return payment


def _failed(status: PaymentStatus) -> bool:
    return status in (PaymentStatus.DECLINED, PaymentStatus.FAILED)


def _authorization_values(status: PaymentStatus, result: ProviderResult) -> dict[str, Any]:
    """The payment's columns after the provider's answer."""
    holds = status in (PaymentStatus.AUTHORIZED, PaymentStatus.CAPTURED)
    captured = status is PaymentStatus.CAPTURED
    failed = _failed(status)
    now = utcnow()
    values: dict[str, Any] = {
        "status": status.value,
        "authorized_minor": Payment.amount_minor if holds else 0,
        "captured_minor": Payment.amount_minor if captured else 0,
        "action_url": result.action_url,
        "failure_code": ((result.code or "")[:50] or None) if failed else None,
        "failure_message": ((result.message or "")[:300] or None) if failed else None,
        "updated_at": now,
    }
    if captured:
        values["captured_at"] = now
    for name in ("provider_reference", "card_brand", "card_last4", "approval_code"):
        if getattr(result, name):
            values[name] = getattr(result, name)
    return values


def _record_authorization(
    session: Session, payment: Payment, status: PaymentStatus, result: ProviderResult
) -> None:
    """The ledger rows (authorisation, and capture when captured at once) and the event."""
    failed = _failed(status)
    key, charge = authorization_key(payment.id), payment.provider_reference
    add_transaction(
        session,
        payment,
        TxnKind.AUTHORIZE,
        _LEDGER_STATUS.get(status, TxnStatus.SUCCEEDED),
        payment.amount_minor,
        provider_key=key,
        provider_reference=charge,
        failure=(result.code, result.message) if failed else (None, None),
    )
    if status is PaymentStatus.CAPTURED:
        add_transaction(
            session,
            payment,
            TxnKind.CAPTURE,
            TxnStatus.SUCCEEDED,
            payment.amount_minor,
            provider_key=key,
            provider_reference=charge,
        )
    extra: dict[str, Any] = {"status": status.value}
    if failed:
        extra["failure_code"] = result.code
    if status is PaymentStatus.REQUIRES_ACTION:
        extra["action_url"] = result.action_url
    publish(session, AUTHORIZATION_EVENTS[status](**payment_facts(payment), **extra))


# --- the shopper's action (3-D Secure) ------------------------------------------------------------


def complete_action(
    database: Database,
    payment_id: int,
    *,
    channel_id: int | None,
    client_secret: str,
    data: Mapping[str, Any] | None = None,
) -> Payment:
    """The shopper finished the provider's action (3-D Secure): ask the provider, record.

    Only the channel the payment was made in, holding the payment's ``client_secret``,
    may complete it; anyone else gets a 404 as if the payment did not exist.
    """
    with read_transaction(database) as session:
        payment = get_payment(session, payment_id)
        _check_action_owner(payment, channel_id, client_secret)
        if payment.status != PaymentStatus.REQUIRES_ACTION.value:
            return _already_completed(payment)
        request = ActionRequest(
            payment_id=payment.id,
            provider_reference=payment.provider_reference or "",
            idempotency_key=f"mercato-payment-{payment.id}-action",
            data=dict(data or {}),
        )
        method = payment.method
    try:
        result = get_provider(method, database).complete_action(request)
    except ProviderUnavailable as exc:
        raise ProviderUnavailableProblem(str(exc)) from exc
    with database.transaction() as session:
        if result.outcome in (Outcome.AUTHORIZED, Outcome.DECLINED, Outcome.FAILED):
            apply_authorization(session, payment_id, result, PaymentStatus.REQUIRES_ACTION)
        return get_payment(session, payment_id)


def _check_action_owner(payment: Payment, channel_id: int | None, client_secret: str) -> None:
    """A 404 unless the caller is the payment's channel holding its client secret."""
    if payment.channel_id != channel_id or not hmac.compare_digest(
        payment.client_secret.encode(), client_secret.encode()
    ):
        raise NotFound(f"payment {payment.id} not found")


def _already_completed(payment: Payment) -> Payment:
    """A payment no longer waiting for its action: answered as it is, when it was completed
    (a retry, or the provider's webhook came first), else a 409."""
    if payment.status in (PaymentStatus.AUTHORIZED.value, PaymentStatus.DECLINED.value):
        return payment
    raise UnprocessableState(f"payment {payment.id} is {payment.status}, not requires_action")
