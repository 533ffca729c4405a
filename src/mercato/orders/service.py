"""The order system every channel shares: creation, the status machine, search, timeline."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, Select, false, func, insert, or_, select, update
from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.auth.service import audit
from mercato.crypto import blind_indexes
from mercato.customers import service as customers
from mercato.customers.normalize import normalise_phone
from mercato.db import get_or_404, locked_row, utcnow
from mercato.errors import NotFound, UnprocessableState, ValidationProblem
from mercato.events import publish
from mercato.geocoding import locate
from mercato.orders.amounts import due_now as due_now
from mercato.orders.amounts import line_value as line_value
from mercato.orders.amounts import owed as owed
from mercato.orders.amounts import prepaid_import_charges as prepaid_import_charges
from mercato.orders.dashboard import Attention as Attention
from mercato.orders.dashboard import SalesFigure as SalesFigure
from mercato.orders.dashboard import SalesSummary as SalesSummary
from mercato.orders.dashboard import needing_attention as needing_attention
from mercato.orders.dashboard import sales_summary as sales_summary
from mercato.orders.event_types import (
    STATUS_EVENTS,
    LineQuantity,
    OrderCustomerLinked,
    OrderHeld,
    OrderHoldReleased,
    OrderLinesReturned,
    OrderNoteAdded,
    OrderShippingChanged,
)
from mercato.orders.models import Order, OrderLine, OrderLocation, OrderNote, OrderTransition
from mercato.orders.state import TRANSITIONS, OrderStatus
from mercato.pagination import Page, decode_cursor, page_of

# Crockford base32 without I, L, O, U: order numbers read out over the phone.
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_order_number() -> str:
    body = "".join(secrets.choice(_ALPHABET) for _ in range(8))
    return f"M{body[:4]}-{body[4:]}"


@dataclass(frozen=True)
class LineDraft:
    variant_id: int
    sku: str
    name: str
    tax_class: str
    quantity: int
    unit_price: Decimal
    subtotal: Decimal
    discount: Decimal
    tax: Decimal
    tax_rate: Decimal
    total: Decimal
    delivery_mode: str = "ship"
    pickup_location_id: int | None = None


@dataclass(frozen=True)
class OrderDraft:
    channel_id: int
    currency: str
    source: str
    lines: Sequence[LineDraft]
    subtotal: Decimal
    discount_total: Decimal
    shipping_total: Decimal
    tax_total: Decimal
    grand_total: Decimal
    tax_included: bool
    customer_id: int | None = None
    cart_id: int | None = None
    external_id: str | None = None
    price_list: str | None = None
    locale: str | None = None
    email: str | None = None
    shipping_address: dict[str, Any] | None = None
    billing_address: dict[str, Any] | None = None
    shipping_option: dict[str, Any] | None = None
    # Import duty and tax (see Order.import_charges); with "prepaid" they are in the total.
    import_charges: dict[str, Any] | None = None
    tax_breakdown: list[dict[str, Any]] = field(default_factory=list)
    promotions: list[dict[str, Any]] = field(default_factory=list)
    status: OrderStatus = OrderStatus.PENDING_PAYMENT
    fraud: dict[str, Any] | None = None
    note: str | None = None
    # The store behind a POS channel (a line picked up in a store names its own).
    store_location_id: int | None = None


def check_totals(draft: OrderDraft) -> None:
    """Every total must be reproducible from the lines (the money invariant)."""
    lines = draft.lines
    sums = {
        "subtotal": sum((x.subtotal for x in lines), Decimal(0)),
        "discount_total": sum((x.discount for x in lines), Decimal(0)),
    }
    for name, value in sums.items():
        if value != getattr(draft, name):
            raise ValueError(f"order {name} {getattr(draft, name)} is not the sum of lines {value}")
    for x in lines:
        if x.subtotal - x.discount != x.total - (0 if draft.tax_included else x.tax):
            raise ValueError(f"line {x.sku}: subtotal - discount does not give its total")
    goods = sum((x.total for x in lines), Decimal(0))
    expected = goods + draft.shipping_total + prepaid_import_charges(draft.import_charges)
    if not draft.tax_included:
        expected += draft.tax_total - sum((x.tax for x in lines), Decimal(0))
    if expected != draft.grand_total:
        raise ValueError(f"grand total {draft.grand_total} is not lines + shipping {expected}")


def _located(address: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if address is None else locate(address)


def create_order(session: Session, actor: Principal, draft: OrderDraft) -> Order:
    return create_order_with_lines(session, actor, draft)[0]


def create_order_with_lines(
    session: Session, actor: Principal, draft: OrderDraft
) -> tuple[Order, list[OrderLine]]:
    """The new order and its lines (callers that answer with the order need no re-read)."""
    check_totals(draft)
    now = utcnow()
    pickup = next((x.pickup_location_id for x in draft.lines if x.pickup_location_id), None)
    order = Order(
        number=new_order_number(),
        channel_id=draft.channel_id,
        customer_id=draft.customer_id,
        cart_id=draft.cart_id,
        store_location_id=pickup or draft.store_location_id,
        external_id=draft.external_id,
        source=draft.source,
        status=draft.status.value,
        currency=draft.currency,
        price_list=draft.price_list,
        tax_included=draft.tax_included,
        locale=draft.locale,
        subtotal=draft.subtotal,
        discount_total=draft.discount_total,
        shipping_total=draft.shipping_total,
        tax_total=draft.tax_total,
        grand_total=draft.grand_total,
        email=draft.email,
        # Placed on the map for routing (a cart's addresses already are: kept as they are).
        shipping_address=_located(draft.shipping_address),
        billing_address=_located(draft.billing_address),
        shipping_option=draft.shipping_option,
        import_charges=draft.import_charges,
        tax_breakdown=draft.tax_breakdown,
        promotions=draft.promotions,
        fraud=draft.fraud,
        note=draft.note,
        created_at=now,
        updated_at=now,
        placed_at=None if draft.status is OrderStatus.PENDING_PAYMENT else now,
    )
    session.add(order)
    session.flush()
    lines = session.scalars(
        insert(OrderLine)
        .values(
            [
                {
                    "order_id": order.id,
                    "line_no": n,
                    "variant_id": x.variant_id,
                    "sku": x.sku,
                    "name": x.name,
                    "tax_class": x.tax_class,
                    "quantity": x.quantity,
                    "unit_price": x.unit_price,
                    "subtotal": x.subtotal,
                    "discount": x.discount,
                    "tax": x.tax,
                    "tax_rate": x.tax_rate,
                    "total": x.total,
                    "delivery_mode": x.delivery_mode,
                    "pickup_location_id": x.pickup_location_id,
                    "status": "open",
                    "cancelled_quantity": 0,
                    "fulfilled_quantity": 0,
                    "returned_quantity": 0,
                }
                for n, x in enumerate(draft.lines, start=1)
            ]
        )
        .returning(OrderLine)
        .execution_options(populate_existing=True)
    ).all()
    created = sorted(lines, key=lambda x: x.line_no)
    pickups = sorted({x.pickup_location_id for x in created if x.pickup_location_id is not None})
    if pickups:
        session.execute(
            insert(OrderLocation), [{"order_id": order.id, "location_id": p} for p in pickups]
        )
    if draft.status is not OrderStatus.PENDING_PAYMENT:
        # Orders created in a state (staff, imports) say so; a checkout's order enters the
        # timeline with its first transition, from pending_payment, once paid or declined.
        _record(session, actor, order.id, None, draft.status, "created", now)
        publish(session, STATUS_EVENTS[draft.status](**order_facts(order)))
    return order, created


def _record(
    session: Session,
    actor: Principal,
    order_id: int,
    frm: OrderStatus | None,
    to: OrderStatus,
    reason: str | None,
    at: datetime,
) -> None:
    session.execute(
        insert(OrderTransition).values(
            order_id=order_id,
            from_status=None if frm is None else frm.value,
            to_status=to.value,
            actor_type=actor.kind,
            actor_id=None if actor.id is None else str(actor.id),
            reason=reason,
            at=at,
        )
    )


def transition(
    session: Session,
    actor: Principal,
    order_id: int,
    target: OrderStatus,
    *,
    reason: str | None = None,
    expected: OrderStatus | None = None,
) -> Order:
    """Move an order along the state machine; an illegal move is a 409 and changes nothing."""
    current = expected
    if current is None:
        current = OrderStatus(get_order(session, order_id).status)
    return advance(session, actor, order_id, current, [(target, reason)])


def advance(
    session: Session,
    actor: Principal,
    order_id: int,
    current: OrderStatus,
    steps: Sequence[tuple[OrderStatus, str | None]],
) -> Order:
    """Take one or more legal steps at once (``placed`` then ``confirmed`` after payment).

    One conditional UPDATE (the order must still be in ``current``: two concurrent
    changes cannot both win) and one INSERT of every step into the timeline; each step is
    published as its status's event (``STATUS_EVENTS``).
    """
    position = current
    for target, _ in steps:
        if target not in TRANSITIONS[position]:
            raise UnprocessableState(
                f"order {order_id} cannot go from {position} to {target}",
                code="illegal-transition",
                extra={"from": position.value, "to": target.value},
            )
        position = target
    now = utcnow()
    values: dict[str, Any] = {"status": position.value, "updated_at": now}
    if any(target is OrderStatus.PLACED for target, _ in steps):
        values["placed_at"] = now
    order = session.scalars(
        update(Order)
        .where(Order.id == order_id, Order.status == current.value)
        .values(values)
        .returning(Order)
        .execution_options(populate_existing=True, synchronize_session=False)
    ).one_or_none()
    if order is None:
        found = session.get(Order, order_id)
        if found is None:
            raise NotFound(f"order {order_id} not found")
        raise UnprocessableState(
            f"order {found.number} is {found.status}, not {current}; reload it",
            code="illegal-transition" if found.status == current.value else "order-state-changed",
            extra={"from": found.status, "to": steps[-1][0].value},
        )
    previous = current
    rows = []
    for target, reason in steps:
        rows.append(
            {
                "order_id": order_id,
                "from_status": previous.value,
                "to_status": target.value,
                "actor_type": actor.kind,
                "actor_id": None if actor.id is None else str(actor.id),
                "reason": reason,
                "at": now,
            }
        )
        previous = target
    session.execute(insert(OrderTransition), rows)
    facts = order_facts(order)
    for target, _ in steps:
        publish(session, STATUS_EVENTS[target](**{**facts, "status": target.value}))
    return order


def order_facts(order: Order) -> dict[str, Any]:
    """The fields every order event carries (:class:`OrderFacts`)."""
    return {
        "order_id": order.id,
        "number": order.number,
        "channel_id": order.channel_id,
        "customer_id": order.customer_id,
        "status": order.status,
        "currency": order.currency,
        "grand_total": order.grand_total,
        "source": order.source,
        "store_location_id": order.store_location_id,
    }


def get_order(session: Session, order_id: int) -> Order:
    return get_or_404(session, Order, order_id, f"order {order_id}", fresh=True)


def lock_order(session: Session, order_id: int) -> Order:
    """The order, its row taken for this transaction: for decisions that read other rows
    of the order (its shipments, its tasks) and must not interleave with another one."""
    return locked_row(session, Order, order_id, f"order {order_id}")


def get_by_number(session: Session, number: str) -> Order:
    order = session.scalar(select(Order).where(Order.number == number))
    if order is None:
        raise NotFound(f"order {number} not found")
    return order


def record_location(session: Session, order_id: int, location_id: int) -> None:
    """Remember that ``location_id`` serves the order (idempotent)."""
    from sqlalchemy.dialects import postgresql, sqlite

    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    session.execute(
        dialect.insert(OrderLocation)
        .values(order_id=order_id, location_id=location_id)
        .on_conflict_do_nothing(index_elements=["order_id", "location_id"])
    )


def order_id_for_number(session: Session, number: str) -> int | None:
    found = session.scalar(select(Order.id).where(Order.number == number))
    return None if found is None else int(found)


def by_external_id(session: Session, channel_id: int, external_id: str) -> Order | None:
    return session.scalar(
        select(Order).where(Order.channel_id == channel_id, Order.external_id == external_id)
    )


def pending_for_cart(session: Session, cart_id: int) -> Order | None:
    return session.scalar(
        select(Order)
        .where(Order.cart_id == cart_id, Order.status == OrderStatus.PENDING_PAYMENT.value)
        .order_by(Order.id.desc())
        .limit(1)
    )


def order_lines(session: Session, order_id: int) -> list[OrderLine]:
    return list(
        session.scalars(
            select(OrderLine)
            .where(OrderLine.order_id == order_id)
            .order_by(OrderLine.line_no)
            .execution_options(populate_existing=True)
        )
    )


def lines_of_orders(session: Session, order_ids: Sequence[int]) -> dict[int, list[OrderLine]]:
    """The lines of many orders in one query, by order id, in line order."""
    grouped: dict[int, list[OrderLine]] = {order_id: [] for order_id in order_ids}
    if not order_ids:
        return grouped
    for line in session.scalars(
        select(OrderLine)
        .where(OrderLine.order_id.in_(list(order_ids)))
        .order_by(OrderLine.order_id, OrderLine.line_no)
    ):
        grouped[line.order_id].append(line)
    return grouped


def order_refs_of_customers(session: Session, customer_ids: Sequence[int]) -> list[tuple[int, str]]:
    """(id, number) of every order of these customers, oldest first."""
    rows = session.execute(
        select(Order.id, Order.number)
        .where(Order.customer_id.in_(list(customer_ids)))
        .order_by(Order.id)
    ).all()
    return [(int(r[0]), str(r[1])) for r in rows]


# --- a person's orders, guest ones included -------------------------------------------------

# Statuses in which an order counts as bought (not an abandoned or refused payment).
NOT_BOUGHT = frozenset({OrderStatus.PENDING_PAYMENT.value, OrderStatus.PAYMENT_FAILED.value})


def contact_match(emails: Sequence[str] = (), phones: Sequence[str] = ()) -> ColumnElement[bool]:
    """Orders placed with one of these (normalised) emails or phones, by their keyed hashes
    under every configured key (a rotation in progress still finds them)."""
    email_hashes = [h for e in emails for h in blind_indexes("email", e.strip().lower())]
    phone_hashes = [h for p in phones for h in blind_indexes("phone", p)]
    conditions: list[ColumnElement[bool]] = []
    if email_hashes:
        conditions.append(Order.email_index.in_(email_hashes))
    if phone_hashes:
        conditions.append(Order.phone_index.in_(phone_hashes))
    return or_(*conditions) if conditions else false()


def orders_of_person(
    session: Session,
    customer_ids: Sequence[int],
    emails: Sequence[str] = (),
    phones: Sequence[str] = (),
) -> list[Order]:
    """The orders of these profiles, and the guest orders placed with these contacts."""
    guest = Order.customer_id.is_(None) & contact_match(emails, phones)
    return list(
        session.scalars(
            select(Order)
            .where(or_(Order.customer_id.in_(list(customer_ids)), guest))
            .order_by(Order.id)
        )
    )


def link_guest_orders(
    session: Session,
    actor: Principal,
    customer_id: int,
    *,
    emails: Sequence[str] = (),
    phones: Sequence[str] = (),
    order_id: int | None = None,
) -> list[Order]:
    """Attach guest orders placed with these contacts to the profile (all of them, or one
    order); each is published as ``order.customer_linked`` so figures and the timeline
    count it. Orders already attached to a profile are never moved."""
    query = select(Order).where(Order.customer_id.is_(None), contact_match(emails, phones))
    if order_id is not None:
        query = query.where(Order.id == order_id)
    found = list(session.scalars(query.order_by(Order.id).with_for_update()))
    now = utcnow()
    for order in found:
        order.customer_id, order.updated_at = customer_id, now
    session.flush()
    for order in found:
        publish(
            session,
            OrderCustomerLinked(
                **order_facts(order),
                cart_id=order.cart_id,
                bought=order.status not in NOT_BOUGHT,
                placed_at=order.placed_at,
                actor_type=actor.kind,
            ),
        )
    return found


def timeline(session: Session, order_id: int) -> list[OrderTransition]:
    return list(
        session.scalars(
            select(OrderTransition)
            .where(OrderTransition.order_id == order_id)
            .order_by(OrderTransition.id)
        )
    )


def count_orders(session: Session, customer_id: int, *, exclude_order_id: int | None = None) -> int:
    """Orders the customer actually placed (not abandoned payments)."""
    query = (
        select(func.count())
        .select_from(Order)
        .where(
            Order.customer_id == customer_id,
            Order.status.not_in(
                [OrderStatus.PENDING_PAYMENT.value, OrderStatus.PAYMENT_FAILED.value]
            ),
        )
    )
    if exclude_order_id is not None:
        query = query.where(Order.id != exclude_order_id)
    return int(session.scalar(query) or 0)


@dataclass(frozen=True)
class OrderFilter:
    customer_id: int | None = None
    channel_id: int | None = None
    status: str | None = None
    number: str | None = None
    external_id: str | None = None
    placed_from: datetime | None = None
    placed_to: datetime | None = None
    min_total: Decimal | None = None
    max_total: Decimal | None = None
    location_id: int | None = None
    # The buyer's email or phone: orders placed with it (by its keyed hash) and the orders
    # of the profiles holding it.
    email: str | None = None
    phone: str | None = None
    # Only orders with a payment in this state: a subquery of order ids from payments.
    payment_orders: Select[Any] | None = None
    # Store staff: only the orders of these locations (None: every order).
    scope: frozenset[int] | None = None
    # Only orders on hold (True) or not on hold (False).
    on_hold: bool | None = None


def in_scope(location_ids: frozenset[int]) -> ColumnElement[bool]:
    """Orders a store's staff deal with: sold or picked up there, or routed there."""
    ids = sorted(location_ids)
    return or_(
        Order.store_location_id.in_(ids),
        Order.id.in_(select(OrderLocation.order_id).where(OrderLocation.location_id.in_(ids))),
    )


