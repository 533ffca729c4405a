"""Gift cards and store credit: balances kept by Mercato, spent as tenders.

Both keep their balance the same way, through one ledger mechanism
(:mod:`mercato.payments.balance_book`): every change is one conditional UPDATE
(``... WHERE balance >= :amount`` for a debit) that returns the new balance, plus one
ledger row carrying that balance, in the caller's transaction. Two checkouts racing for the
last euro of a card cannot both win: the database serialises the row and re-checks the
condition. So, for every card and account, ``balance`` = the sum of its ledger (``verify``
proves it) and never drops below zero (also a CHECK constraint).

Gift card codes are 16 characters from an alphabet without look-alikes (0/O, 1/I), about
80 bits: shown once when issued, stored only as a keyed hash and the last four. Unknown,
disabled and expired codes all get the same answer, "not usable", so an answer never
tells a guesser which codes exist.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.auth.service import audit
from mercato.customers import service as customers
from mercato.db import get_or_404, utcnow
from mercato.errors import Conflict, FieldError, Problem, ValidationProblem
from mercato.events import publish
from mercato.idempotency import claim, lookup, request_fingerprint, scope_for
from mercato.money import check_precision, from_minor, to_minor, validate_currency
from mercato.pagination import Page, decode_id_cursor, page_of
from mercato.payments import keys
from mercato.payments.balance_book import (
    GIFT_CARDS,
    STORE_CREDIT,
    BalanceMismatch,
    Movement,
)
from mercato.payments.event_types import (
    GiftCardDisabled,
    GiftCardEnabled,
    GiftCardIssued,
    StoreCreditChanged,
)
from mercato.payments.models import (
    GiftCard,
    GiftCardTransaction,
    StoreCreditAccount,
    StoreCreditTransaction,
)

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 16
# Large enough for any real amount in any currency, small enough for a 64-bit minor unit.
MAX_AMOUNT = Decimal(10) ** 12


class GiftCardNotUsable(Problem):
    status = 422
    code = "gift-card-not-usable"
    title = "The gift card is not usable"


class InsufficientBalance(Conflict):
    title = "Not enough balance"


class Ledger:
    ISSUE = "issue"
    REDEEM = "redeem"
    VOID = "void"
    REFUND = "refund"
    CREDIT = "credit"
    ADJUST = "adjust"


# --- validation shared by both balances -------------------------------------------------------


def checked_currency(currency: str, field: str) -> str:
    try:
        return validate_currency(currency)
    except ValueError as exc:
        raise ValidationProblem.field(field, str(exc)) from exc


def checked_amount(
    amount: Decimal, currency: str, field: str, *, allow_negative: bool = False
) -> int:
    """The amount in minor units; 422 naming ``field`` when it is not a valid amount."""
    value = Decimal(amount)
    if value.is_finite() and abs(value) >= MAX_AMOUNT:
        # Checked first: quantizing a huge value overflows Decimal's precision.
        raise ValidationProblem.field(field, f"must be less than {MAX_AMOUNT}")
    try:
        exact = check_precision(value, currency)
    except ValueError as exc:
        raise ValidationProblem.field(field, str(exc)) from exc
    if exact == 0 or (exact < 0 and not allow_negative):
        reason = "must not be zero" if allow_negative else "must be greater than zero"
        raise ValidationProblem.field(field, reason)
    return to_minor(exact, currency)


# --- gift cards -------------------------------------------------------------------------------


def normalize_code(code: str) -> str:
    return "".join(ch for ch in code.upper() if ch.isalnum())


def new_code() -> str:
    raw = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
    return "-".join(raw[i : i + 4] for i in range(0, CODE_LENGTH, 4))


def masked_code(card: GiftCard) -> str:
    return f"XXXX-XXXX-XXXX-{card.last4}"


@dataclass(frozen=True)
class IssuedGiftCard:
    card: GiftCard
    # The full code: returned to whoever issued the card, never stored in clear.
    code: str
    replayed: bool = False


def issue_gift_card(
    session: Session,
    actor: Principal,
    *,
    currency: str,
    amount: Decimal,
    expires_at: datetime | None = None,
    customer_id: int | None = None,
    note: str | None = None,
    request_key: str | None = None,
) -> IssuedGiftCard:
    """Issue a card with an initial balance. With ``request_key`` a retry gets the same card
    (and code) back instead of a second card."""
    currency = checked_currency(currency, "body.currency")
    minor = checked_amount(amount, currency, "body.amount")
    _check_expiry(expires_at)
    payload = {
        "currency": currency,
        "amount": str(amount),
        "expires_at": expires_at.isoformat() if expires_at else None,
        "customer_id": customer_id,
        "note": note,
    }
    scope = scope_for("payments.gift_card.issue", actor)
    fingerprint = request_fingerprint(payload)
    if request_key is not None:
        stored = lookup(session, scope, request_key, fingerprint)
        if stored is not None:
            return _issued_before(session, stored.response)
    if customer_id is not None:
        customers.get_customer(session, customer_id)
    code = new_code()
    card = _new_card(session, code, currency, minor, expires_at, customer_id, note)
    GIFT_CARDS.enter(
        session, card.id, currency, minor, minor, Movement(Ledger.ISSUE, actor=actor, text=note)
    )
    _announce_issue(session, actor, card, minor)
    if request_key is not None:
        # The code is kept sealed only so that a retried request can be answered again.
        record = claim(session, scope, request_key, fingerprint)
        record.status_code = 201
        record.response = {"gift_card_id": card.id, "sealed_code": keys.seal(code)}
    return IssuedGiftCard(card, code)


def _check_expiry(expires_at: datetime | None) -> None:
    if expires_at is not None and expires_at.tzinfo is None:
        raise ValidationProblem.field("body.expires_at", "needs a time zone")
    if expires_at is not None and expires_at <= utcnow():
        raise ValidationProblem.field("body.expires_at", "must be in the future")


def _issued_before(session: Session, response: dict[str, Any]) -> IssuedGiftCard:
    """The card a request with the same key issued, with its code unsealed."""
    card = get_gift_card(session, int(response["gift_card_id"]))
    code = keys.unseal(str(response["sealed_code"])) or masked_code(card)
    return IssuedGiftCard(card, code, replayed=True)


def _new_card(
    session: Session,
    code: str,
    currency: str,
    minor: int,
    expires_at: datetime | None,
    customer_id: int | None,
    note: str | None,
) -> GiftCard:
    now = utcnow()
    card = GiftCard(
        code_hash=keys.code_hash(normalize_code(code)),
        last4=code[-4:],
        currency=currency,
        initial_minor=minor,
        balance_minor=minor,
        status="active",
        expires_at=expires_at,
        customer_id=customer_id,
        note=note,
        created_at=now,
        updated_at=now,
    )
    session.add(card)
    session.flush()
    return card


def _announce_issue(session: Session, actor: Principal, card: GiftCard, minor: int) -> None:
    changes = {
        "currency": card.currency,
        "amount": str(from_minor(minor, card.currency)),
        "last4": card.last4,
    }
    audit(session, actor, "gift_card.issued", "gift_card", card.id, changes)
    publish(
        session,
        GiftCardIssued(
            gift_card_id=card.id,
            currency=card.currency,
            amount=from_minor(minor, card.currency),
            last4=card.last4,
            customer_id=card.customer_id,
        ),
    )


def get_gift_card(session: Session, gift_card_id: int) -> GiftCard:
    return get_or_404(session, GiftCard, gift_card_id, f"gift card {gift_card_id}", fresh=True)


def list_gift_cards(
    session: Session,
    *,
    status: str | None,
    customer_id: int | None,
    last4: str | None,
    cursor: str | None,
    limit: int,
) -> Page[GiftCard]:
    query = select(GiftCard).order_by(GiftCard.id.desc())
    if status is not None:
        query = query.where(GiftCard.status == status)
    if customer_id is not None:
        query = query.where(GiftCard.customer_id == customer_id)
    if last4 is not None:
        query = query.where(GiftCard.last4 == last4.upper())
    after = decode_id_cursor(cursor)
    if after is not None:
        query = query.where(GiftCard.id < after)
    return page_of(list(session.scalars(query.limit(limit + 1))), limit, key=lambda c: c.id)


def gift_card_transactions(session: Session, gift_card_id: int) -> list[GiftCardTransaction]:
    return list(
        session.scalars(
            select(GiftCardTransaction)
            .where(GiftCardTransaction.gift_card_id == gift_card_id)
            .order_by(GiftCardTransaction.id)
        )
    )


def set_gift_card_status(
    session: Session, actor: Principal, gift_card_id: int, status: str
) -> GiftCard:
    """Disable a card (lost, fraud) or enable it again; its balance is untouched."""
    card = get_gift_card(session, gift_card_id)
    before = card.status
    if before != status:
        session.execute(
            update(GiftCard)
            .where(GiftCard.id == gift_card_id)
            .values(status=status, updated_at=utcnow())
        )
        kind = GiftCardDisabled if status == "disabled" else GiftCardEnabled
        audit(session, actor, kind.TYPE, "gift_card", gift_card_id, {"status": [before, status]})
        publish(session, kind(gift_card_id=gift_card_id))
    return get_gift_card(session, gift_card_id)


def _usable_now() -> Any:
    return or_(GiftCard.expires_at.is_(None), GiftCard.expires_at > utcnow())


def find_usable_gift_card(session: Session, code: str, field: str = "body.code") -> GiftCard:
    """The card for ``code`` if it can pay; the same 422 for unknown, disabled and expired."""
    card = session.scalar(
        select(GiftCard).where(
            GiftCard.code_hash == keys.code_hash(normalize_code(code)),
            GiftCard.status == "active",
            _usable_now(),
        )
    )
    if card is None:
        raise _not_usable(field)
    return card


def _not_usable(field: str) -> GiftCardNotUsable:
    reason = "this gift card is not usable"
    return GiftCardNotUsable(f"{field}: {reason}", errors=[FieldError(field, reason)])


def redeem_gift_card(
    session: Session,
    code: str,
    currency: str,
    minor: int,
    *,
    payment_id: int,
    reference: str,
    field: str,
) -> tuple[int, str]:
    """Take ``minor`` from the card, or raise without changing anything; the card's id and
    last four characters."""
    moved = GIFT_CARDS.debit(
        session,
        minor,
        Movement(Ledger.REDEEM, payment_id=payment_id, reference=reference),
        GiftCard.code_hash == keys.code_hash(normalize_code(code)),
        GiftCard.status == "active",
        GiftCard.currency == currency,
        _usable_now(),
        also=[GiftCard.last4],
    )
    if moved is None:
        raise _redeem_refusal(session, code, currency, minor, field)
    (last4,) = moved.also
    return int(moved.entry.gift_card_id), str(last4)


def _redeem_refusal(session: Session, code: str, currency: str, minor: int, field: str) -> Problem:
    card = find_usable_gift_card(session, code, field)
    if card.currency != currency:
        return ValidationProblem.field(
            field, f"the gift card is in {card.currency}, not {currency}"
        )
    available = str(from_minor(card.balance_minor, currency))
    return InsufficientBalance(
        f"the gift card has {available} {currency} left, {from_minor(minor, currency)} asked",
        code="insufficient-gift-card-balance",
        extra={"available": available, "currency": currency},
    )


def credit_gift_card(
    session: Session,
    gift_card_id: int,
    minor: int,
    kind: str,
    *,
    payment_id: int | None,
    reference: str | None,
    actor: Principal | None = None,
) -> int:
    """Put money back on a card (void or refund of a redemption); returns the new balance."""
    movement = Movement(kind, payment_id=payment_id, reference=reference, actor=actor)
    moved = GIFT_CARDS.credit(session, minor, movement, GiftCard.id == gift_card_id)
    return int(moved.entry.balance_after_minor)


# --- store credit -----------------------------------------------------------------------------


def _ensure_account(session: Session, customer_id: int, currency: str) -> None:
    now = utcnow()
    dialect = session.get_bind().dialect.name
    maker = pg_insert if dialect == "postgresql" else sqlite_insert
    session.execute(
        maker(StoreCreditAccount)
        .values(
            customer_id=customer_id,
            currency=currency,
            balance_minor=0,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["customer_id", "currency"])
    )


def _account_of(customer_id: int, currency: str) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    """SQL: the customer's store credit account in ``currency``."""
    return StoreCreditAccount.customer_id == customer_id, StoreCreditAccount.currency == currency


