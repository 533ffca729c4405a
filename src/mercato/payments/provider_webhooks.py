"""Verified provider webhooks, each applied once.

An event about an operation Mercato started (matched by its idempotency key or the
provider's id) completes the pending ledger row like transaction B would, whichever comes
first; an event about something done at the provider (its dashboard) is recorded as it
happened: a capture, a refund or a chargeback.
"""

from __future__ import annotations

from typing import Literal

from sqlalchemy import or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from mercato.db import utcnow
from mercato.events import publish
from mercato.money import check_precision, from_minor, to_minor
from mercato.payments.authorization import apply_authorization
from mercato.payments.event_types import PaymentCaptured, PaymentChargedBack, PaymentRefunded
from mercato.payments.models import (
    Payment,
    PaymentStatus,
    PaymentTransaction,
    ProviderWebhookReceipt,
    Refund,
    TxnKind,
    TxnStatus,
)
from mercato.payments.pending_operations import finish
from mercato.payments.providers import Outcome, ProviderResult, WebhookEvent, WebhookKind
from mercato.payments.reading import get_payment
from mercato.payments.records import (
    CAPTURABLE,
    VOIDED_OR_VOIDING,
    add_transaction,
    capture_fits,
    payment_facts,
    refund_fits,
    status_after,
    update_payments,
)

WebhookOutcome = Literal["applied", "duplicate", "ignored"]


def apply_webhook(session: Session, provider: str, event: WebhookEvent) -> WebhookOutcome:
    """Apply a verified provider event once; ``applied``, ``duplicate`` or ``ignored``."""
    if not _first_receipt(session, provider, event):
        return "duplicate"
    payment = session.scalar(
        select(Payment).where(
            Payment.method == provider, Payment.provider_reference == event.provider_reference
        )
    )
    applied = payment is not None and _apply_event(session, payment, event)
    outcome: WebhookOutcome = "applied" if applied else "ignored"
    session.execute(
        update(ProviderWebhookReceipt)
        .where(
            ProviderWebhookReceipt.provider == provider,
            ProviderWebhookReceipt.event_id == event.event_id,
        )
        .values(outcome=outcome, payment_id=payment.id if payment is not None else None)
    )
    return outcome


def _first_receipt(session: Session, provider: str, event: WebhookEvent) -> bool:
    """Record the event's receipt; False when it was received already."""
    maker = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    # A concurrent delivery of the same event waits on this row and then inserts nothing.
    first = session.execute(
        maker(ProviderWebhookReceipt)
        .values(
            provider=provider,
            event_id=event.event_id,
            type=event.type,
            outcome="received",
            received_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["provider", "event_id"])
        .returning(ProviderWebhookReceipt.event_id)
    ).one_or_none()
    return first is not None


def _apply_event(session: Session, payment: Payment, event: WebhookEvent) -> bool:
    if event.kind in (WebhookKind.ACTION_COMPLETED, WebhookKind.ACTION_FAILED):
        return _apply_action(session, payment, event)
    txn_id = _known_transaction(session, payment.id, event)
    if txn_id is not None:
        # An operation Mercato started: the webhook may complete it before B does, or
        # after, in which case there is nothing left to do.
        result = ProviderResult(
            Outcome.SUCCEEDED, payment.provider_reference, event.transaction_reference
        )
        return finish(session, txn_id, result)
    minor = _event_minor(payment, event)
    if minor is None:
        return False
    if event.kind is WebhookKind.CAPTURED:
        return _external_capture(session, payment, minor, event)
    if event.kind is WebhookKind.REFUNDED:
        return _external_refund(session, payment, minor, event)
    return _chargeback(session, payment, minor, event)


def _apply_action(session: Session, payment: Payment, event: WebhookEvent) -> bool:
    """The shopper's action (3-D Secure) ended at the provider."""
    ok = event.kind is WebhookKind.ACTION_COMPLETED
    result = ProviderResult(
        Outcome.AUTHORIZED if ok else Outcome.DECLINED,
        payment.provider_reference,
        code=None if ok else "authentication_failed",
        message=None if ok else "3-D Secure authentication failed",
    )
    recorded = apply_authorization(session, payment.id, result, PaymentStatus.REQUIRES_ACTION)
    return recorded is not None


def _event_minor(payment: Payment, event: WebhookEvent) -> int | None:
    """The event's amount in the payment's minor units; None when it has no usable one."""
    if event.amount is None or (event.currency or payment.currency).upper() != payment.currency:
        return None
    try:
        minor = to_minor(check_precision(event.amount, payment.currency), payment.currency)
    except ValueError:
        return None
    return minor if minor > 0 else None


