"""Gift card and store credit tenders: their "provider" is this database.

A balance tender is taken in the checkout's own transaction (:func:`redeem`), so it is
authorised and captured at once, and given back through the same ledger on a void or a
refund (:func:`credit_back`).
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.db import utcnow
from mercato.events import publish
from mercato.money import from_minor
from mercato.payments import balances
from mercato.payments.event_types import PaymentCaptured
from mercato.payments.models import Method, Payment, PaymentStatus, TxnKind, TxnStatus
from mercato.payments.records import add_transaction, payment_facts


def redeem(session: Session, payment: Payment, gift_card_code: str | None, at: str) -> None:
    """Take a balance tender's amount now; the payment is then authorised and captured.

    ``at`` names the tender in a validation problem (``body.payments[0]``).
    """
    if payment.method == Method.GIFT_CARD.value:
        _redeem_gift_card(session, payment, gift_card_code or "", at)
    else:
        _debit_store_credit(session, payment, at)
    payment.status = PaymentStatus.CAPTURED.value
    payment.authorized_minor = payment.captured_minor = payment.amount_minor
    payment.captured_at = utcnow()
    payment.provider_reference = f"{payment.method}_{payment.id}"
    for kind in (TxnKind.AUTHORIZE, TxnKind.CAPTURE):
        add_transaction(session, payment, kind, TxnStatus.SUCCEEDED, payment.amount_minor)
    publish(
        session,
        PaymentCaptured(
            **payment_facts(payment), captured=from_minor(payment.amount_minor, payment.currency)
        ),
    )


def _redeem_gift_card(session: Session, payment: Payment, code: str, at: str) -> None:
    card_id, last4 = balances.redeem_gift_card(
        session,
        code,
        payment.currency,
        payment.amount_minor,
        payment_id=payment.id,
        reference=payment.reference,
        field=f"{at}.gift_card_code",
    )
    payment.gift_card_id = card_id
    payment.card_last4 = last4


def _debit_store_credit(session: Session, payment: Payment, at: str) -> None:
    entry = balances.debit_store_credit(
        session,
        payment.customer_id or 0,
        payment.currency,
        payment.amount_minor,
        payment_id=payment.id,
        reference=payment.reference,
        field=f"{at}.amount",
    )
    payment.store_credit_account_id = entry.account_id


def credit_back(
    session: Session, payment: Payment, minor: int, kind: str, actor: Principal | None
) -> None:
    """Put ``minor`` back on the gift card or store credit account the payment was taken from."""
    if payment.gift_card_id is not None:
        balances.credit_gift_card(
            session,
            payment.gift_card_id,
            minor,
            kind,
            payment_id=payment.id,
            reference=payment.reference,
            actor=actor,
        )
    elif payment.store_credit_account_id is not None:
        balances.credit_store_account(
            session,
            payment.store_credit_account_id,
            minor,
            kind,
            payment_id=payment.id,
            reference=payment.reference,
            actor=actor,
        )