def _account_id(session: Session, customer_id: int, currency: str) -> int | None:
    return session.scalar(select(StoreCreditAccount.id).where(*_account_of(customer_id, currency)))


def credit_store(
    session: Session,
    customer_id: int,
    currency: str,
    amount: Decimal,
    reason: str | None,
    reference: str | None,
    *,
    actor: Principal | None = None,
    kind: str = Ledger.CREDIT,
    payment_id: int | None = None,
) -> StoreCreditTransaction:
    """Add store credit (a refund "to store credit", a goodwill gesture)."""
    currency = checked_currency(currency, "body.currency")
    minor = checked_amount(amount, currency, "body.amount")
    customers.get_customer(session, customer_id)
    _ensure_account(session, customer_id, currency)
    movement = Movement(kind, payment_id=payment_id, reference=reference, actor=actor, text=reason)
    moved = STORE_CREDIT.credit(session, minor, movement, *_account_of(customer_id, currency))
    return _store_credit_changed(session, customer_id, moved.entry)


def credit_store_account(
    session: Session,
    account_id: int,
    minor: int,
    kind: str,
    *,
    payment_id: int | None,
    reference: str | None,
    actor: Principal | None = None,
) -> int:
    """Put money back on an account (void or refund of a store credit tender)."""
    movement = Movement(kind, payment_id=payment_id, reference=reference, actor=actor)
    moved = STORE_CREDIT.credit(
        session,
        minor,
        movement,
        StoreCreditAccount.id == account_id,
        also=[StoreCreditAccount.customer_id],
    )
    (customer_id,) = moved.also
    _store_credit_changed(session, int(customer_id), moved.entry)
    return int(moved.entry.balance_after_minor)


