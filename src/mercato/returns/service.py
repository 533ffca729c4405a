"""Returns and exchanges for orders of every channel, received at any location that takes
returns, paid back to the original tenders or as store credit.

**Requesting.** A return names order lines, units and a reason. It is checked against the
policy that applies to the order (the most specific of channel+country, channel, country,
default: :func:`policy_for`), its window (days after the order was last fulfilled,
delivered or picked up, else after it was placed), its non-returnable categories (a
product's category or any ancestor), and the units delivered and not yet returned or
promised to another open return. The policy is copied onto the return: later edits of the
policy do not change a return already requested.

**Receiving.** One conditional UPDATE moves the return from ``approved`` to ``received``
and ``inspected`` (two concurrent receipts: one wins, the other gets a 409), the order's
lines count the units back (``orders.record_returned``, itself conditional), each line's
refund is priced (see :mod:`mercato.returns.amounts`) and stock is posted at the receiving
location: ``restock`` is a ``return`` movement; ``damaged`` is a ``return`` movement
followed by a ``damage`` movement, so the ledger shows the unit coming back and being
written off; ``to_vendor`` units never enter the stock ledger.

**Settling** (:func:`settle`) is split around every payment provider call, as checkout
is; no transaction is open during a call:

A. claim the return (``settlement`` none/failed -> pending, conditional), price the
   exchange, create the replacement order with its stock holds and, if it costs more than
   the returned units' credit, a pending payment for the difference; record the attempt;
B. ask the provider to authorise the difference (exchanges that cost more only);
C. record the answer: the replacement order is placed and confirmed, or fails and releases
   its holds (the return stays ``inspected``, nothing is refunded, 402);
D. refund the money through ``payments.refund_reference`` (split over the order's tenders
   by the payments domain: money tenders first, then gift cards and store credit);
E. record the result: the return is ``refunded`` (``closed`` when nothing was due) and
   ``return.refunded`` is published; a refusal leaves it ``inspected`` with a failed
   attempt, ready for another.

A crash between the steps leaves a ``pending`` attempt; the next :func:`settle` of that
return resumes it with the same keys (the payment of the difference has its authorisation
key, the refund its request key), so nothing is charged or refunded twice. Refunds as
store credit are written in step E itself. Store roles settle only returns received at
their own locations.

**Exchanges.** An exchanged line is replaced by the same number of units of another variant
of the same product, at its current price in the order's price list and currency, with the
order's tax rate for that line; the returned units' share (no restocking fee) is a credit
spent on the replacement order (shown there as a discount, so its grand total is what the
customer still pays). The replacement ships like the original lines (same address, same
delivery mode), its stock is held at the channel's locations in priority order, and
shipping is free. A cheaper replacement refunds the rest; a dearer one needs a tender in
the settle request. A difference needing 3-D Secure is not supported (it counts as
declined). An exchange cannot start after part of the return was refunded as money.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mercato import idempotency
from mercato.auth.principal import Principal
from mercato.auth.service import audit
from mercato.catalog import service as catalog
from mercato.channels import service as channels
from mercato.db import Database, utcnow
from mercato.errors import (
    Conflict,
    FieldError,
    NotFound,
    Problem,
    UnprocessableState,
    ValidationProblem,
)
from mercato.events import Event, publish
from mercato.inventory import service as inventory
from mercato.locations import service as locations
from mercato.loyalty import service as loyalty
from mercato.money import ZERO, quantize
from mercato.orders import service as orders
from mercato.orders.models import Order, OrderLine
from mercato.orders.state import OrderStatus
from mercato.pagination import Page, decode_cursor, page_of
from mercato.payments import service as payments
from mercato.payments.models import Payment, PaymentStatus, Refund
from mercato.pricing import service as pricing
from mercato.returns import amounts
from mercato.returns.models import (
    FulfilmentDate,
    Return,
    ReturnLine,
    ReturnPolicy,
    ReturnSettlement,
    ReturnTransition,
)
from mercato.returns.schemas import PolicyIn, PolicyPatch
from mercato.returns.state import (
    MERCHANT_FAULT,
    OPEN,
    TRANSITIONS,
    Condition,
    Reason,
    RefundMethod,
    ReturnStatus,
    Settlement,
)
from mercato.returns.views import return_json

if TYPE_CHECKING:
    from mercato.locations.models import Location

S = ReturnStatus
DEFAULT_DAYS = 30
HOLD_TTL = timedelta(minutes=15)
# Order events after which the units are with the customer: the window counts from the last.
FULFILMENT_EVENTS = (
    "order.partially_fulfilled",
    "order.fulfilled",
    "order.delivered",
    "order.picked_up",
)
PAID = frozenset(
    {
        PaymentStatus.AUTHORIZED.value,
        PaymentStatus.CAPTURED.value,
        PaymentStatus.PARTIALLY_CAPTURED.value,
    }
)
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


class ReturnNotAllowed(Problem):
    status = 422
    code = "not-returnable"
    title = "These units cannot be returned"


class ReturnWindowExpired(Problem):
    status = 422
    code = "return-window-expired"
    title = "The return window has closed"


class ExceedsReturnable(Problem):
    status = 422
    code = "return-exceeds-returnable"
    title = "More units than can be returned"


class LocationRefusesReturns(Problem):
    status = 422
    code = "location-refuses-returns"
    title = "This location cannot receive the return"


class RefundExceedsCaptured(Problem):
    status = 422
    code = "refund-exceeds-captured"
    title = "The payments cannot refund this much"


def new_return_number() -> str:
    body = "".join(secrets.choice(_ALPHABET) for _ in range(8))
    return f"R{body[:4]}-{body[4:]}"


# --- policies -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EffectivePolicy:
    """The rules that apply to one order (a stored policy, or the built-in default)."""

    id: int | None
    scope: str
    channel_id: int | None
    country: str | None
    days_allowed: int
    non_returnable_category_ids: tuple[int, ...]
    accept_store_returns: bool
    restocking_fee_percent: Decimal
    auto_approve: bool

    def snapshot(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "scope": self.scope,
            "channel_id": self.channel_id,
            "country": self.country,
            "days_allowed": self.days_allowed,
            "non_returnable_category_ids": list(self.non_returnable_category_ids),
            "accept_store_returns": self.accept_store_returns,
            "restocking_fee_percent": str(self.restocking_fee_percent),
            "auto_approve": self.auto_approve,
        }

    @classmethod
    def from_snapshot(cls, data: Mapping[str, Any]) -> EffectivePolicy:
        return cls(
            id=data.get("id"),
            scope=str(data["scope"]),
            channel_id=data.get("channel_id"),
            country=data.get("country"),
            days_allowed=int(data["days_allowed"]),
            non_returnable_category_ids=tuple(data.get("non_returnable_category_ids") or ()),
            accept_store_returns=bool(data["accept_store_returns"]),
            restocking_fee_percent=Decimal(str(data["restocking_fee_percent"])),
            auto_approve=bool(data["auto_approve"]),
        )

    @classmethod
    def of(cls, policy: ReturnPolicy) -> EffectivePolicy:
        return cls(
            id=policy.id,
            scope=policy.scope,
            channel_id=policy.channel_id,
            country=policy.country,
            days_allowed=policy.days_allowed,
            non_returnable_category_ids=tuple(policy.non_returnable_category_ids or ()),
            accept_store_returns=policy.accept_store_returns,
            restocking_fee_percent=Decimal(policy.restocking_fee_percent).quantize(Decimal("0.01")),
            auto_approve=policy.auto_approve,
        )


DEFAULT_POLICY = EffectivePolicy(
    id=None,
    scope="default",
    channel_id=None,
    country=None,
    days_allowed=DEFAULT_DAYS,
    non_returnable_category_ids=(),
    accept_store_returns=True,
    restocking_fee_percent=Decimal("0.00"),
    auto_approve=True,
)


def policy_scope(channel_id: int | None, country: str | None) -> str:
    channel = "*" if channel_id is None else str(channel_id)
    return f"channel:{channel}|country:{country or '*'}"


def _check_policy_refs(
    session: Session, channel_id: int | None, category_ids: Sequence[int] | None
) -> None:
    if channel_id is not None:
        try:
            channels.get_channel(session, channel_id)
        except NotFound as exc:
            raise ValidationProblem.field(
                "body.channel_id", f"unknown channel {channel_id}"
            ) from exc
    if category_ids:
        catalog.require_categories(
            session, list(category_ids), field="body.non_returnable_category_ids"
        )


def _policy_changes(policy: ReturnPolicy) -> dict[str, Any]:
    return EffectivePolicy.of(policy).snapshot()


def create_policy(session: Session, actor: Principal, data: PolicyIn) -> ReturnPolicy:
    """A policy for a channel, a country, both or (neither) the default; 409 if one exists."""
    _check_policy_refs(session, data.channel_id, data.non_returnable_category_ids)
    scope = policy_scope(data.channel_id, data.country)
    now = utcnow()
    policy = ReturnPolicy(
        scope=scope,
        channel_id=data.channel_id,
        country=data.country,
        days_allowed=data.days_allowed,
        non_returnable_category_ids=sorted(set(data.non_returnable_category_ids)),
        accept_store_returns=data.accept_store_returns,
        restocking_fee_percent=data.restocking_fee_percent,
        auto_approve=data.auto_approve,
        created_at=now,
        updated_at=now,
    )
    session.add(policy)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:
        raise Conflict(
            f"a return policy for {scope} exists; change it instead",
            code="return-policy-exists",
        ) from exc
    audit(
        session, actor, "return_policy.created", "return_policy", policy.id, _policy_changes(policy)
    )
    return policy


def update_policy(
    session: Session, actor: Principal, policy_id: int, patch: PolicyPatch
) -> ReturnPolicy:
    policy = get_policy(session, policy_id)
    changes = patch.model_dump(exclude_unset=True)
    for name in ("days_allowed", "accept_store_returns", "restocking_fee_percent", "auto_approve"):
        if name in changes and changes[name] is None:
            raise ValidationProblem.field(f"body.{name}", "may not be null")
    _check_policy_refs(session, None, changes.get("non_returnable_category_ids"))
    if "non_returnable_category_ids" in changes:
        changes["non_returnable_category_ids"] = sorted(
            set(changes["non_returnable_category_ids"] or ())
        )
    for name, value in changes.items():
        setattr(policy, name, value)
    policy.updated_at = utcnow()
    session.flush()
    audit(
        session,
        actor,
        "return_policy.updated",
        "return_policy",
        policy.id,
        {k: str(v) if isinstance(v, Decimal) else v for k, v in changes.items()},
    )
    return policy


def delete_policy(session: Session, actor: Principal, policy_id: int) -> None:
    policy = get_policy(session, policy_id)
    audit(
        session, actor, "return_policy.deleted", "return_policy", policy.id, _policy_changes(policy)
    )
    session.delete(policy)
    session.flush()


def get_policy(session: Session, policy_id: int) -> ReturnPolicy:
    policy = session.get(ReturnPolicy, policy_id, populate_existing=True)
    if policy is None:
        raise NotFound(f"return policy {policy_id} not found")
    return policy


def list_policies(session: Session) -> list[ReturnPolicy]:
    return list(session.scalars(select(ReturnPolicy).order_by(ReturnPolicy.id)))


def policy_for(session: Session, channel_id: int | None, country: str | None) -> EffectivePolicy:
    """The most specific policy: channel+country, then channel, then country, then default."""
    scopes = [
        policy_scope(channel_id, country),
        policy_scope(channel_id, None),
        policy_scope(None, country),
        policy_scope(None, None),
    ]
    found = {
        p.scope: p
        for p in session.scalars(select(ReturnPolicy).where(ReturnPolicy.scope.in_(set(scopes))))
    }
    for scope in scopes:
        if scope in found:
            return EffectivePolicy.of(found[scope])
    return DEFAULT_POLICY


def order_country(session: Session, order: Order) -> str | None:
    """Where the order went (shipping, else billing address), else its channel's country."""
    for address in (order.shipping_address, order.billing_address):
        if address and address.get("country"):
            return str(address["country"]).upper()
    return channels.get_channel(session, order.channel_id).country