def check_visible(session: Session, actor: Principal, order: Order) -> Order:
    """The order, if ``actor`` may read it: store staff read only their stores' orders
    (another store's order is not found, as if it did not exist)."""
    if actor.location_ids is None:
        return order
    query = select(Order.id).where(Order.id == order.id, in_scope(actor.location_ids))
    found = session.scalar(query)
    if found is None:
        raise NotFound(f"order {order.id} not found")
    return order


def _contact_condition(session: Session, flt: OrderFilter) -> ColumnElement[bool] | None:
    if not flt.email and not flt.phone:
        return None
    phones: list[str] = []
    if flt.phone:
        with contextlib.suppress(ValueError):
            phones = [normalise_phone(flt.phone)]
    profiles = customers.list_customers(
        session, email=flt.email, phone=flt.phone, cursor=None, limit=PROFILES_PER_CONTACT
    ).items
    return or_(
        contact_match([flt.email] if flt.email else [], phones),
        Order.customer_id.in_([c.id for c in profiles]),
    )


# An email or phone belongs to a few profiles at most (before a merge); this bounds it.
PROFILES_PER_CONTACT = 20


def search(session: Session, flt: OrderFilter, cursor: str | None, limit: int) -> Page[Order]:
    query = select(Order).order_by(Order.id.desc())
    contact = _contact_condition(session, flt)
    if contact is not None:
        query = query.where(contact)
    if flt.payment_orders is not None:
        query = query.where(Order.id.in_(flt.payment_orders))
    if flt.scope is not None:
        query = query.where(in_scope(flt.scope))
    if flt.on_hold is not None:
        query = query.where(Order.on_hold.is_(flt.on_hold))
    exact = {
        "customer_id": Order.customer_id,
        "channel_id": Order.channel_id,
        "status": Order.status,
        "number": Order.number,
        "external_id": Order.external_id,
    }
    for name, column in exact.items():
        value = getattr(flt, name)
        if value is not None:
            query = query.where(column == value)
    if flt.status is None and flt.number is None:
        # A declined checkout attempt stays recorded (its payments, released holds and
        # codes name it) but is nobody's order: lists show it only when asked by status
        # or number.
        query = query.where(Order.status != OrderStatus.PAYMENT_FAILED.value)
    if flt.placed_from is not None:
        query = query.where(Order.created_at >= flt.placed_from)
    if flt.placed_to is not None:
        query = query.where(Order.created_at < flt.placed_to)
    if flt.min_total is not None:
        query = query.where(Order.grand_total >= flt.min_total)
    if flt.max_total is not None:
        query = query.where(Order.grand_total <= flt.max_total)
    if flt.location_id is not None:
        # Pickup stores and every location routing gave lines to (see record_location).
        query = query.where(
            Order.id.in_(
                select(OrderLocation.order_id).where(OrderLocation.location_id == flt.location_id)
            )
        )
    after = decode_cursor(cursor)
    if after is not None:
        if not isinstance(after, int):
            raise ValidationProblem.field("query.cursor", "not a cursor returned by this API")
        query = query.where(Order.id < after)
    return page_of(list(session.scalars(query.limit(limit + 1))), limit, key=lambda o: o.id)


