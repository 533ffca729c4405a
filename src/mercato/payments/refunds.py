"""Refunds of one payment or of everything paid for a reference, split across its tenders.

Transaction A reserves every part with a conditional UPDATE
(``refunded + refund_pending + charged_back + :amount <= captured``) and writes the
refunds with ``pending`` ledger rows; balance tenders are completed right there. The
providers are then called with no transaction open and transaction B completes each row
(:mod:`mercato.payments.pending_operations`).

**Refunding a split tender** (:func:`split_refund`): money tenders (cards, cash, cash on
delivery) are refunded before balance tenders (gift card, store credit), and within each
group the most recently charged tender first; no tender gets more than it still has
captured and not refunded, and a refund larger than the total refundable is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.auth.service import audit
from mercato.db import Database, utcnow
from mercato.errors import Conflict, NotFound, UnprocessableState, ValidationProblem
from mercato.money import check_precision, from_minor, to_minor
from mercato.payments.balance_tenders import credit_back
from mercato.payments.balances import checked_amount
from mercato.payments.models import (
    BALANCE_METHODS,
    Payment,
    PaymentTransaction,
    Refund,
    TxnKind,
    TxnStatus,
    refundable_minor,
)
from mercato.payments.pending_operations import call_provider, charge_request, finish
from mercato.payments.problems import PaymentDeclined, ProviderUnavailableProblem
from mercato.payments.providers import Outcome, ProviderResult, refund_last_methods
from mercato.payments.reading import get_payment, get_refunds, payments_for_reference
from mercato.payments.records import (
    VOIDED_OR_VOIDING,
    add_transaction,
    money_text,
    new_provider_key,
    read_transaction,
    refund_fits,
    update_payments,
    write_transaction,
)
from mercato.payments.request_keys import remember, replayed, request_key_for

# --- splitting a refund over tenders --------------------------------------------------------------


@dataclass(frozen=True)
class RefundSource:
    """What one tender can still give back, and how recently it was charged."""

    payment_id: int
    refundable_minor: int
    balance_tender: bool
    charged_at: datetime | None


def refund_order(sources: Sequence[RefundSource]) -> list[RefundSource]:
    """Money tenders before balance tenders; within each, the most recently charged first."""
    return sorted(
        sources,
        key=lambda s: (
            s.balance_tender,
            -(s.charged_at.timestamp() if s.charged_at else 0.0),
            -s.payment_id,
        ),
    )


def split_refund(amount_minor: int, sources: Sequence[RefundSource]) -> list[tuple[int, int]]:
    """``(payment_id, minor)`` parts that sum to ``amount_minor``; none exceeds its tender's
    refundable amount. ValueError when the tenders cannot cover it."""
    if amount_minor <= 0:
        raise ValueError("a refund must be greater than zero")
    left = amount_minor
    parts = []
    for source in refund_order(sources):
        if left == 0:
            break
        take = min(left, source.refundable_minor)
        if take > 0:
            parts.append((source.payment_id, take))
            left -= take
    if left:
        raise ValueError("the refund exceeds what was captured and not yet refunded")
    return parts


def allocate_refund(
    amount: Decimal, currency: str, sources: Sequence[RefundSource]
) -> list[tuple[int, Decimal]]:
    """:func:`split_refund` in the currency's unit: ``(payment_id, amount)`` parts."""
    minor = to_minor(check_precision(amount, currency), currency)
    return [(pid, from_minor(part, currency)) for pid, part in split_refund(minor, sources)]


# --- the use cases --------------------------------------------------------------------------------


def refund(
    database: Database,
    payment_id: int,
    amount: Decimal,
    *,
    reason: str | None = None,
    actor: Principal | None = None,
    request_key: str | None = None,
    request_id: str | None = None,
) -> Refund:
    """Refund ``amount`` of one payment; more than it has captured and not refunded is a 422.

    A balance tender is refunded to its gift card or store credit at once; other methods
    through their provider (A / provider / B, see the module notes). A refusal by the
    provider is a 402 after the failed refund is recorded.
    """
    who = actor or Principal.system("payments")
    rk = request_key_for(
        f"payments.refund.{payment_id}", who, request_key, {"amount": str(amount), "reason": reason}
    )
    with write_transaction(database, request_id) as session:
        payment = get_payment(session, payment_id)
        replay = replayed(session, rk)
        if replay is not None:
            refunds = get_refunds(session, replay["refund_ids"])
        else:
            minor = checked_amount(amount, payment.currency, "body.amount")
            refunds = _begin_refunds(session, [(payment, minor)], reason, who, split=False)
            remember(session, rk, {"refund_ids": [r.id for r in refunds]})
    done = _drive_refunds(database, refunds, request_id)[0]
    if done.status == TxnStatus.FAILED.value:
        raise PaymentDeclined(
            done.failure_message or f"the provider refused the refund ({done.failure_code})",
            extra={"provider_code": done.failure_code, "refund_id": done.id},
        )
    return done


