"""Payments follow a customer merge, and what payments export and erase about a person.

On a merge, B's payments and gift cards are re-pointed to A, and B's store credit moves
to A's account in the same currency through both ledgers (a ``merge_out`` entry on B, a
``merge_in`` entry on A), so each balance stays the sum of its entries. Undo moves the
credit back, at most what A still has of it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mercato.merges import (
    CustomerMerged,
    CustomerMergeUndone,
    merge_ids,
    move_rows,
    restore_rows,
    table_of,
)
from mercato.money import from_minor
from mercato.payments import balances
from mercato.payments.models import (
    GiftCard,
    Payment,
    PaymentTransaction,
    Refund,
    StoreCreditAccount,
    StoreCreditTransaction,
)
from mercato.personal_data import DomainPrivacy, Subject, record

MERGE_OUT = "merge_out"
MERGE_IN = "merge_in"
_MOVED_TABLES: tuple[Any, ...] = (Payment, GiftCard)


def on_merged(session: Session, event: CustomerMerged) -> None:
    merge_id, from_id, into_id = merge_ids(event)
    for model in _MOVED_TABLES:
        move_rows(session, table_of(model), merge_id, from_id, into_id)
    for account in balances.store_credit_accounts(session, from_id):
        if account.balance_minor <= 0 or _already(session, account.id, merge_id, MERGE_OUT):
            continue
        amount = account.balance_minor
        balances.debit_store_credit(
            session,
            from_id,
            account.currency,
            amount,
            payment_id=None,
            reference=merge_id,
            field="from",
            kind=MERGE_OUT,
            reason="profiles merged",
        )
        balances.credit_store(
            session,
            into_id,
            account.currency,
            from_minor(amount, account.currency),
            "profiles merged",
            merge_id,
            kind=MERGE_IN,
        )


def on_merge_undone(session: Session, event: CustomerMergeUndone) -> None:
    merge_id, from_id, into_id = merge_ids(event)
    for model in _MOVED_TABLES:
        restore_rows(session, table_of(model), merge_id)
    moved_in = session.execute(
        select(StoreCreditTransaction.currency, StoreCreditTransaction.amount_minor)
        .join(StoreCreditAccount, StoreCreditAccount.id == StoreCreditTransaction.account_id)
        .where(
            StoreCreditAccount.customer_id == into_id,
            StoreCreditTransaction.kind == MERGE_IN,
            StoreCreditTransaction.reference == merge_id,
        )
    ).all()
    for currency, minor in moved_in:
        account_id = balances._account_id(session, into_id, currency)
        if account_id is None or _already(session, account_id, merge_id, MERGE_OUT):
            continue
        available = session.get_one(StoreCreditAccount, account_id).balance_minor
        amount = min(int(minor), available)
        if amount <= 0:
            continue
        balances.debit_store_credit(
            session,
            into_id,
            currency,
            amount,
            payment_id=None,
            reference=merge_id,
            field="merge",
            kind=MERGE_OUT,
            reason="merge undone",
        )
        balances.credit_store(
            session,
            from_id,
            currency,
            from_minor(amount, currency),
            "merge undone",
            merge_id,
            kind=MERGE_IN,
        )


def _already(session: Session, account_id: int, merge_id: str, kind: str) -> bool:
    return (
        session.scalar(
            select(StoreCreditTransaction.id).where(
                StoreCreditTransaction.account_id == account_id,
                StoreCreditTransaction.kind == kind,
                StoreCreditTransaction.reference == merge_id,
            )
        )
        is not None
    )



# --- privacy ---------------------------------------------------------------------------


def _export(session: Session, subject: Subject) -> dict[str, Any]:
    ids = subject.customer_ids
    payments = list(
        session.scalars(select(Payment).where(Payment.customer_id.in_(ids)).order_by(Payment.id))
    )
    payment_ids = [p.id for p in payments]
    refunds = (
        list(
            session.scalars(
                select(Refund).where(Refund.payment_id.in_(payment_ids)).order_by(Refund.id)
            )
        )
        if payment_ids
        else []
    )
    accounts = list(
        session.scalars(select(StoreCreditAccount).where(StoreCreditAccount.customer_id.in_(ids)))
    )
    credit_entries = (
        list(
            session.scalars(
                select(StoreCreditTransaction)
                .where(StoreCreditTransaction.account_id.in_([a.id for a in accounts]))
                .order_by(StoreCreditTransaction.id)
            )
        )
        if accounts
        else []
    )
    cards = list(session.scalars(select(GiftCard).where(GiftCard.customer_id.in_(ids))))
    return {
        "payments": [record(p, exclude={"client_secret", "card_token"}) for p in payments],
        "transactions": [
            record(t)
            for t in session.scalars(
                select(PaymentTransaction)
                .where(PaymentTransaction.payment_id.in_(payment_ids))
                .order_by(PaymentTransaction.id)
            )
        ]
        if payment_ids
        else [],
        "refunds": [record(r) for r in refunds],
        "store_credit_accounts": [record(a) for a in accounts],
        "store_credit_transactions": [record(e) for e in credit_entries],
        # The code itself stays secret: it spends the card.
        "gift_cards": [record(c, exclude={"code_hash"}) for c in cards],
    }


PRIVACY = DomainPrivacy("payments", export=_export)