def returnable_quantities(session: Session, order_id: int) -> dict[int, int]:
    """Per order line id: units delivered or handed over and not yet returned."""
    return {
        line.id: line.fulfilled_quantity - line.returned_quantity
        for line in order_lines(session, order_id)
    }


def record_returned(
    session: Session,
    actor: Principal,
    order_id: int,
    quantities: dict[int, int],
    *,
    reference: str,
) -> list[OrderLine]:
    """Count returned units on the order's lines (never more than were fulfilled).

    Each line is one conditional UPDATE, so two returns processed at once cannot return
    the same unit twice; a line without enough fulfilled units left is a 409.
    """
    changed: list[OrderLine] = []
    for line_id, quantity in sorted(quantities.items()):
        if quantity <= 0:
            raise ValidationProblem.field("body.lines", "returned quantities are positive")
        line = session.scalars(
            update(OrderLine)
            .where(
                OrderLine.id == line_id,
                OrderLine.order_id == order_id,
                OrderLine.returned_quantity + quantity <= OrderLine.fulfilled_quantity,
            )
            .values(returned_quantity=OrderLine.returned_quantity + quantity)
            .returning(OrderLine)
            .execution_options(populate_existing=True, synchronize_session=False)
        ).one_or_none()
        if line is None:
            raise UnprocessableState(
                f"order line {line_id}: {quantity} more units cannot be returned",
                code="return-exceeds-fulfilled",
                extra={"order_line_id": line_id},
            )
        changed.append(line)
    order = get_order(session, order_id)
    publish(
        session,
        OrderLinesReturned(
            **order_facts(order),
            reference=reference,
            lines=tuple(LineQuantity(k, v) for k, v in sorted(quantities.items())),
        ),
    )
    return changed