def refund_reference(
    database: Database,
    reference: str,
    amount: Decimal,
    *,
    reason: str | None = None,
    actor: Principal | None = None,
    request_key: str | None = None,
    request_id: str | None = None,
) -> list[Refund]:
    """Refund ``amount`` of everything paid for ``reference``, split over its tenders by
    :func:`split_refund`. Returns one refund per tender touched, each ``succeeded``,
    ``failed`` (refused by its provider) or ``pending`` (provider unreachable; reconciled
    later)."""
    who = actor or Principal.system("payments")
    rk = request_key_for(
        f"payments.refund.{reference}", who, request_key, {"amount": str(amount), "reason": reason}
    )
    with write_transaction(database, request_id) as session:
        replay = replayed(session, rk)
        if replay is not None:
            refunds = get_refunds(session, replay["refund_ids"])
        else:
            parts = _split_for(session, reference, amount)
            refunds = _begin_refunds(session, parts, reason, who, split=True)
            remember(session, rk, {"refund_ids": [r.id for r in refunds]})
    return _drive_refunds(database, refunds, request_id)


def _split_for(session: Session, reference: str, amount: Decimal) -> list[tuple[Payment, int]]:
    payments = payments_for_reference(session, reference)
    if not payments:
        raise NotFound(f"no payments for {reference}")
    currencies = {p.currency for p in payments}
    if len(currencies) != 1:
        raise UnprocessableState(f"{reference} was paid in several currencies; refund each payment")
    currency = currencies.pop()
    minor = checked_amount(amount, currency, "body.amount")
    last = BALANCE_METHODS | refund_last_methods()
    sources = [
        RefundSource(p.id, refundable_minor(p), p.method in last, p.captured_at) for p in payments
    ]
    try:
        parts = split_refund(minor, sources)
    except ValueError as exc:
        available = money_text(sum(s.refundable_minor for s in sources), currency)
        raise ValidationProblem.field(
            "body.amount", f"{exc} ({available} {currency} refundable)"
        ) from exc
    by_id = {p.id: p for p in payments}
    return [(by_id[pid], part) for pid, part in parts]


# --- transaction A --------------------------------------------------------------------------------


def _reserve_refund(session: Session, payment: Payment, minor: int, *, split: bool) -> None:
    reserved = session.execute(
        update_payments()
        .where(
            Payment.id == payment.id,
            Payment.status.not_in(VOIDED_OR_VOIDING),
            refund_fits(minor),
        )
        .values(refund_pending_minor=Payment.refund_pending_minor + minor, updated_at=utcnow())
        .returning(Payment.id)
    ).one_or_none()
    if reserved is not None:
        return
    if split:
        # The split was computed from amounts another refund changed since: retry.
        raise Conflict(
            f"the payments of {payment.reference} changed meanwhile; retry the refund",
            code="concurrent-refund",
        )
    fresh = get_payment(session, payment.id)
    raise ValidationProblem.field(
        "body.amount",
        f"exceeds what payment {payment.id} can refund "
        f"({money_text(refundable_minor(fresh), payment.currency)} {payment.currency})",
    )


def _begin_refunds(
    session: Session,
    parts: Sequence[tuple[Payment, int]],
    reason: str | None,
    actor: Principal,
    *,
    split: bool,
) -> list[Refund]:
    """Transaction A: reserve every part (all or none), record refunds and pending rows.

    Balance tenders are completed here as well: their "provider" is this database.
    """
    refunds = []
    for payment, minor in parts:
        _reserve_refund(session, payment, minor, split=split)
        refunds.append(_open_refund(session, payment, minor, reason, actor))
    audit(
        session,
        actor,
        "payment.refund_requested",
        "payment_reference",
        parts[0][0].reference if parts else None,
        {"refunds": {str(p.id): money_text(m, p.currency) for p, m in parts}, "reason": reason},
    )
    return refunds


def _open_refund(
    session: Session, payment: Payment, minor: int, reason: str | None, actor: Principal
) -> Refund:
    """The refund and its pending ledger row; a balance tender's is completed at once."""
    refund_row = Refund(
        payment_id=payment.id,
        reference=payment.reference,
        method=payment.method,
        currency=payment.currency,
        amount_minor=minor,
        status=TxnStatus.PENDING.value,
        reason=reason,
        created_at=utcnow(),
    )
    session.add(refund_row)
    session.flush()
    txn = add_transaction(
        session,
        payment,
        TxnKind.REFUND,
        TxnStatus.PENDING,
        minor,
        provider_key=new_provider_key("refund"),
        refund_id=refund_row.id,
        actor=actor,
    )
    session.flush()
    if payment.method in BALANCE_METHODS:
        credit_back(session, payment, minor, "refund", actor)
        done = ProviderResult(
            Outcome.SUCCEEDED, payment.provider_reference, f"{payment.method}_refund_{txn.id}"
        )
        finish(session, txn.id, done)
    return refund_row


# --- the providers, then transaction B ------------------------------------------------------------


def _drive_refunds(
    database: Database, refunds: Sequence[Refund], request_id: str | None
) -> list[Refund]:
    """Provider calls for the pending refunds (no transaction open), then B for each."""
    ids = [r.id for r in refunds]
    with read_transaction(database) as session:
        pending = [
            (txn, get_payment(session, txn.payment_id))
            for txn in session.scalars(
                select(PaymentTransaction).where(
                    PaymentTransaction.refund_id.in_(ids),
                    PaymentTransaction.status == TxnStatus.PENDING.value,
                )
            )
        ]
    for txn, payment in pending:
        try:
            result = call_provider(database, payment.method, "refund", charge_request(payment, txn))
        except ProviderUnavailableProblem:
            continue  # stays pending, amount reserved, until reconcile() completes it
        with write_transaction(database, request_id) as session:
            finish(session, txn.id, result)
    with read_transaction(database) as session:
        return get_refunds(session, ids)