# --- the return window --------------------------------------------------------------------------


def record_fulfilment(session: Session, event: Event) -> None:
    """Keep the latest fulfilment, delivery or pickup time of an order (event subscriber).

    Delivered at least once and possibly out of order: the upsert keeps the latest time.
    """
    table = FulfilmentDate.__table__
    postgres = session.get_bind().dialect.name == "postgresql"
    stmt = (pg_insert if postgres else sqlite_insert)(FulfilmentDate).values(
        order_id=int(event.data["order_id"]), fulfilled_at=event.time
    )
    # GREATEST on PostgreSQL, the two-argument scalar MAX on SQLite.
    latest = (func.greatest if postgres else func.max)(
        table.c.fulfilled_at, stmt.excluded.fulfilled_at
    )
    session.execute(
        stmt.on_conflict_do_update(index_elements=["order_id"], set_={"fulfilled_at": latest})
    )


def window_start(session: Session, order: Order) -> datetime:
    """When the return window opened: the last fulfilment event, else the order date."""
    found = session.get(FulfilmentDate, order.id, populate_existing=True)
    if found is not None:
        return found.fulfilled_at
    return order.placed_at or order.created_at


def _check_window(session: Session, order: Order, policy: EffectivePolicy, now: datetime) -> None:
    deadline = window_start(session, order) + timedelta(days=policy.days_allowed)
    if now > deadline:
        raise ReturnWindowExpired(
            f"order {order.number} could be returned until {deadline.isoformat()} "
            f"({policy.days_allowed} days)",
            extra={
                "deadline": deadline.isoformat(),
                "days_allowed": policy.days_allowed,
                "policy": policy.scope,
            },
        )


# --- requesting a return ------------------------------------------------------------------------


@dataclass(frozen=True)
class LineRequest:
    order_line_id: int
    quantity: int
    reason: Reason
    note: str | None = None
    exchange_variant_id: int | None = None


@dataclass(frozen=True)
class ReturnRequest:
    lines: Sequence[LineRequest]
    note: str | None = None
    refund_method: RefundMethod = RefundMethod.ORIGINAL_PAYMENT


def get_return(session: Session, return_id: int) -> Return:
    ret = session.get(Return, return_id, populate_existing=True)
    if ret is None:
        raise NotFound(f"return {return_id} not found")
    return ret


def get_by_number(session: Session, number: str) -> Return:
    ret = session.scalar(
        select(Return).where(Return.number == number).execution_options(populate_existing=True)
    )
    if ret is None:
        raise NotFound(f"return {number} not found")
    return ret


def return_lines(session: Session, return_id: int) -> list[ReturnLine]:
    return list(
        session.scalars(
            select(ReturnLine)
            .where(ReturnLine.return_id == return_id)
            .order_by(ReturnLine.line_no)
            .execution_options(populate_existing=True)
        )
    )


def timeline(session: Session, return_id: int) -> list[ReturnTransition]:
    return list(
        session.scalars(
            select(ReturnTransition)
            .where(ReturnTransition.return_id == return_id)
            .order_by(ReturnTransition.id)
        )
    )