def record_fulfilled(
    session: Session,
    actor: Principal,
    order_id: int,
    quantities: dict[int, int],
    *,
    reason: str | None = None,
) -> Order:
    """Count shipped or handed-over units; the order moves to partially_fulfilled or
    fulfilled accordingly (from allocated, confirmed or partially_fulfilled)."""
    for line_id, quantity in sorted(quantities.items()):
        if quantity <= 0:
            raise ValidationProblem.field("body.lines", "fulfilled quantities are positive")
        done = session.execute(
            update(OrderLine)
            .where(
                OrderLine.id == line_id,
                OrderLine.order_id == order_id,
                OrderLine.fulfilled_quantity + OrderLine.cancelled_quantity + quantity
                <= OrderLine.quantity,
            )
            .values(fulfilled_quantity=OrderLine.fulfilled_quantity + quantity)
            .execution_options(synchronize_session=False)
        )
        if not getattr(done, "rowcount", 0):
            raise UnprocessableState(
                f"order line {line_id}: {quantity} more units cannot be fulfilled",
                code="fulfilment-exceeds-ordered",
                extra={"order_line_id": line_id},
            )
    return sync_fulfilment_status(session, actor, order_id, reason=reason)


def sync_fulfilment_status(
    session: Session, actor: Principal, order_id: int, *, reason: str | None = None
) -> Order:
    """Move the order to what its lines say: fulfilled when every unit is shipped, handed
    over or cancelled, partially fulfilled when some are."""
    order = get_order(session, order_id)
    lines = order_lines(session, order_id)
    open_units = sum(x.quantity - x.fulfilled_quantity - x.cancelled_quantity for x in lines)
    shipped = sum(x.fulfilled_quantity for x in lines)
    current = OrderStatus(order.status)
    if open_units == 0 and shipped > 0:
        target = OrderStatus.FULFILLED
    elif shipped > 0:
        target = OrderStatus.PARTIALLY_FULFILLED
    else:
        return order
    if current is target:
        return order
    steps: list[tuple[OrderStatus, str | None]] = []
    position = current
    if position is OrderStatus.CONFIRMED:
        steps.append((OrderStatus.ALLOCATED, "allocated at fulfilment"))
        position = OrderStatus.ALLOCATED
    if target not in TRANSITIONS[position]:
        raise UnprocessableState(
            f"order {order.number} is {current}: it cannot be fulfilled",
            code="illegal-transition",
            extra={"from": current.value, "to": target.value},
        )
    steps.append((target, reason))
    return advance(session, actor, order_id, current, steps)


