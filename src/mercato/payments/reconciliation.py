"""Reconciliation: completing ledger rows a crash or an unreachable provider left pending.

A pending row keeps its amount reserved, so nothing can over-capture or over-refund
meanwhile. :func:`reconcile` asks the provider again with the row's *same* idempotency
key (the provider answers with the first result, or performs the operation once if it
never got it) and then runs transaction B. Operations run it from a scheduler through
``POST /v1/payments/reconcile``: it must run with no transaction open, so it is not an
in-process periodic job, which gets a session.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from mercato.db import Database, utcnow
from mercato.payments.models import PaymentTransaction, TxnKind, TxnStatus
from mercato.payments.pending_operations import call_provider, charge_request, finish
from mercato.payments.problems import ProviderUnavailableProblem
from mercato.payments.reading import get_payment
from mercato.payments.records import read_transaction

RECONCILE_AFTER = timedelta(minutes=5)


def pending_transactions(
    session: Session, older_than: timedelta = RECONCILE_AFTER
) -> list[PaymentTransaction]:
    """Captures, voids and refunds still waiting for their provider's answer."""
    return list(
        session.scalars(
            select(PaymentTransaction)
            .where(
                PaymentTransaction.status == TxnStatus.PENDING.value,
                PaymentTransaction.kind.in_(
                    (TxnKind.CAPTURE.value, TxnKind.VOID.value, TxnKind.REFUND.value)
                ),
                PaymentTransaction.created_at <= utcnow() - older_than,
            )
            .order_by(PaymentTransaction.id)
        )
    )


def reconcile(
    database: Database, *, older_than: timedelta = RECONCILE_AFTER, limit: int = 100
) -> int:
    """Complete pending ledger rows by asking the provider again with the same key.

    Safe to run in several processes at once: the provider answers a repeated key with the
    first result, and B claims the row with a compare-and-set. Returns how many rows were
    completed.
    """
    with read_transaction(database) as session:
        work = [
            (txn, get_payment(session, txn.payment_id))
            for txn in pending_transactions(session, older_than)[:limit]
        ]
    done = 0
    for txn, payment in work:
        try:
            result = call_provider(database, payment.method, txn.kind, charge_request(payment, txn))
        except ProviderUnavailableProblem:
            continue
        with database.transaction() as session:
            done += finish(session, txn.id, result)
    return done