def settlements(session: Session, return_id: int) -> list[ReturnSettlement]:
    return list(
        session.scalars(
            select(ReturnSettlement)
            .where(ReturnSettlement.return_id == return_id)
            .order_by(ReturnSettlement.id)
            .execution_options(populate_existing=True)
        )
    )


def order_for_customer(session: Session, customer_id: int, number: str) -> Order:
    """The customer's own order; anyone else's is answered as if it did not exist."""
    try:
        order = orders.get_by_number(session, number)
    except NotFound:
        order = None
    if order is None or order.customer_id != customer_id:
        raise NotFound(f"order {number} not found")
    return order


def customer_return(session: Session, customer_id: int, number: str) -> Return:
    ret = get_by_number(session, number)
    if ret.customer_id != customer_id:
        raise NotFound(f"return {number} not found")
    return ret


def _open_quantities(session: Session, order_id: int) -> dict[int, int]:
    """Units of each order line promised to returns not yet received."""
    rows = session.execute(
        select(ReturnLine.order_line_id, func.sum(ReturnLine.quantity))
        .join(Return, Return.id == ReturnLine.return_id)
        .where(Return.order_id == order_id, Return.status.in_([s.value for s in OPEN]))
        .group_by(ReturnLine.order_line_id)
    ).all()
    return {int(line_id): int(units) for line_id, units in rows}


def _check_quantities(
    session: Session, order: Order, lines: Mapping[int, OrderLine], wanted: Sequence[LineRequest]
) -> None:
    errors: list[FieldError] = []
    missing: list[FieldError] = []
    seen: set[int] = set()
    returnable = orders.returnable_quantities(session, order.id)
    promised = _open_quantities(session, order.id)
    for i, x in enumerate(wanted):
        at = f"body.lines[{i}]"
        line = lines.get(x.order_line_id)
        if line is None or x.order_line_id in seen:
            why = "twice in one return" if line else f"not a line of order {order.number}"
            missing.append(FieldError(f"{at}.order_line_id", why))
            continue
        seen.add(x.order_line_id)
        left = returnable.get(line.id, 0) - promised.get(line.id, 0)
        if x.quantity > line.quantity:
            errors.append(FieldError(f"{at}.quantity", f"only {line.quantity} bought"))
        elif x.quantity > left:
            errors.append(
                FieldError(
                    f"{at}.quantity",
                    f"only {max(left, 0)} delivered and not yet returned or on an open return",
                )
            )
    if missing:
        raise ValidationProblem(missing[0]["reason"], errors=missing)
    if errors:
        raise ExceedsReturnable(f"{errors[0]['field']}: {errors[0]['reason']}", errors=errors)


def _check_categories(
    order_lines: Mapping[int, OrderLine],
    wanted: Sequence[LineRequest],
    infos: Mapping[int, catalog.VariantInfo],
    policy: EffectivePolicy,
) -> None:
    blocked = set(policy.non_returnable_category_ids)
    errors = []
    for i, x in enumerate(wanted):
        info = infos.get(order_lines[x.order_line_id].variant_id)
        if info is not None and blocked & info.category_ids:
            errors.append(
                FieldError(
                    f"body.lines[{i}].order_line_id",
                    f"{info.sku} is in a category that cannot be returned ({policy.scope})",
                )
            )
    if errors:
        raise ReturnNotAllowed(errors[0]["reason"], errors=errors)


def _check_exchanges(
    session: Session,
    order: Order,
    order_lines: Mapping[int, OrderLine],
    wanted: Sequence[LineRequest],
    infos: Mapping[int, catalog.VariantInfo],
) -> None:
    exchanged = [(i, x) for i, x in enumerate(wanted) if x.exchange_variant_id is not None]
    if not exchanged:
        return
    prices = _replacement_prices(session, order, [x.exchange_variant_id or 0 for _, x in exchanged])
    errors = []
    for i, x in exchanged:
        at = f"body.lines[{i}].exchange_variant_id"
        old = infos.get(order_lines[x.order_line_id].variant_id)
        new = infos.get(x.exchange_variant_id or 0)
        if new is None or not new.sellable:
            errors.append(FieldError(at, "unknown or not sellable variant"))
        elif old is not None and new.id == old.id:
            errors.append(FieldError(at, "the same variant: return it or choose another one"))
        elif old is not None and new.product_id != old.product_id:
            errors.append(FieldError(at, "an exchange is for another variant of the same product"))
        elif new.id not in prices:
            errors.append(FieldError(at, "no price in the order's price list and currency"))
    if errors:
        raise ValidationProblem(f"{errors[0]['field']}: {errors[0]['reason']}", errors=errors)


def _replacement_prices(
    session: Session, order: Order, variant_ids: Sequence[int]
) -> dict[int, pricing.ResolvedPrice]:
    if order.price_list is None:
        return {}
    return pricing.resolve_prices(
        session,
        variant_ids,
        price_list=order.price_list,
        currency=order.currency,
        country=(order.shipping_address or {}).get("country"),
        customer_groups=loyalty.pricing_groups(session, order.customer_id),
    )


def request_return(
    session: Session,
    actor: Principal,
    order: Order,
    request: ReturnRequest,
    *,
    origin_channel_id: int | None = None,
) -> Return:
    """Open a return for units of ``order``; approved at once when the policy says so."""
    now = utcnow()
    policy = policy_for(session, order.channel_id, order_country(session, order))
    _check_window(session, order, policy, now)
    order_lines = {x.id: x for x in orders.order_lines(session, order.id)}
    _check_quantities(session, order, order_lines, request.lines)
    variant_ids = [order_lines[x.order_line_id].variant_id for x in request.lines]
    variant_ids += [x.exchange_variant_id for x in request.lines if x.exchange_variant_id]
    infos = catalog.variant_infos(session, variant_ids)
    _check_categories(order_lines, request.lines, infos, policy)
    _check_exchanges(session, order, order_lines, request.lines, infos)
    if request.refund_method is RefundMethod.STORE_CREDIT and order.customer_id is None:
        raise ValidationProblem.field("body.refund_method", "store credit needs a customer account")
    ret = _insert(session, order, request, policy, origin_channel_id, now)
    lines = _insert_lines(session, ret, order_lines, request.lines)
    steps = [(S.REQUESTED, "requested")]
    if policy.auto_approve:
        steps.append((S.APPROVED, f"approved by the return policy ({policy.scope})"))
    _record(session, actor, ret.id, None, steps, now)
    if actor.kind == "staff":
        audit(
            session,
            actor,
            "return.requested",
            "return",
            ret.id,
            {
                "order": order.number,
                "lines": {str(x.order_line_id): x.quantity for x in request.lines},
            },
        )
    for status, _ in steps:
        _publish(session, ret, lines, status)
    return ret


def _insert(
    session: Session,
    order: Order,
    request: ReturnRequest,
    policy: EffectivePolicy,
    origin_channel_id: int | None,
    now: datetime,
) -> Return:
    ret = Return(
        number=new_return_number(),
        order_id=order.id,
        order_number=order.number,
        channel_id=order.channel_id,
        origin_channel_id=origin_channel_id,
        customer_id=order.customer_id,
        currency=order.currency,
        status=(S.APPROVED if policy.auto_approve else S.REQUESTED).value,
        refund_method=request.refund_method.value,
        policy=policy.snapshot(),
        shipping_refund=ZERO,
        refunded_total=ZERO,
        exchange_charge=ZERO,
        settlement=Settlement.NONE.value,
        note=request.note,
        created_at=now,
        updated_at=now,
    )
    session.add(ret)
    session.flush()
    return ret