class NoteKind(StrEnum):
    NOTE = "note"
    HOLD = "hold"
    RELEASED = "hold_released"
    # A message about the order sent again by staff (it may carry the pickup code).
    MESSAGE_RESENT = "message_resent"


def record_shipping_change(
    session: Session, actor: Principal, order_id: int, change: dict[str, Any]
) -> bool:
    """Record that the order ships from another country or with another carrier than
    quoted (``change`` as ``Order.shipping_changes`` keeps it); False, and nothing
    recorded, when the shopper was already told exactly that."""
    order = locked_row(session, Order, order_id, f"order {order_id}")
    origin = change["origin_country"]
    previous = [c for c in order.shipping_changes or [] if c["origin_country"] == origin]
    same = ("carrier", "service")
    if previous and all(previous[-1].get(k) == change.get(k) for k in same):
        return False
    order.shipping_changes = [*(order.shipping_changes or []), change]
    order.updated_at = utcnow()
    publish(
        session,
        OrderShippingChanged(
            **order_facts(order),
            origin_country=change["origin_country"],
            carrier=change["carrier"],
            service=change["service"],
            quoted=change.get("quoted"),
            actor_type=actor.kind,
        ),
    )
    return True


def add_note(
    session: Session,
    actor: Principal,
    order_id: int,
    body: str,
    *,
    kind: NoteKind = NoteKind.NOTE,
) -> OrderNote:
    """A staff note, or the record of a hold put or released (their timeline entries)."""
    order = get_order(session, order_id)
    note = OrderNote(
        order_id=order.id,
        kind=kind.value,
        body=body,
        author_type=actor.kind,
        author_id=None if actor.id is None else str(actor.id),
        author_label=actor.label,
        created_at=utcnow(),
    )
    session.add(note)
    session.flush()
    if kind is not NoteKind.NOTE:
        return note  # the hold publishes its own event
    publish(session, OrderNoteAdded(**order_facts(order), note_id=note.id))
    return note