def _known_transaction(session: Session, payment_id: int, event: WebhookEvent) -> int | None:
    """The ledger row of this event's operation, matched by our key or the provider's id."""
    matches = []
    if event.transaction_key:
        matches.append(PaymentTransaction.provider_key == event.transaction_key)
    if event.transaction_reference:
        matches.append(PaymentTransaction.provider_reference == event.transaction_reference)
    if not matches:
        return None
    kind = {WebhookKind.CAPTURED: TxnKind.CAPTURE, WebhookKind.REFUNDED: TxnKind.REFUND}.get(
        event.kind, TxnKind.CHARGEBACK
    )
    return session.scalar(
        select(PaymentTransaction.id)
        .where(
            PaymentTransaction.payment_id == payment_id,
            PaymentTransaction.kind == kind.value,
            or_(*matches),
        )
        .limit(1)
    )


def _external_capture(session: Session, payment: Payment, minor: int, event: WebhookEvent) -> bool:
    """A capture made at the provider (its dashboard), not through Mercato."""
    done = session.execute(
        update_payments()
        .where(Payment.id == payment.id, Payment.status.in_(CAPTURABLE), capture_fits(minor))
        .values(
            captured_minor=Payment.captured_minor + minor,
            status=status_after(captured_delta=minor),
            captured_at=utcnow(),
            updated_at=utcnow(),
        )
        .returning(Payment.id)
    ).one_or_none()
    if done is None:
        return False
    add_transaction(
        session,
        payment,
        TxnKind.CAPTURE,
        TxnStatus.SUCCEEDED,
        minor,
        provider_reference=event.transaction_reference,
        detail={"webhook": event.event_id},
    )
    captured = from_minor(minor, payment.currency)
    facts = payment_facts(get_payment(session, payment.id))
    publish(session, PaymentCaptured(**facts, captured=captured))
    return True


def _external_refund(session: Session, payment: Payment, minor: int, event: WebhookEvent) -> bool:
    """A refund made at the provider: recorded as a refund that succeeded."""
    done = session.execute(
        update_payments()
        .where(
            Payment.id == payment.id,
            Payment.status.not_in(VOIDED_OR_VOIDING),
            refund_fits(minor),
        )
        .values(
            refunded_minor=Payment.refunded_minor + minor,
            status=status_after(refunded_delta=minor),
            updated_at=utcnow(),
        )
        .returning(Payment.id)
    ).one_or_none()
    if done is None:
        return False
    refund_row = _external_refund_row(session, payment, minor, event)
    add_transaction(
        session,
        payment,
        TxnKind.REFUND,
        TxnStatus.SUCCEEDED,
        minor,
        provider_reference=event.transaction_reference,
        refund_id=refund_row.id,
        detail={"webhook": event.event_id},
    )
    refunded = from_minor(minor, payment.currency)
    facts = payment_facts(get_payment(session, payment.id))
    publish(session, PaymentRefunded(**facts, refund_id=refund_row.id, refunded=refunded))
    return True


def _external_refund_row(
    session: Session, payment: Payment, minor: int, event: WebhookEvent
) -> Refund:
    refund_row = Refund(
        payment_id=payment.id,
        reference=payment.reference,
        method=payment.method,
        currency=payment.currency,
        amount_minor=minor,
        status=TxnStatus.SUCCEEDED.value,
        reason=event.reason or "refunded at the provider",
        provider_reference=event.transaction_reference,
        created_at=utcnow(),
        completed_at=utcnow(),
    )
    session.add(refund_row)
    session.flush()
    return refund_row


def _chargeback(session: Session, payment: Payment, minor: int, event: WebhookEvent) -> bool:
    """The cardholder's bank took the money back: it can no longer be refunded."""
    done = session.execute(
        update_payments()
        .where(Payment.id == payment.id, refund_fits(minor))
        .values(charged_back_minor=Payment.charged_back_minor + minor, updated_at=utcnow())
        .returning(Payment.id)
    ).one_or_none()
    if done is None:
        return False
    add_transaction(
        session,
        payment,
        TxnKind.CHARGEBACK,
        TxnStatus.SUCCEEDED,
        minor,
        provider_reference=event.transaction_reference,
        detail={"webhook": event.event_id, "reason": event.reason},
    )
    charged_back = from_minor(minor, payment.currency)
    facts = payment_facts(get_payment(session, payment.id))
    publish(session, PaymentChargedBack(**facts, charged_back=charged_back, reason=event.reason))
    return True