def _insert_lines(
    session: Session,
    ret: Return,
    order_lines: Mapping[int, OrderLine],
    wanted: Sequence[LineRequest],
) -> list[ReturnLine]:
    rows = [
        {
            "return_id": ret.id,
            "line_no": n,
            "order_line_id": x.order_line_id,
            "variant_id": order_lines[x.order_line_id].variant_id,
            "sku": order_lines[x.order_line_id].sku,
            "name": order_lines[x.order_line_id].name,
            "quantity": x.quantity,
            "reason": x.reason.value,
            "note": x.note,
            "exchange_variant_id": x.exchange_variant_id,
        }
        for n, x in enumerate(wanted, start=1)
    ]
    made = session.scalars(
        insert(ReturnLine)
        .values(rows)
        .returning(ReturnLine)
        .execution_options(populate_existing=True)
    ).all()
    return sorted(made, key=lambda x: x.line_no)


# --- status changes -----------------------------------------------------------------------------


def _record(
    session: Session,
    actor: Principal,
    return_id: int,
    current: ReturnStatus | None,
    steps: Sequence[tuple[ReturnStatus, str | None]],
    at: datetime,
) -> None:
    rows = []
    previous = current
    for target, reason in steps:
        rows.append(
            {
                "return_id": return_id,
                "from_status": None if previous is None else previous.value,
                "to_status": target.value,
                "actor_type": actor.kind,
                "actor_id": None if actor.id is None else str(actor.id),
                "reason": reason,
                "at": at,
            }
        )
        previous = target
    session.execute(insert(ReturnTransition), rows)


def _move(
    session: Session,
    actor: Principal,
    return_id: int,
    current: ReturnStatus,
    steps: Sequence[tuple[ReturnStatus, str | None]],
    values: Mapping[str, Any] | None = None,
    *,
    guard: Sequence[Any] = (),
) -> Return:
    """Take legal steps with one conditional UPDATE from ``current``: concurrent changes of
    the same return cannot both win; the loser gets a 409 and nothing changes."""
    position = current
    for target, _ in steps:
        if target not in TRANSITIONS[position]:
            raise UnprocessableState(
                f"return {return_id} cannot go from {position} to {target}",
                code="illegal-transition",
                extra={"from": position.value, "to": target.value},
            )
        position = target
    now = utcnow()
    ret = session.scalars(
        update(Return)
        .where(Return.id == return_id, Return.status == current.value, *guard)
        .values({"status": position.value, "updated_at": now, **(values or {})})
        .returning(Return)
        .execution_options(populate_existing=True, synchronize_session=False)
    ).one_or_none()
    if ret is None:
        found = get_return(session, return_id)
        raise UnprocessableState(
            f"return {found.number} is {found.status}, not {current}; reload it",
            code="return-state-changed",
            extra={"return_status": found.status, "to": position.value},
        )
    _record(session, actor, return_id, current, steps, now)
    return ret


def _step(
    session: Session, actor: Principal, ret: Return, target: ReturnStatus, reason: str | None
) -> Return:
    current = ReturnStatus(ret.status)
    if target not in TRANSITIONS[current]:
        raise UnprocessableState(
            f"return {ret.number} is {current}: it cannot be {target}",
            code="illegal-transition",
            extra={"from": current.value, "to": target.value},
        )
    moved = _move(session, actor, ret.id, current, [(target, reason)])
    audit(session, actor, f"return.{target.value}", "return", ret.id, {"reason": reason})
    _publish(session, moved, return_lines(session, ret.id), target)
    return moved


def approve(session: Session, actor: Principal, return_id: int, reason: str | None) -> Return:
    return _step(session, actor, get_return(session, return_id), S.APPROVED, reason)


def reject(session: Session, actor: Principal, return_id: int, reason: str) -> Return:
    return _step(session, actor, get_return(session, return_id), S.REJECTED, reason)


def cancel(session: Session, actor: Principal, ret: Return, reason: str | None) -> Return:
    """Withdraw a return before anything arrived (the customer or staff)."""
    return _step(session, actor, ret, S.CANCELLED, reason)


def close(session: Session, actor: Principal, return_id: int, reason: str) -> Return:
    """End an inspected return without paying anything (more) out: a staff decision."""
    ret = get_return(session, return_id)
    _require_here(actor, ret)
    if ret.status != S.INSPECTED.value:
        return _step(session, actor, ret, S.CLOSED, reason)  # answers the illegal transition
    moved = _move(
        session,
        actor,
        ret.id,
        S.INSPECTED,
        [(S.CLOSED, reason)],
        {"settlement": Settlement.DONE.value},
        guard=[Return.settlement != Settlement.PENDING.value],
    )
    audit(session, actor, "return.closed", "return", ret.id, {"reason": reason})
    _publish(session, moved, return_lines(session, ret.id), S.CLOSED)
    return moved


def _require_here(actor: Principal, ret: Return) -> None:
    """Store roles finish only the returns that arrived at their own locations."""
    if ret.location_id is not None:
        actor.require_location(ret.location_id)


# --- events -------------------------------------------------------------------------------------


def event_data(ret: Return, lines: Sequence[ReturnLine], status: ReturnStatus) -> dict[str, Any]:
    """``return.<status>``: the return, and per line the variant, units and money.

    A line's ``amount`` is the money (or store credit) that went back for it once the return
    is refunded (what loyalty reverses points on); before that, its credit once received.
    """

    def amount(line: ReturnLine) -> str | None:
        value = line.refund if status in (S.REFUNDED, S.CLOSED) else line.amount
        return None if value is None else str(quantize(value, ret.currency))

    return {
        "return_id": ret.id,
        "number": ret.number,
        "order_id": ret.order_id,
        "order_number": ret.order_number,
        "channel_id": ret.channel_id,
        "customer_id": ret.customer_id,
        "currency": ret.currency,
        "status": status.value,
        "location_id": ret.location_id,
        "refund_method": ret.refund_method,
        "refunded_total": str(quantize(ret.refunded_total, ret.currency)),
        "shipping_refund": str(quantize(ret.shipping_refund, ret.currency)),
        "exchange_order_id": ret.exchange_order_id,
        "lines": [
            {
                "return_line_id": x.id,
                "order_line_id": x.order_line_id,
                "variant_id": x.variant_id,
                "quantity": x.quantity,
                "reason": x.reason,
                "condition": x.condition,
                "amount": amount(x),
            }
            for x in lines
        ],
    }


def _publish(
    session: Session, ret: Return, lines: Sequence[ReturnLine], status: ReturnStatus
) -> None:
    publish(
        session,
        f"return.{status.value}",
        event_data(ret, lines, status),
        aggregate_type="return",
        aggregate_id=ret.id,
    )


# --- receiving and inspecting -------------------------------------------------------------------


@dataclass(frozen=True)
class Inspection:
    return_line_id: int
    condition: Condition
    note: str | None = None


def _receiving_location(
    session: Session, actor: Principal, location_id: int, policy: EffectivePolicy
) -> Location:
    try:
        location = locations.get_location(session, location_id)
    except NotFound as exc:
        raise ValidationProblem.field(
            "body.location_id", f"unknown location {location_id}"
        ) from exc
    actor.require_location(location_id)
    if not (location.can_accept_returns and location.active):
        why = f"{location.code} does not accept returns"
        raise LocationRefusesReturns(why, errors=[FieldError("body.location_id", why)])
    if location.type == "store" and not policy.accept_store_returns:
        why = f"the return policy ({policy.scope}) does not accept returns in stores"
        raise LocationRefusesReturns(
            why, errors=[FieldError("body.location_id", why)], code="store-returns-not-accepted"
        )
    return location