def notes(session: Session, order_id: int, *, with_holds: bool = False) -> list[OrderNote]:
    query = select(OrderNote).where(OrderNote.order_id == order_id)
    if not with_holds:
        query = query.where(OrderNote.kind == NoteKind.NOTE.value)
    return list(session.scalars(query.order_by(OrderNote.id)))


# Statuses staff may set by hand: the others come from payment, routing, fulfilment,
# cancellation and returns, which do the stock and money work that goes with them.
MANUAL_TARGETS = frozenset(
    {OrderStatus.CONFIRMED, OrderStatus.FRAUD_REVIEW, OrderStatus.DELIVERED, OrderStatus.CLOSED}
)


# --- holds and cancelled units ----------------------------------------------------------

CANCELLABLE = (
    OrderStatus.PENDING_PAYMENT,
    OrderStatus.PLACED,
    OrderStatus.FRAUD_REVIEW,
    OrderStatus.CONFIRMED,
    OrderStatus.ALLOCATED,
    OrderStatus.PARTIALLY_FULFILLED,
)


def hold(session: Session, actor: Principal, order_id: int, reason: str) -> Order:
    """Stop fulfilment until released (fraud doubt, customer request, address check)."""
    order = get_order(session, order_id)
    if order.on_hold:
        raise UnprocessableState(f"order {order.number} is already on hold", code="on-hold")
    if OrderStatus(order.status) not in CANCELLABLE:
        raise UnprocessableState(
            f"order {order.number} is {order.status}", code="illegal-transition"
        )
    order.on_hold, order.hold_reason, order.updated_at = True, reason, utcnow()
    add_note(session, actor, order.id, reason, kind=NoteKind.HOLD)
    audit(session, actor, "order.held", "order", order.id, {"reason": reason})
    # The reason is free text about the customer: it stays on the order (encrypted) and in
    # the audit log, and is not copied to every event subscriber and webhook.
    publish(session, OrderHeld(**order_facts(order)))
    return order


