"""The points ledger: every change of a balance, with its expiring lots.

**The ledger.** Every change of a balance is one UPDATE of the account row that returns the
new balance, plus one ledger entry carrying it (earn, redeem, refund, reverse, expire,
adjust). So for every account ``balance`` = the sum of its entries;
:func:`mercato.loyalty.accounts.verify` proves it. A redemption is the conditional
``UPDATE ... WHERE balance >= :points``: two redemptions racing for the last points cannot
both win, the database serialises the row and re-checks the condition. Only a return of
points already spent can take a balance below zero (the debt is paid back by the next points
earned); nothing can spend it.

**Expiry, first in first out.** Credits make *lots* that expire ``expiry_months`` after
they were earned; every debit consumes the lots that expire first. The balance UPDATE
comes first in every change and locks the account row until commit, so the lot
bookkeeping that follows is serialised per customer (on SQLite the whole write
transaction is). For every account the lots' ``remaining`` add up to the balance when it
is positive, to zero otherwise (:func:`~mercato.loyalty.accounts.verify` checks this too).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.auth.service import audit
from mercato.db import utcnow
from mercato.errors import Conflict, ValidationProblem
from mercato.events import publish
from mercato.loyalty import grants
from mercato.loyalty._common import SYSTEM, Kind, _require_customer
from mercato.loyalty.config import Config, get_config
from mercato.loyalty.event_types import (
    PointsAdjusted,
    PointsEarned,
    PointsExpired,
    PointsFacts,
    PointsRedeemed,
    PointsRefunded,
    PointsReversed,
)
from mercato.loyalty.models import Account, Entry, Lot, OrderPoints
from mercato.loyalty.schemas import MAX_POINTS
from mercato.loyalty.tiers import _evaluate_tier


class InsufficientPoints(Conflict):
    code = "insufficient-points"
    title = "Not enough points"


# --- the one primitive that changes a balance ---------------------------------------------


@dataclass(frozen=True)
class Posting:
    """One change of one balance and what it is for (written on its entry)."""

    customer_id: int
    kind: Kind
    points: int  # signed
    reference_type: str | None = None
    reference_id: str | None = None
    order_id: int | None = None
    channel_id: int | None = None
    reason: str | None = None


def _ensure_account(session: Session, customer_id: int, now: datetime) -> None:
    maker = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(
        maker(Account)
        .values(customer_id=customer_id, balance=0, created_at=now, updated_at=now)
        .on_conflict_do_nothing(index_elements=["customer_id"])
    )


def _post(
    session: Session,
    actor: Principal,
    posting: Posting,
    *,
    now: datetime,
    guarded: bool = False,
    expires_at: datetime | None = None,
) -> Entry | None:
    """Apply one posting; None (nothing written) when ``guarded`` and the balance is short.

    The UPDATE comes first: it locks the account row, which serialises the lot changes
    that follow for this customer.
    """
    statement = update(Account).where(Account.customer_id == posting.customer_id)
    if guarded:
        statement = statement.where(Account.balance >= -posting.points)
    else:
        _ensure_account(session, posting.customer_id, now)
    balance = session.scalar(
        statement.values(balance=Account.balance + posting.points, updated_at=now)
        .returning(Account.balance)
        .execution_options(synchronize_session=False)
    )
    if balance is None:
        return None
    entry = Entry(
        customer_id=posting.customer_id,
        kind=posting.kind.value,
        points=posting.points,
        balance_after=balance,
        reference_type=posting.reference_type,
        reference_id=posting.reference_id,
        order_id=posting.order_id,
        channel_id=posting.channel_id,
        actor_type=actor.kind,
        actor_id=None if actor.id is None else str(actor.id),
        reason=posting.reason,
        created_at=now,
    )
    session.add(entry)
    session.flush()
    if posting.points > 0:
        _add_lot(session, entry, posting.order_id, now, expires_at)
    else:
        _consume_lots(session, posting.customer_id, -posting.points, posting.order_id)
    return entry


def _add_lot(
    session: Session,
    entry: Entry,
    order_id: int | None,
    now: datetime,
    expires_at: datetime | None,
) -> None:
    # A negative balance before this credit was a debt: it is paid back first.
    remaining = max(0, min(entry.points, entry.balance_after))
    session.execute(
        insert(Lot).values(
            customer_id=entry.customer_id,
            entry_id=entry.id,
            order_id=order_id,
            points=entry.points,
            remaining=remaining,
            earned_at=now,
            expires_at=expires_at,
        )
    )


def _consume_lots(
    session: Session, customer_id: int, points: int, order_id: int | None = None
) -> None:
    """Take ``points`` from the lots that expire first (an order's own lots first when given)."""
    first = [Lot.expires_at.is_(None), Lot.expires_at, Lot.id]  # never-expiring lots last
    if order_id is not None:
        first.insert(0, case((Lot.order_id == order_id, 0), else_=1))
    lots = session.execute(
        select(Lot.id, Lot.remaining)
        .where(Lot.customer_id == customer_id, Lot.remaining > 0)
        .order_by(*first)
    ).all()
    changes = []
    left = points
    for lot_id, remaining in lots:
        if left <= 0:
            break
        taken = min(left, remaining)
        changes.append({"id": lot_id, "remaining": remaining - taken})
        left -= taken
    if changes:
        session.execute(update(Lot), changes)


def _entry_facts(entry: Entry) -> dict[str, Any]:
    """The fields every points ledger event carries (:class:`PointsFacts`)."""
    return {
        "customer_id": entry.customer_id,
        "entry_id": entry.id,
        "kind": entry.kind,
        "points": entry.points,
        "balance": entry.balance_after,
        "reference_type": entry.reference_type,
        "reference_id": entry.reference_id,
        "order_id": entry.order_id,
        "channel_id": entry.channel_id,
    }


def _event(session: Session, event_type: type[PointsFacts], entry: Entry) -> None:
    publish(session, event_type(**_entry_facts(entry)))


def check_points(points: int, field: str, *, allow_negative: bool = False) -> None:
    if points == 0 or (points < 0 and not allow_negative) or abs(points) > MAX_POINTS:
        expected = "a non-zero whole number" if allow_negative else "a positive whole number"
        raise ValidationProblem.field(field, f"{expected} of points up to {MAX_POINTS}")


def _shortage(session: Session, customer_id: int, points: int, field: str) -> InsufficientPoints:
    account = session.get(Account, customer_id, populate_existing=True)
    balance = 0 if account is None else account.balance
    return InsufficientPoints(
        f"{field}: {points} points asked, the customer has {max(0, balance)}",
        extra={"requested": points, "available": max(0, balance)},
    )


# --- use cases: earn, redeem, refund, reverse, adjust ---------------------------------------


def earn(
    session: Session,
    actor: Principal,
    customer_id: int,
    points: int,
    *,
    reference_type: str,
    reference_id: str | None,
    order_id: int | None = None,
    channel_id: int | None = None,
    reason: str | None = None,
    now: datetime | None = None,
) -> Entry:
    """Credit points for a purchase (they count towards tiers and expire as configured)."""
    check_points(points, "points")
    _require_customer(session, customer_id)
    posting = Posting(
        customer_id, Kind.EARN, points, reference_type, reference_id, order_id, channel_id, reason
    )
    return _earn(session, actor, posting, now or utcnow(), get_config(session))


def _earn(
    session: Session, actor: Principal, posting: Posting, at: datetime, config: Config | None
) -> Entry:
    expires = config.expires_at(at) if config else None
    entry = _post(session, actor, posting, now=at, expires_at=expires)
    assert entry is not None  # an unguarded credit always applies
    publish(session, PointsEarned(**_entry_facts(entry), expires_at=expires))
    _evaluate_tier(session, posting.customer_id, at, config)
    return entry


def redeem(
    session: Session,
    actor: Principal,
    customer_id: int,
    points: int,
    *,
    reference_type: str,
    reference_id: str | None,
    channel_id: int | None = None,
    field: str = "body.points",
    now: datetime | None = None,
) -> Entry:
    """Spend points: one conditional UPDATE; 409 ``insufficient-points`` when short."""
    check_points(points, field)
    at = now or utcnow()
    posting = Posting(
        customer_id, Kind.REDEEM, -points, reference_type, reference_id, None, channel_id
    )
    entry = _post(session, actor, posting, now=at, guarded=True)
    if entry is None:
        _require_customer(session, customer_id)
        raise _shortage(session, customer_id, points, field)
    _event(session, PointsRedeemed, entry)
    return entry


def refund_points(
    session: Session,
    actor: Principal,
    customer_id: int,
    points: int,
    *,
    reference_type: str,
    reference_id: str | None,
    now: datetime | None = None,
) -> Entry:
    """Give back points of a redemption that was refunded or voided.

    They make a new lot with a full expiry period: the shopper did not get to use them.
    """
    check_points(points, "points")
    at = now or utcnow()
    config = get_config(session)
    posting = Posting(customer_id, Kind.REFUND, points, reference_type, reference_id)
    entry = _post(
        session, actor, posting, now=at, expires_at=config.expires_at(at) if config else None
    )
    assert entry is not None
    _event(session, PointsRefunded, entry)
    return entry


def adjust(
    session: Session,
    actor: Principal,
    customer_id: int,
    points: int,
    reason: str,
    *,
    reference: str | None = None,
    now: datetime | None = None,
) -> Entry:
    """A staff correction or goodwill gesture (audited, with its reason). A debit never
    overdraws; a credit is money, granted within the actor's limits (``loyalty.grants``)."""
    check_points(points, "body.points", allow_negative=True)
    _require_customer(session, customer_id)
    at = now or utcnow()
    if points > 0:
        grants.check_grant(session, actor, points, at)
    config = get_config(session)
    posting = Posting(customer_id, Kind.ADJUST, points, "adjustment", reference, None, None, reason)
    expires = config.expires_at(at) if config and points > 0 else None
    entry = _post(session, actor, posting, now=at, guarded=points < 0, expires_at=expires)
    if entry is None:
        raise _shortage(session, customer_id, -points, "body.points")
    audit(
        session,
        actor,
        "loyalty.points_adjusted",
        "loyalty_account",
        customer_id,
        {"points": points, "balance": entry.balance_after, "reference": reference},
        note=reason,
    )
    _event(session, PointsAdjusted, entry)
    return entry


def _reverse(
    session: Session, row: OrderPoints, points: int, now: datetime, config: Config | None
) -> Entry:
    posting = Posting(
        row.customer_id,
        Kind.REVERSE,
        -points,
        "order",
        row.number,
        row.order_id,
        row.channel_id,
        "returned",
    )
    entry = _post(session, SYSTEM, posting, now=now)
    assert entry is not None
    _event(session, PointsReversed, entry)
    _evaluate_tier(session, row.customer_id, now, config)
    return entry


# --- expiry ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpiryRun:
    accounts: int
    points: int


def expire_points(session: Session, *, now: datetime | None = None) -> ExpiryRun:
    """Expire every lot whose time has come. Safe in several processes at once: each account
    is locked before its lots are read, so a lot is expired once."""
    at = now or utcnow()
    due = session.scalars(
        select(Lot.customer_id)
        .where(Lot.expires_at <= at, Lot.remaining > 0)
        .distinct()
        .order_by(Lot.customer_id)
    ).all()
    accounts = points = 0
    for customer_id in due:
        expired = _expire_account(session, customer_id, at)
        if expired:
            accounts += 1
            points += expired
    return ExpiryRun(accounts, points)


def _expire_account(session: Session, customer_id: int, now: datetime) -> int:
    session.execute(
        update(Account)
        .where(Account.customer_id == customer_id)
        .values(updated_at=now)
        .execution_options(synchronize_session=False)
    )
    due = int(
        session.scalar(
            select(func.coalesce(func.sum(Lot.remaining), 0)).where(
                Lot.customer_id == customer_id, Lot.expires_at <= now, Lot.remaining > 0
            )
        )
        or 0
    )
    if due <= 0:
        return 0
    # The due lots expire first, so the FIFO debit consumes exactly them.
    posting = Posting(customer_id, Kind.EXPIRE, -due, "expiry", None, reason="points expired")
    entry = _post(session, SYSTEM, posting, now=now)
    assert entry is not None
    _event(session, PointsExpired, entry)
    return due