def debit_store_credit(
    session: Session,
    customer_id: int,
    currency: str,
    minor: int,
    *,
    payment_id: int | None,
    reference: str | None,
    field: str,
    kind: str = Ledger.REDEEM,
    reason: str | None = None,
    actor: Principal | None = None,
) -> StoreCreditTransaction:
    movement = Movement(kind, payment_id=payment_id, reference=reference, actor=actor, text=reason)
    moved = STORE_CREDIT.debit(session, minor, movement, *_account_of(customer_id, currency))
    if moved is None:
        raise _store_credit_refusal(session, customer_id, currency, minor, field)
    return _store_credit_changed(session, customer_id, moved.entry)


def _store_credit_refusal(
    session: Session, customer_id: int, currency: str, minor: int, field: str
) -> InsufficientBalance:
    account_id = _account_id(session, customer_id, currency)
    balance = 0
    if account_id is not None:
        balance = session.get_one(StoreCreditAccount, account_id).balance_minor
    available = str(from_minor(balance, currency))
    return InsufficientBalance(
        f"{field}: the customer has {available} {currency} of store credit, "
        f"{from_minor(minor, currency)} asked",
        code="insufficient-store-credit",
        extra={"available": available, "currency": currency},
    )


def _store_credit_changed(
    session: Session, customer_id: int, entry: StoreCreditTransaction
) -> StoreCreditTransaction:
    """Publish ``store_credit.changed`` for a new ledger row; returns the row."""
    currency, minor, balance_after = entry.currency, entry.amount_minor, entry.balance_after_minor
    publish(
        session,
        StoreCreditChanged(
            customer_id=customer_id,
            currency=currency,
            kind=entry.kind,
            amount=from_minor(minor, currency),
            balance=from_minor(balance_after, currency),
            reference=entry.reference,
        ),
    )
    return entry


