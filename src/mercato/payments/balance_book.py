"""One ledger mechanism for every balance Mercato keeps: gift cards and store credit.

A :class:`BalanceBook` names a table whose rows hold a balance (``id``, ``currency``,
``balance_minor``, ``updated_at``) and its ledger table (signed ``amount_minor`` and
``balance_after_minor`` per row, the column naming the holder and a free-text column).
Every change of a balance is one UPDATE that returns the new balance, plus one ledger row
carrying that balance, in the caller's transaction:

* :meth:`BalanceBook.debit` is conditional (``... WHERE balance_minor >= :amount``): two
  transactions racing for the last euro of a card cannot both win, because the database
  serialises the row and re-checks the condition; the loser changes nothing.
* :meth:`BalanceBook.credit` adds to the balance unconditionally.

So for every holder ``balance`` = the sum of its ledger (:meth:`BalanceBook.mismatches`
proves it) and never drops below zero (also a CHECK constraint on both tables).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Row, func, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from mercato.auth.principal import Principal
from mercato.db import utcnow
from mercato.payments.models import (
    GiftCard,
    GiftCardTransaction,
    StoreCreditAccount,
    StoreCreditTransaction,
)
from mercato.payments.records import actor_fields

Holder = TypeVar("Holder", GiftCard, StoreCreditAccount)
Entry = TypeVar("Entry", GiftCardTransaction, StoreCreditTransaction)


@dataclass(frozen=True)
class Movement:
    """Why a balance changes, as its ledger row records it."""

    kind: str  # issue, redeem, void, refund, credit, adjust...
    payment_id: int | None = None
    reference: str | None = None
    actor: Principal | None = None
    text: str | None = None  # typed by staff: the ledger's note or reason


@dataclass(frozen=True)
class Moved(Generic[Entry]):
    """A balance changed: its new ledger row and the extra columns the UPDATE returned."""

    entry: Entry
    also: tuple[Any, ...] = ()


@dataclass(frozen=True)
class BalanceMismatch:
    kind: str  # "gift_card" | "store_credit"
    id: int
    balance_minor: int
    ledger_minor: int


@dataclass(frozen=True)
class BalanceBook(Generic[Holder, Entry]):
    """A table of balances and its ledger; see the module notes for the guarantees."""

    name: str
    holders: type[Holder]
    entries: type[Entry]
    entry_holder: InstrumentedAttribute[int]  # the ledger's column naming the holder
    entry_text: InstrumentedAttribute[str | None]  # the ledger's free-text column

    def debit(
        self,
        session: Session,
        minor: int,
        movement: Movement,
        *where: ColumnElement[bool],
        also: Sequence[InstrumentedAttribute[Any]] = (),
    ) -> Moved[Entry] | None:
        """Take ``minor`` from the holder matching ``where`` if its balance covers it.

        None, with nothing changed, when no holder matches or its balance is too small.
        ``also`` are further columns of the holder to return from the same UPDATE.
        """
        row = session.execute(
            update(self.holders)
            .where(*where, self.holders.balance_minor >= minor)
            .values(balance_minor=self.holders.balance_minor - minor, updated_at=utcnow())
            .returning(*self._returned(also))
        ).one_or_none()
        return None if row is None else self._entered(session, row, -minor, movement)

    def credit(
        self,
        session: Session,
        minor: int,
        movement: Movement,
        *where: ColumnElement[bool],
        also: Sequence[InstrumentedAttribute[Any]] = (),
    ) -> Moved[Entry]:
        """Add ``minor`` to the one holder matching ``where`` (which must exist)."""
        row = session.execute(
            update(self.holders)
            .where(*where)
            .values(balance_minor=self.holders.balance_minor + minor, updated_at=utcnow())
            .returning(*self._returned(also))
        ).one()
        return self._entered(session, row, minor, movement)

    def enter(
        self,
        session: Session,
        holder_id: int,
        currency: str,
        minor: int,
        balance_after: int,
        movement: Movement,
    ) -> Entry:
        """Write one ledger row; only for a balance set without :meth:`debit` or
        :meth:`credit` (a gift card issued with its initial balance)."""
        entry = self.entries(
            **{self.entry_holder.key: holder_id, self.entry_text.key: movement.text},
            kind=movement.kind,
            currency=currency,
            amount_minor=minor,
            balance_after_minor=balance_after,
            payment_id=movement.payment_id,
            reference=movement.reference,
            created_at=utcnow(),
            **actor_fields(movement.actor),
        )
        session.add(entry)
        session.flush()
        return entry

    def mismatches(self, session: Session) -> list[BalanceMismatch]:
        """Every holder whose balance differs from the sum of its ledger, or is negative."""
        totals = (
            select(
                self.entry_holder.label("id"),
                func.sum(self.entries.amount_minor).label("total"),
            )
            .group_by(self.entry_holder)
            .subquery()
        )
        rows = session.execute(
            select(
                self.holders.id,
                self.holders.balance_minor,
                func.coalesce(totals.c.total, 0),
            ).outerjoin(totals, totals.c.id == self.holders.id)
        ).all()
        return [
            BalanceMismatch(self.name, i, int(b), int(total))
            for i, b, total in rows
            if int(b) != int(total) or int(b) < 0
        ]

    def _returned(self, also: Sequence[InstrumentedAttribute[Any]]) -> list[Any]:
        return [self.holders.id, self.holders.currency, self.holders.balance_minor, *also]

    def _entered(
        self, session: Session, row: Row[Any], minor: int, movement: Movement
    ) -> Moved[Entry]:
        holder_id, currency, balance, *also = tuple(row)
        entry = self.enter(session, int(holder_id), str(currency), minor, int(balance), movement)
        return Moved(entry, tuple(also))


GIFT_CARDS = BalanceBook(
    "gift_card",
    GiftCard,
    GiftCardTransaction,
    entry_holder=GiftCardTransaction.gift_card_id,
    entry_text=GiftCardTransaction.note,
)
STORE_CREDIT = BalanceBook(
    "store_credit",
    StoreCreditAccount,
    StoreCreditTransaction,
    entry_holder=StoreCreditTransaction.account_id,
    entry_text=StoreCreditTransaction.reason,
)