def _match_inspections(
    lines: Sequence[ReturnLine], inspections: Sequence[Inspection]
) -> dict[int, Inspection]:
    ids = {x.id for x in lines}
    found: dict[int, Inspection] = {}
    for i, x in enumerate(inspections):
        if x.return_line_id not in ids or x.return_line_id in found:
            why = "twice" if x.return_line_id in found else "not a line of this return"
            raise ValidationProblem.field(f"body.lines[{i}].return_line_id", why)
        found[x.return_line_id] = x
    missing = sorted(ids - set(found))
    if missing:
        raise ValidationProblem.field("body.lines", f"inspect every line (missing {missing})")
    return found


def receive(
    session: Session,
    actor: Principal,
    return_id: int,
    location_id: int,
    inspections: Sequence[Inspection],
    note: str | None = None,
) -> Return:
    """The units arrived at ``location_id`` and were inspected: price them, post the stock."""
    ret = get_return(session, return_id)
    policy = EffectivePolicy.from_snapshot(ret.policy)
    location = _receiving_location(session, actor, location_id, policy)
    lines = return_lines(session, ret.id)
    found = _match_inspections(lines, inspections)
    if ret.status != S.APPROVED.value:
        raise UnprocessableState(
            f"return {ret.number} is {ret.status}: only an approved return can be received",
            code="illegal-transition" if ret.status != S.INSPECTED.value else "already-received",
            extra={"return_status": ret.status},
        )
    ret = _move(
        session,
        actor,
        ret.id,
        S.APPROVED,
        [(S.RECEIVED, note or f"received at {location.code}"), (S.INSPECTED, "inspected")],
        {"location_id": location_id},
    )
    counted = orders.record_returned(
        session,
        actor,
        ret.order_id,
        {x.order_line_id: x.quantity for x in lines},
        reference=ret.number,
    )
    _price(session, ret, lines, {x.id: x for x in counted}, policy)
    for line in lines:
        line.condition = found[line.id].condition.value
        if found[line.id].note:
            line.note = "\n".join(filter(None, [line.note, found[line.id].note]))
    _post_stock(session, actor, ret, location_id, lines)
    session.flush()
    audit(
        session,
        actor,
        "return.received",
        "return",
        ret.id,
        {"location_id": location_id, "conditions": {str(x.id): x.condition for x in lines}},
    )
    _publish(session, ret, lines, S.RECEIVED)
    _publish(session, ret, lines, S.INSPECTED)
    return ret


def _price(
    session: Session,
    ret: Return,
    lines: Sequence[ReturnLine],
    counted: Mapping[int, OrderLine],
    policy: EffectivePolicy,
) -> None:
    """Each line's share of what was paid (the units just counted back), fee and credit."""
    currency = ret.currency
    for line in lines:
        ordered = counted[line.order_line_id]
        first = ordered.returned_quantity - line.quantity
        line.paid = amounts.unit_slice(
            ordered.total, ordered.quantity, first, line.quantity, currency
        )
        # No fee for the merchant's fault, nor for units the customer wants exchanged.
        charged = Reason(line.reason) not in MERCHANT_FAULT and line.exchange_variant_id is None
        fee_rate = policy.restocking_fee_percent if charged else ZERO
        line.restocking_fee = amounts.restocking_fee(line.paid, fee_rate, currency)
        line.amount = line.paid - line.restocking_fee
        line.refund = line.amount
    ret.shipping_refund = _shipping_refund(session, ret, lines)
    ret.refund_total = sum((x.amount or ZERO for x in lines), ZERO) + ret.shipping_refund


def _shipping_refund(session: Session, ret: Return, lines: Sequence[ReturnLine]) -> Decimal:
    """The shipping paid, when this return brings the last units back for the merchant's fault."""
    if not all(Reason(x.reason) in MERCHANT_FAULT for x in lines):
        return quantize(ZERO, ret.currency)
    order = orders.get_order(session, ret.order_id)
    order_lines = orders.order_lines(session, ret.order_id)
    kept = sum(x.quantity - x.cancelled_quantity - x.returned_quantity for x in order_lines)
    if kept > 0:
        return quantize(ZERO, ret.currency)
    return amounts.shipping_paid(order.grand_total, [x.total for x in order_lines], ret.currency)


def _post_stock(
    session: Session, actor: Principal, ret: Return, location_id: int, lines: Sequence[ReturnLine]
) -> None:
    ctx = inventory.Context(actor, ret.channel_id, "return", ret.number, f"return {ret.number}")
    back = [
        inventory.AdjustmentLine(x.variant_id, x.quantity, inventory.Reason.RETURN)
        for x in lines
        if x.condition in (Condition.RESTOCK.value, Condition.DAMAGED.value)
    ]
    if back:
        inventory.adjust(session, ctx, location_id, back)
    damaged = [
        inventory.AdjustmentLine(x.variant_id, -x.quantity, inventory.Reason.DAMAGE)
        for x in lines
        if x.condition == Condition.DAMAGED.value
    ]
    if damaged:
        written_off = replace(ctx, note=f"return {ret.number}: damaged on receipt")
        inventory.adjust(session, written_off, location_id, damaged)


# --- settling: refund, store credit, exchange -----------------------------------------------


@dataclass(frozen=True)
class SettleRequest:
    method: RefundMethod | None = None
    tenders: Sequence[payments.TenderRequest] = ()
    exchange: bool = True


@dataclass(frozen=True)
class Outcome:
    """What the settle endpoint answers (stored for Idempotency-Key replays)."""

    status_code: int
    body: dict[str, Any]


@dataclass(frozen=True)
class _Attempt:
    id: int
    return_id: int
    number: str
    order_number: str
    customer_id: int | None
    currency: str
    method: RefundMethod
    amount: Decimal
    exchange_order_id: int | None
    charge_payment_ids: tuple[int, ...]
    hold_ids: tuple[int, ...]
    exchange_pending: bool  # the replacement waits for the payment of the difference
    request_key: str
    actor: Principal


@dataclass(frozen=True)
class _Plan:
    method: RefundMethod
    refund: Decimal
    charge: Decimal
    line_refunds: dict[int, Decimal]
    exchange_lines: list[ReturnLine]
    prices: dict[int, pricing.ResolvedPrice]
    credits: list[Decimal]
    credit_used: Decimal


@dataclass(frozen=True)
class _Idem:
    scope: str
    key: str
    fingerprint: str


def settle(
    database: Database,
    actor: Principal,
    return_id: int,
    request: SettleRequest,
    *,
    key: str | None = None,
    payload: Any = None,
    request_id: str | None = None,
) -> Outcome:
    """Pay an inspected return out (see the module notes); must run with no transaction open."""
    idem = None
    if key is not None:
        scope = idempotency.scope_for(f"returns.settle.{return_id}", actor)
        idem = _Idem(scope, key, idempotency.request_fingerprint(payload))
        stored = _stored_answer(database, idem)
        if stored is not None:
            return stored
    attempt = _begin(database, actor, return_id, request, request_id)
    if attempt.exchange_pending:
        declined = _charge_difference(database, attempt, idem, request_id)
        if declined is not None:
            return declined
    refunds = None
    if attempt.method is RefundMethod.ORIGINAL_PAYMENT and attempt.amount > ZERO:
        refunds = _refund_original(database, attempt, request_id)
    return _complete(database, attempt, refunds, idem, request_id)


def _stored_answer(database: Database, idem: _Idem) -> Outcome | None:
    with database.read() as session:
        record = idempotency.record_for(session, idem.scope, idem.key)
        if record is None:
            return None
        if record.request_hash != idem.fingerprint:
            raise ValidationProblem(
                "this Idempotency-Key was used with a different request body",
                code="idempotency-key-reused",
            )
        if record.status_code == idempotency.IN_PROGRESS:
            return None
        return Outcome(record.status_code, dict(record.response or {}))