def adjust_store_credit(
    session: Session,
    actor: Principal,
    customer_id: int,
    currency: str,
    amount: Decimal,
    reason: str,
) -> StoreCreditTransaction:
    """A manual correction by staff: positive adds credit, negative takes it (never below 0)."""
    currency = checked_currency(currency, "body.currency")
    minor = checked_amount(amount, currency, "body.amount", allow_negative=True)
    customers.get_customer(session, customer_id)
    if minor > 0:
        entry = credit_store(
            session, customer_id, currency, amount, reason, None, actor=actor, kind=Ledger.ADJUST
        )
    else:
        entry = debit_store_credit(
            session,
            customer_id,
            currency,
            -minor,
            payment_id=None,
            reference=None,
            field="body.amount",
            kind=Ledger.ADJUST,
            reason=reason,
            actor=actor,
        )
    audit(
        session,
        actor,
        "store_credit.adjusted",
        "customer",
        customer_id,
        {"currency": currency, "amount": str(from_minor(minor, currency)), "reason": reason},
    )
    return entry


def store_credit_accounts(session: Session, customer_id: int) -> list[StoreCreditAccount]:
    return list(
        session.scalars(
            select(StoreCreditAccount)
            .where(StoreCreditAccount.customer_id == customer_id)
            .order_by(StoreCreditAccount.currency)
            .execution_options(populate_existing=True)
        )
    )


def store_credit_balance(session: Session, customer_id: int, currency: str) -> Decimal:
    account_id = _account_id(session, customer_id, currency)
    if account_id is None:
        return from_minor(0, currency)
    return session.get_one(StoreCreditAccount, account_id, populate_existing=True).balance


def store_credit_transactions(
    session: Session, customer_id: int, *, cursor: str | None, limit: int
) -> Page[StoreCreditTransaction]:
    query = (
        select(StoreCreditTransaction)
        .join(StoreCreditAccount, StoreCreditAccount.id == StoreCreditTransaction.account_id)
        .where(StoreCreditAccount.customer_id == customer_id)
        .order_by(StoreCreditTransaction.id.desc())
    )
    after = decode_id_cursor(cursor)
    if after is not None:
        query = query.where(StoreCreditTransaction.id < after)
    return page_of(list(session.scalars(query.limit(limit + 1))), limit, key=lambda t: t.id)


# --- verification -----------------------------------------------------------------------------


def verify(session: Session) -> list[BalanceMismatch]:
    """Every gift card and store credit account against the sum of its ledger."""
    return GIFT_CARDS.mismatches(session) + STORE_CREDIT.mismatches(session)