def release_hold(session: Session, actor: Principal, order_id: int) -> Order:
    order = get_order(session, order_id)
    if not order.on_hold:
        raise UnprocessableState(f"order {order.number} is not on hold", code="not-on-hold")
    order.on_hold, order.hold_reason, order.updated_at = False, None, utcnow()
    add_note(session, actor, order.id, "hold released", kind=NoteKind.RELEASED)
    audit(session, actor, "order.hold_released", "order", order.id)
    publish(session, OrderHoldReleased(**order_facts(order)))
    session.flush()
    return order


def check_cancellable(order: Order) -> None:
    if OrderStatus(order.status) not in CANCELLABLE:
        raise UnprocessableState(
            f"order {order.number} is {order.status}: it cannot be cancelled",
            code="illegal-transition",
        )


def cancel_units(
    session: Session, order: Order, lines: Sequence[OrderLine], quantities: dict[int, int]
) -> None:
    """Count ``quantities`` (line id -> units) as cancelled, each by one conditional UPDATE:
    units shipped or cancelled meanwhile by someone else are never cancelled twice."""
    check_cancellable(order)
    by_id = {x.id: x for x in lines}
    for line_id, quantity in sorted(quantities.items()):
        done = session.execute(
            update(OrderLine)
            .where(
                OrderLine.id == line_id,
                OrderLine.fulfilled_quantity + OrderLine.cancelled_quantity + quantity
                <= OrderLine.quantity,
            )
            .values(cancelled_quantity=OrderLine.cancelled_quantity + quantity)
            .execution_options(synchronize_session=False)
        )
        if not getattr(done, "rowcount", 0):
            line = by_id[line_id]
            still_open = line.quantity - line.fulfilled_quantity - line.cancelled_quantity
            raise UnprocessableState(
                f"line {line.sku}: only {still_open} units are still open",
                code="cancel-exceeds-open",
                extra={"order_line_id": line_id},
            )


SHIPPED_STATUSES = (
    OrderStatus.PARTIALLY_FULFILLED.value,
    OrderStatus.FULFILLED.value,
    OrderStatus.DELIVERED.value,
    OrderStatus.PICKED_UP.value,
)


def recently_shipped(session: Session, limit: int) -> list[int]:
    """Orders with units gone to their customers, most recently changed first (the capture
    job looks for authorisations still to capture among them)."""
    return list(
        session.scalars(
            select(Order.id)
            .where(Order.status.in_(SHIPPED_STATUSES))
            .order_by(Order.updated_at.desc())
            .limit(limit)
        )
    )