def _remember(session: Session, idem: _Idem | None, outcome: Outcome) -> None:
    """Store the answer with the effect; a concurrent duplicate that stored first wins."""
    if idem is not None and idempotency.try_claim(session, idem.scope, idem.key, idem.fingerprint):
        idempotency.finish(session, idem.scope, idem.key, outcome.status_code, outcome.body)


def _actor_of(row: ReturnSettlement) -> Principal:
    """The principal that started an attempt: resuming it reuses its payment request keys."""
    return Principal(
        kind=row.actor_type,
        id=None if row.actor_id is None else int(row.actor_id),
        label=row.actor_label,
    )


def _attempt_of(ret: Return, row: ReturnSettlement) -> _Attempt:
    return _Attempt(
        id=row.id,
        return_id=ret.id,
        number=ret.number,
        order_number=ret.order_number,
        customer_id=ret.customer_id,
        currency=ret.currency,
        method=RefundMethod(row.method),
        amount=row.amount,
        exchange_order_id=row.exchange_order_id,
        charge_payment_ids=tuple(row.charge_payment_ids or ()),
        hold_ids=tuple(row.hold_ids or ()),
        exchange_pending=bool(row.charge_payment_ids) and ret.exchange_order_id is None,
        request_key=row.request_key,
        actor=_actor_of(row),
    )


def _pending_attempt(session: Session, ret: Return) -> _Attempt | None:
    row = session.scalar(
        select(ReturnSettlement)
        .where(ReturnSettlement.return_id == ret.id, ReturnSettlement.status == "pending")
        .order_by(ReturnSettlement.id.desc())
        .limit(1)
        .execution_options(populate_existing=True)
    )
    return None if row is None else _attempt_of(ret, row)


def _begin(
    database: Database,
    actor: Principal,
    return_id: int,
    request: SettleRequest,
    request_id: str | None,
) -> _Attempt:
    """Step A: resume the pending attempt, or claim the return and start a new one."""
    with database.transaction() as session:
        session.info["request_id"] = request_id
        ret = get_return(session, return_id)
        _require_here(actor, ret)
        resumed = _pending_attempt(session, ret)
        if resumed is not None:
            return resumed
        _check_settleable(ret)
        lines = return_lines(session, ret.id)
        plan = _plan(session, ret, lines, request)
        _check_plan(session, ret, plan, request)
        claimed = session.execute(
            update(Return)
            .where(
                Return.id == ret.id,
                Return.status == S.INSPECTED.value,
                Return.settlement.in_([Settlement.NONE.value, Settlement.FAILED.value]),
            )
            .values(settlement=Settlement.PENDING.value, updated_at=utcnow())
            .returning(Return.id)
        ).one_or_none()
        if claimed is None:
            # A concurrent settle got there first: continue its attempt (same keys).
            ret = get_return(session, return_id)
            again = _pending_attempt(session, ret)
            if again is None:
                _check_settleable(ret)
                raise Conflict(
                    f"return {ret.number} changed meanwhile; retry", code="return-state-changed"
                )
            return again
        return _start(session, actor, get_return(session, ret.id), lines, plan, request)


def _check_settleable(ret: Return) -> None:
    if ret.status != S.INSPECTED.value:
        raise UnprocessableState(
            f"return {ret.number} is {ret.status}: only an inspected return is paid out",
            code="already-settled"
            if ret.status in (S.REFUNDED, S.CLOSED)
            else "illegal-transition",
            extra={"return_status": ret.status},
        )


def _plan(
    session: Session, ret: Return, lines: Sequence[ReturnLine], request: SettleRequest
) -> _Plan:
    method = request.method or RefundMethod(ret.refund_method)
    exchange_lines = [x for x in lines if x.exchange_variant_id is not None]
    exchanging = (
        request.exchange
        and bool(exchange_lines)
        and ret.exchange_order_id is None
        and ret.refunded_total == ZERO
    )
    due = (ret.refund_total or ZERO) - ret.refunded_total
    if not exchanging:
        return _Plan(method, due, ZERO, {x.id: x.refund or ZERO for x in lines}, [], {}, [], ZERO)
    order = orders.get_order(session, ret.order_id)
    prices = _replacement_prices(
        session, order, [x.exchange_variant_id or 0 for x in lines if x.exchange_variant_id]
    )
    missing = [x.sku for x in exchange_lines if (x.exchange_variant_id or 0) not in prices]
    if missing:
        raise UnprocessableState(
            f"the replacement for {', '.join(missing)} has no price any more; settle with "
            '"exchange": false to refund instead',
            code="exchange-unavailable",
        )
    rates = {x.id: x.tax_rate for x in orders.order_lines(session, ret.order_id)}
    values = [
        amounts.gross_value(
            prices[x.exchange_variant_id or 0].amount,
            x.quantity,
            rates[x.order_line_id],
            order.tax_included,
            ret.currency,
        )
        for x in exchange_lines
    ]
    split = amounts.plan_settlement(
        {x.id: x.amount or ZERO for x in lines if x.exchange_variant_id is None},
        {x.id: x.amount or ZERO for x in exchange_lines},
        values,
        ret.shipping_refund,
        ret.currency,
    )
    return _Plan(
        method,
        split.refund,
        split.charge,
        split.line_refunds,
        exchange_lines,
        prices,
        split.credits,
        split.credit_used,
    )


def _check_plan(session: Session, ret: Return, plan: _Plan, request: SettleRequest) -> None:
    """Everything that would make a step after A fail for the request's own sake: 4xx now."""
    money = f"{quantize(plan.charge, ret.currency)} {ret.currency}"
    if plan.charge > ZERO and not request.tenders:
        raise ValidationProblem.field(
            "body.payments", f"the replacement costs {money} more: add a payment for it"
        )
    if plan.charge == ZERO and request.tenders:
        raise ValidationProblem.field("body.payments", "there is no price difference to pay")
    if plan.refund <= ZERO:
        return
    if plan.method is RefundMethod.STORE_CREDIT and ret.customer_id is None:
        raise ValidationProblem.field("body.method", "store credit needs a customer account")
    if plan.method is RefundMethod.ORIGINAL_PAYMENT:
        totals = payments.totals_for_reference(session, ret.order_number)
        refundable = ZERO if totals is None else totals.refundable
        if plan.refund > refundable:
            raise RefundExceedsCaptured(
                f"the refund of {quantize(plan.refund, ret.currency)} {ret.currency} exceeds "
                f"what the payments of order {ret.order_number} can refund "
                f"({quantize(refundable, ret.currency)} {ret.currency} captured and not yet "
                "refunded): capture the payment first, or refund as store credit",
                extra={
                    "refund": str(quantize(plan.refund, ret.currency)),
                    "refundable": str(quantize(refundable, ret.currency)),
                },
            )


def _start(
    session: Session,
    actor: Principal,
    ret: Return,
    lines: Sequence[ReturnLine],
    plan: _Plan,
    request: SettleRequest,
) -> _Attempt:
    """The rest of step A: the replacement order, its holds and payment, the attempt row."""
    exchange: tuple[Order | None, list[int], list[int]] = (None, [], [])
    if plan.exchange_lines:
        exchange = _replacement_order(session, actor, ret, plan, request.tenders)
        if plan.charge == ZERO:
            _exchange_done(session, ret, lines, plan.line_refunds, plan.refund, ZERO, exchange[0])
    new_order, holds, paid = exchange
    row = ReturnSettlement(
        return_id=ret.id,
        request_key=f"return-{ret.number}-{secrets.token_hex(6)}",
        method=plan.method.value,
        status="pending",
        amount=plan.refund,
        refunded=ZERO,
        charge=plan.charge,
        exchange_order_id=None if new_order is None else new_order.id,
        charge_payment_ids=paid,
        hold_ids=holds,
        line_amounts={str(k): str(v) for k, v in plan.line_refunds.items()},
        actor_type=actor.kind,
        actor_id=None if actor.id is None else str(actor.id),
        actor_label=actor.label,
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    audit(
        session,
        actor,
        "return.settlement_started",
        "return",
        ret.id,
        {
            "method": plan.method.value,
            "refund": str(plan.refund),
            "charge": str(plan.charge),
            "exchange_order": None if new_order is None else new_order.number,
        },
    )
    return _attempt_of(ret, row)


def _exchange_done(
    session: Session,
    ret: Return,
    lines: Sequence[ReturnLine],
    line_refunds: Mapping[int, Decimal],
    refund: Decimal,
    charge: Decimal,
    order: Order | None,
) -> None:
    """The replacement is paid for: the return's money is now final."""
    assert order is not None
    ret.exchange_order_id = order.id
    ret.exchange_order_number = order.number
    ret.exchange_charge = charge
    ret.refund_total = refund
    for line in lines:
        if line.id in line_refunds:
            line.refund = line_refunds[line.id]
    session.flush()


def _replacement_order(
    session: Session,
    actor: Principal,
    ret: Return,
    plan: _Plan,
    tenders: Sequence[payments.TenderRequest],
) -> tuple[Order, list[int], list[int]]:
    """The replacement order (``exchange`` source), its stock holds and payment if any."""
    order = orders.get_order(session, ret.order_id)
    draft = _replacement_draft(session, ret, order, plan)
    new_order = orders.create_order(session, actor, draft)
    ctx = inventory.Context(
        actor, order.channel_id, "order", new_order.number, f"exchange for return {ret.number}"
    )
    channel = channels.context_for_channel(session, order.channel_id)
    status = (
        inventory.ReservationStatus.HELD
        if plan.charge > ZERO
        else inventory.ReservationStatus.ALLOCATED
    )
    held = inventory.hold(
        session,
        ctx,
        [inventory.HoldLine(x.variant_id, x.quantity, x.pickup_location_id) for x in draft.lines],
        candidate_locations=channel.location_order,
        ttl=HOLD_TTL,
        status=status,
    )
    paid: list[int] = []
    if plan.charge > ZERO:
        paid = [
            p.id
            for p in payments.create_payments(
                session,
                reference=new_order.number,
                customer_id=order.customer_id,
                channel_id=order.channel_id,
                currency=order.currency,
                total=plan.charge,
                tenders=tenders,
                field="body.payments",
                channel_type=channel.type,
                order_id=new_order.id,
            )
        ]
    else:
        orders.advance(
            session,
            actor,
            new_order.id,
            OrderStatus.PENDING_PAYMENT,
            [
                (OrderStatus.PLACED, f"exchange for return {ret.number}"),
                (OrderStatus.CONFIRMED, "paid by the returned units"),
            ],
        )
    return new_order, [r.id for r in held], paid


def _replacement_draft(
    session: Session, ret: Return, order: Order, plan: _Plan
) -> orders.OrderDraft:
    originals = {x.id: x for x in orders.order_lines(session, ret.order_id)}
    ids = [x.exchange_variant_id or 0 for x in plan.exchange_lines]
    infos = catalog.variant_infos(session, ids)
    names = catalog.variant_labels(session, infos, order.locale or "en")
    drafts = []
    for line, credit in zip(plan.exchange_lines, plan.credits, strict=True):
        original = originals[line.order_line_id]
        variant = line.exchange_variant_id or 0
        unit = plan.prices[variant].amount
        priced = amounts.replacement_line(
            unit, line.quantity, original.tax_rate, order.tax_included, credit, ret.currency
        )
        drafts.append(
            orders.LineDraft(
                variant_id=variant,
                sku=infos[variant].sku,
                name=names.get(variant, original.name),
                tax_class=original.tax_class,
                quantity=line.quantity,
                unit_price=unit,
                subtotal=priced.subtotal,
                discount=priced.discount,
                tax=priced.tax,
                tax_rate=original.tax_rate,
                total=priced.total,
                delivery_mode=original.delivery_mode,
                pickup_location_id=original.pickup_location_id,
            )
        )
    return _draft(ret, order, drafts, plan)


def _draft(
    ret: Return, order: Order, lines: list[orders.LineDraft], plan: _Plan
) -> orders.OrderDraft:
    shipping = dict(order.shipping_option or {}) or None
    if shipping is not None:
        shipping.update(amount="0", discount="0")
    return orders.OrderDraft(
        channel_id=order.channel_id,
        currency=order.currency,
        source="exchange",
        lines=lines,
        subtotal=sum((x.subtotal for x in lines), ZERO),
        discount_total=sum((x.discount for x in lines), ZERO),
        shipping_total=ZERO,
        tax_total=sum((x.tax for x in lines), ZERO),
        grand_total=sum((x.total for x in lines), ZERO),
        tax_included=order.tax_included,
        customer_id=order.customer_id,
        price_list=order.price_list,
        locale=order.locale,
        email=order.email,
        shipping_address=order.shipping_address,
        billing_address=order.billing_address,
        shipping_option=shipping,
        promotions=[
            {
                "kind": "exchange_credit",
                "name": f"Exchange credit, return {ret.number}",
                "return": ret.number,
                "amount": str(plan.credit_used),
            }
        ],
        note=f"exchange for return {ret.number} of order {order.number}",
    )


def _charge_difference(
    database: Database, attempt: _Attempt, idem: _Idem | None, request_id: str | None
) -> Outcome | None:
    """Steps B and C: authorise the difference, then confirm the replacement or undo it."""
    outcomes = payments.authorize_pending(database, list(attempt.charge_payment_ids))
    to_void: list[int] = []
    declined: Outcome | None = None
    with database.transaction() as session:
        session.info["request_id"] = request_id
        if outcomes:
            payments.record_outcomes(session, outcomes)
        charged = payments.get_payments(session, list(attempt.charge_payment_ids))
        statuses = {p.id: p.status for p in charged}
        if all(s in PAID for s in statuses.values()):
            _confirm_exchange(session, attempt)
        else:
            declined = _decline_exchange(session, attempt, charged, idem)
            to_void = [pid for pid, s in statuses.items() if s not in ("declined", "failed")]
    if to_void:
        payments.void_payments(database, to_void, actor=attempt.actor, request_id=request_id)
    return declined


def _confirm_exchange(session: Session, attempt: _Attempt) -> None:
    ret = get_return(session, attempt.return_id)
    if ret.exchange_order_id is not None or attempt.exchange_order_id is None:
        return  # confirmed by a concurrent resume of the same attempt
    order_id = attempt.exchange_order_id
    order = orders.advance(
        session,
        attempt.actor,
        order_id,
        OrderStatus.PENDING_PAYMENT,
        [
            (OrderStatus.PLACED, f"exchange for return {attempt.number}"),
            (OrderStatus.CONFIRMED, "price difference paid"),
        ],
    )
    ctx = inventory.Context(attempt.actor, order.channel_id, "order", order.number)
    try:
        inventory.allocate(session, ctx, list(attempt.hold_ids), "order", order.number)
    except Problem:
        # The holds expired while the payment was with the provider: hold again.
        inventory.release(session, ctx, list(attempt.hold_ids))
        inventory.hold(
            session,
            ctx,
            [
                inventory.HoldLine(x.variant_id, x.quantity, x.pickup_location_id)
                for x in orders.order_lines(session, order_id)
            ],
            status=inventory.ReservationStatus.ALLOCATED,
            candidate_locations=channels.context_for_channel(
                session, order.channel_id
            ).location_order,
        )
    row = _settlement_row(session, attempt.id)
    refunds = {int(k): Decimal(v) for k, v in (row.line_amounts or {}).items()}
    _exchange_done(
        session, ret, return_lines(session, ret.id), refunds, row.amount, row.charge, order
    )


def _decline_exchange(
    session: Session, attempt: _Attempt, charged: Sequence[Payment], idem: _Idem | None
) -> Outcome:
    """The difference was not paid: the replacement fails and the return waits for another
    settle; nothing was refunded."""
    problem = payments.PaymentDeclined(
        "the payment of the price difference was declined; nothing was refunded, settle again "
        "with another payment or refund instead",
        extra={
            "payments": {p.id: p.status for p in charged},
            "return_number": attempt.number,
            **payments.decline_details(charged),
        },
    )
    if attempt.exchange_order_id is not None:
        try:
            order = orders.advance(
                session,
                attempt.actor,
                attempt.exchange_order_id,
                OrderStatus.PENDING_PAYMENT,
                [(OrderStatus.PAYMENT_FAILED, "price difference declined")],
            )
        except Problem:
            order = None  # declined already by a concurrent resume of the same attempt
        if order is not None:
            ctx = inventory.Context(
                attempt.actor, order.channel_id, "order", order.number, "exchange payment declined"
            )
            inventory.release(session, ctx, list(attempt.hold_ids))
    _finish_attempt(
        session,
        attempt,
        "failed",
        ZERO,
        [],
        ("payment-declined", "the price difference was declined"),
    )
    outcome = Outcome(problem.status, problem.body())
    _remember(session, idem, outcome)
    return outcome


def _settlement_row(session: Session, attempt_id: int) -> ReturnSettlement:
    row = session.get(ReturnSettlement, attempt_id, populate_existing=True)
    assert row is not None
    return row


def _finish_attempt(
    session: Session,
    attempt: _Attempt,
    status: str,
    refunded: Decimal,
    refund_ids: Sequence[int],
    failure: tuple[str, str] | None = None,
) -> bool:
    """Close a pending attempt (compare-and-set) and move the return's settlement with it.

    False when the attempt was closed already (a concurrent resume recorded it first).
    """
    done = session.execute(
        update(ReturnSettlement)
        .where(ReturnSettlement.id == attempt.id, ReturnSettlement.status == "pending")
        .values(
            status=status,
            refunded=refunded,
            refund_ids=list(refund_ids),
            failure_code=failure[0] if failure else None,
            failure_message=failure[1][:2000] if failure else None,
            completed_at=utcnow(),
        )
        .returning(ReturnSettlement.id)
    ).one_or_none()
    if done is None:
        return False
    session.execute(
        update(Return)
        .where(Return.id == attempt.return_id)
        .values(
            refunded_total=Return.refunded_total + refunded,
            settlement=(Settlement.DONE if status == "succeeded" else Settlement.FAILED).value,
            updated_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )
    return True


def _refund_original(database: Database, attempt: _Attempt, request_id: str | None) -> list[Refund]:
    """Step D: the refund, split over the order's tenders by the payments domain."""
    try:
        return payments.refund_reference(
            database,
            attempt.order_number,
            attempt.amount,
            reason=f"return {attempt.number}",
            actor=attempt.actor,
            request_key=attempt.request_key,
            request_id=request_id,
        )
    except Conflict:
        raise  # a concurrent settle of this return holds the refund: it will finish it
    except Problem as exc:
        # Refused before anything was written (the payments changed since step A).
        with database.transaction() as session:
            session.info["request_id"] = request_id
            _finish_attempt(session, attempt, "failed", ZERO, [], (exc.code, exc.detail))
        if isinstance(exc, ValidationProblem):
            raise RefundExceedsCaptured(exc.detail) from exc
        raise


def _complete(
    database: Database,
    attempt: _Attempt,
    refunds: Sequence[Refund] | None,
    idem: _Idem | None,
    request_id: str | None,
) -> Outcome:
    """Step E: record what went back; the return is refunded or closed when all did."""
    done = list(refunds or ())
    with database.transaction() as session:
        session.info["request_id"] = request_id
        if any(r.status == "pending" for r in done):
            # The provider could not be reached: a later settle resumes with the same key.
            _settlement_row(session, attempt.id).refund_ids = [r.id for r in done]
            return Outcome(202, _body(session, get_return(session, attempt.return_id)))
        failed = any(r.status == "failed" for r in done)
        back = attempt.amount if refunds is None else _succeeded(done)
        failure = ("refund-declined", "the payment provider refused the refund")
        status = "failed" if failed else "succeeded"
        ids = [r.id for r in done]
        if _finish_attempt(session, attempt, status, back, ids, failure if failed else None):
            _credit(session, attempt)
            if not failed:
                _settled(session, attempt)
        outcome = _answer(session, attempt, failed)
        _remember(session, idem, outcome)
        return outcome


def _succeeded(refunds: Sequence[Refund]) -> Decimal:
    return sum((r.amount for r in refunds if r.status == "succeeded"), ZERO)


def _credit(session: Session, attempt: _Attempt) -> None:
    """A refund as store credit: Mercato is its own provider, so it is written right here."""
    if attempt.method is RefundMethod.STORE_CREDIT and attempt.amount > ZERO:
        assert attempt.customer_id is not None
        payments.credit_store(
            session,
            attempt.customer_id,
            attempt.currency,
            attempt.amount,
            f"refund of return {attempt.number}",
            attempt.number,
            actor=attempt.actor,
        )


def _answer(session: Session, attempt: _Attempt, failed: bool) -> Outcome:
    ret = get_return(session, attempt.return_id)
    if not failed:
        return Outcome(200, _body(session, ret))
    problem = payments.PaymentDeclined(
        "the payment provider refused the refund; the return stays inspected: settle "
        "again, or refund as store credit",
        extra={
            "return_number": ret.number,
            "refunded": str(quantize(ret.refunded_total, ret.currency)),
        },
    )
    return Outcome(problem.status, problem.body())


def _settled(session: Session, attempt: _Attempt) -> None:
    ret = get_return(session, attempt.return_id)
    target = S.REFUNDED if ret.refunded_total > ZERO else S.CLOSED
    why = (
        {
            RefundMethod.ORIGINAL_PAYMENT: "refunded to the original payment",
            RefundMethod.STORE_CREDIT: "refunded as store credit",
        }[attempt.method]
        if target is S.REFUNDED
        else "nothing to refund"
    )
    moved = _move(
        session,
        attempt.actor,
        ret.id,
        S.INSPECTED,
        [(target, why)],
        {"refund_method": attempt.method.value},
    )
    audit(
        session,
        attempt.actor,
        f"return.{target.value}",
        "return",
        ret.id,
        {"refunded": str(ret.refunded_total), "method": attempt.method.value},
    )
    _publish(session, moved, return_lines(session, ret.id), target)


def _body(session: Session, ret: Return) -> dict[str, Any]:
    return return_json(
        ret, return_lines(session, ret.id), timeline(session, ret.id), settlements(session, ret.id)
    )


# --- listing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReturnFilter:
    order_id: int | None = None
    customer_id: int | None = None
    status: str | None = None
    location_id: int | None = None
    channel_id: int | None = None


def search(session: Session, flt: ReturnFilter, cursor: str | None, limit: int) -> Page[Return]:
    query = select(Return).order_by(Return.id.desc())
    for name in ("order_id", "customer_id", "status", "location_id", "channel_id"):
        value = getattr(flt, name)
        if value is not None:
            query = query.where(getattr(Return, name) == value)
    after = decode_cursor(cursor)
    if after is not None:
        if not isinstance(after, int):
            raise ValidationProblem.field("query.cursor", "not a cursor returned by this API")
        query = query.where(Return.id < after)
    return page_of(list(session.scalars(query.limit(limit + 1))), limit, key=lambda r: r.id)
