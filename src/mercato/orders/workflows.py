"""Order operations that move stock and money across domains: cancellation (whole or per
line), payment capture as units ship, staff-created orders and imported orders.

Each runs its database work in short transactions of its own and calls payment providers
with no transaction open (the same rule as checkout): state first (committed), then money;
a failure on the money side leaves a visible state that ``capture_due`` / the payments
reconciliation finishes later.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.auth.service import audit
from mercato.catalog import service as catalog
from mercato.customers import service as customers
from mercato.db import Database, utcnow
from mercato.errors import FieldError, Problem, UnprocessableState, ValidationProblem
from mercato.events import publish
from mercato.fulfillment import service as fulfillment
from mercato.inventory import service as inventory
from mercato.money import ZERO, check_precision, quantize, validate_currency
from mercato.orders import service as orders
from mercato.orders.models import Order, OrderLine
from mercato.orders.state import OrderStatus
from mercato.payments import service as payments
from mercato.payments.models import PaymentStatus
from mercato.promotions import service as promotions

CANCELLABLE = (
    OrderStatus.PENDING_PAYMENT,
    OrderStatus.PLACED,
    OrderStatus.FRAUD_REVIEW,
    OrderStatus.CONFIRMED,
    OrderStatus.ALLOCATED,
    OrderStatus.PARTIALLY_FULFILLED,
)
# Methods settled when the goods arrive (the courier collects), not when they ship.
ON_DELIVERY = frozenset({"cash_on_delivery"})


# --- holds and notes -----------------------------------------------------------------------


def hold(session: Session, actor: Principal, order_id: int, reason: str) -> Order:
    """Stop fulfilment until released (fraud doubt, customer request, address check)."""
    order = orders.get_order(session, order_id)
    if order.on_hold:
        raise UnprocessableState(f"order {order.number} is already on hold", code="on-hold")
    if OrderStatus(order.status) not in CANCELLABLE:
        raise UnprocessableState(
            f"order {order.number} is {order.status}", code="illegal-transition"
        )
    order.on_hold, order.hold_reason, order.updated_at = True, reason, utcnow()
    orders.add_note(session, actor, order.id, reason, kind=orders.NoteKind.HOLD)
    audit(session, actor, "order.held", "order", order.id, {"reason": reason})
    # The reason is free text about the customer: it stays on the order (encrypted) and in
    # the audit log, and is not copied to every event subscriber and webhook.
    publish(
        session,
        "order.held",
        orders.order_event(order),
        aggregate_type="order",
        aggregate_id=order.id,
    )
    return order


def release_hold(session: Session, actor: Principal, order_id: int) -> Order:
    order = orders.get_order(session, order_id)
    if not order.on_hold:
        raise UnprocessableState(f"order {order.number} is not on hold", code="not-on-hold")
    order.on_hold, order.hold_reason, order.updated_at = False, None, utcnow()
    orders.add_note(session, actor, order.id, "hold released", kind=orders.NoteKind.RELEASED)
    audit(session, actor, "order.hold_released", "order", order.id)
    publish(
        session,
        "order.hold_released",
        orders.order_event(order),
        aggregate_type="order",
        aggregate_id=order.id,
    )
    session.flush()
    if order.status == OrderStatus.CONFIRMED.value:
        fulfillment.on_order_confirmed(session, order.id)
    return order


# --- cancellation ---------------------------------------------------------------------------


@dataclass
class Cancellation:
    order: Order
    refund_due: Decimal
    void_payment_ids: list[int] = field(default_factory=list)
    refunds: list[Any] = field(default_factory=list)


def _line_value(line: OrderLine, quantity: int, currency: str) -> Decimal:
    """What ``quantity`` units of the line cost the customer (tax and discounts included)."""
    if quantity == line.quantity:
        return quantize(line.total, currency)
    return quantize(line.total * quantity / line.quantity, currency)


def cancel_order(
    database: Database,
    actor: Principal,
    order_id: int,
    reason: str,
    *,
    request_id: str | None = None,
) -> Cancellation:
    """Cancel everything not yet shipped or collected; its stock goes back, its codes are
    given back, and the money follows: authorisations voided, captured amounts refunded."""
    with database.transaction() as session:
        session.info["request_id"] = request_id
        order = orders.get_order(session, order_id)
        lines = orders.order_lines(session, order_id)
        quantities = {x.id: x.quantity - x.fulfilled_quantity - x.cancelled_quantity for x in lines}
        quantities = {k: v for k, v in quantities.items() if v > 0}
        if not quantities:
            raise UnprocessableState(
                f"order {order.number} has nothing left to cancel", code="illegal-transition"
            )
        result = _cancel_in(session, actor, order, lines, quantities, reason)
    return _settle_money(database, actor, result, reason, request_id)


def cancel_lines(
    database: Database,
    actor: Principal,
    order_id: int,
    quantities: dict[int, int],
    reason: str,
    *,
    request_id: str | None = None,
) -> Cancellation:
    """Cancel some units of some lines (a store cannot supply them, the customer changed
    their mind); the rest of the order goes on."""
    if not quantities or any(q <= 0 for q in quantities.values()):
        raise ValidationProblem.field("body.lines", "positive quantities of this order's lines")
    with database.transaction() as session:
        session.info["request_id"] = request_id
        order = orders.get_order(session, order_id)
        lines = orders.order_lines(session, order_id)
        known = {x.id for x in lines}
        unknown = sorted(set(quantities) - known)
        if unknown:
            raise ValidationProblem.field("body.lines", f"not lines of this order: {unknown}")
        result = _cancel_in(session, actor, order, lines, quantities, reason)
    return _settle_money(database, actor, result, reason, request_id)


def _cancel_in(
    session: Session,
    actor: Principal,
    order: Order,
    lines: Sequence[OrderLine],
    quantities: dict[int, int],
    reason: str,
) -> Cancellation:
    if OrderStatus(order.status) not in CANCELLABLE:
        raise UnprocessableState(
            f"order {order.number} is {order.status}: it cannot be cancelled",
            code="illegal-transition",
        )
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
    _release_stock(session, actor, order, quantities, reason)
    fresh = orders.order_lines(session, order.id)
    everything = all(
        x.fulfilled_quantity == 0 and x.cancelled_quantity == x.quantity for x in fresh
    )
    status = OrderStatus(order.status)
    if everything:
        promotions.release_redemptions(session, order.number)
        order = orders.advance(session, actor, order.id, status, [(OrderStatus.CANCELLED, reason)])
    else:
        order = orders.sync_fulfilment_status(session, actor, order.id, reason=reason)
    refund_due = sum(
        (_line_value(by_id[k], q, order.currency) for k, q in quantities.items()), ZERO
    )
    if everything:
        refund_due = quantize(order.grand_total, order.currency)
    audit(
        session,
        actor,
        "order.lines_cancelled",
        "order",
        order.id,
        {"lines": {str(k): v for k, v in quantities.items()}, "reason": reason},
    )
    # No reason in the event: staff type it about the customer, and events reach every
    # subscriber and webhook. It is on the order's timeline for readers of personal data.
    publish(
        session,
        "order.lines_cancelled",
        {
            **orders.order_event(order),
            "refund_due": str(refund_due),
            "lines": [
                {"order_line_id": k, "variant_id": by_id[k].variant_id, "quantity": q}
                for k, q in sorted(quantities.items())
            ],
        },
        aggregate_type="order",
        aggregate_id=order.id,
    )
    void = (
        [p.id for p in payments.payments_for_reference(session, order.number)] if everything else []
    )
    return Cancellation(order, refund_due, void)


def _release_stock(
    session: Session, actor: Principal, order: Order, quantities: dict[int, int], reason: str
) -> None:
    """Units of the cancelled lines held at locations go back: tasks' lines first, then any
    hold not yet given to a location."""
    # The ledger names the order; the reason typed (which may quote the customer) stays on
    # the order's timeline, encrypted and shown only to readers of personal data.
    ctx = inventory.Context(actor, order.channel_id, "order", order.number, note="cancelled")
    left = dict(quantities)
    for task in fulfillment.tasks_for_order(session, order.id):
        for x in fulfillment.task_lines(session, task.id):
            take = min(left.get(x.order_line_id, 0), x.quantity)
            if x.status != "open" or take <= 0:
                continue
            if x.reservation_id is not None:
                inventory.release_quantity(session, ctx, x.reservation_id, take)
            if take == x.quantity:
                x.status = "cancelled"
            else:
                x.quantity -= take
            left[x.order_line_id] -= take
        if task.status in fulfillment.OPEN_TASK and all(
            x.status != "open" for x in fulfillment.task_lines(session, task.id)
        ):
            task.status = "cancelled"
    variants = {x.id: x.variant_id for x in orders.order_lines(session, order.id)}
    remaining: dict[int, int] = {}
    for line_id, qty in left.items():
        if qty > 0:
            remaining[variants[line_id]] = remaining.get(variants[line_id], 0) + qty
    if not remaining:
        return
    tied = {
        x.reservation_id
        for t in fulfillment.tasks_for_order(session, order.id)
        for x in fulfillment.task_lines(session, t.id)
        if x.status == "open"
    }
    for r in inventory.active_reservations_for(session, "order", order.number):
        need = remaining.get(r.variant_id, 0)
        if need <= 0 or r.id in tied:
            continue
        take = min(need, r.quantity)
        inventory.release_quantity(session, ctx, r.id, take)
        remaining[r.variant_id] -= take


def _settle_money(
    database: Database, actor: Principal, result: Cancellation, reason: str, request_id: str | None
) -> Cancellation:
    if result.void_payment_ids:
        payments.void_payments(
            database, result.void_payment_ids, actor=actor, request_id=request_id
        )
        return result
    with database.read() as session:
        totals = payments.totals_for_reference(session, result.order.number)
        owed = _owed(session, result.order)
    if totals is None:
        return result
    # Refund only what was captured beyond what the remaining order is worth; an
    # uncaptured authorisation simply captures less later.
    excess = totals.captured - totals.refunded - owed
    if excess > 0:
        result.refunds = payments.refund_reference(
            database,
            result.order.number,
            quantize(excess, result.order.currency),
            reason=reason,
            actor=actor,
            request_id=request_id,
        )
    return result


# --- capture as goods leave ------------------------------------------------------------


def _owed(session: Session, order: Order) -> Decimal:
    """What the customer owes for the order as it stands: every unit not cancelled, plus
    shipping unless the whole order was cancelled."""
    lines = orders.order_lines(session, order.id)
    kept = sum(
        (
            _line_value(x, x.quantity - x.cancelled_quantity, order.currency)
            for x in lines
            if x.quantity - x.cancelled_quantity > 0
        ),
        ZERO,
    )
    if kept == 0:
        return ZERO
    return kept + _beyond_lines(order)


def _due_now(session: Session, order: Order) -> Decimal:
    """What may be captured now: the shipped or collected units, and shipping once any left."""
    lines = orders.order_lines(session, order.id)
    shipped = sum(
        (
            _line_value(x, x.fulfilled_quantity, order.currency)
            for x in lines
            if x.fulfilled_quantity
        ),
        ZERO,
    )
    if shipped == 0:
        return ZERO
    return min(shipped + _beyond_lines(order), _owed(session, order))


def _beyond_lines(order: Order) -> Decimal:
    """Shipping, and import duty and tax the shopper paid with the order (duties paid)."""
    extra = order.shipping_total + orders.prepaid_import_charges(order.import_charges)
    return quantize(extra, order.currency)


def capture_due(
    database: Database, order_id: int, *, on_delivery: bool = False, actor: Principal | None = None
) -> list[Any]:
    """Capture authorised payments up to what the shipped units are worth (split shipments
    capture in parts). Cash on delivery is settled only ``on_delivery``."""
    with database.read() as session:
        order = orders.get_order(session, order_id)
        due = _due_now(session, order)
        found = payments.payments_for_reference(session, order.number)
        captured = sum((p.captured_minor for p in found), 0)
        currency = order.currency
        capturable = [
            (p.id, p.authorized_minor - p.captured_minor - p.capture_pending_minor, p.currency)
            for p in found
            if p.status in (PaymentStatus.AUTHORIZED.value, PaymentStatus.PARTIALLY_CAPTURED.value)
            and (on_delivery or p.method not in ON_DELIVERY)
        ]
    from mercato.money import from_minor, to_minor

    left = to_minor(due, currency) - captured
    done = []
    for payment_id, open_minor, cur in capturable:
        if left <= 0:
            break
        take = min(left, open_minor)
        if take <= 0:
            continue
        try:
            done.append(
                payments.capture(
                    database,
                    payment_id,
                    from_minor(take, cur),
                    actor=actor or Principal.system("capture"),
                )
            )
            left -= take
        except Problem:
            continue  # reconciled later; the next shipment or the periodic job retries
    return done


def capture_sweep(database: Database, limit: int = 50) -> int:
    """The periodic retry: orders with shipped units and uncaptured authorisations."""
    with database.read() as session:
        from sqlalchemy import select

        candidates = list(
            session.scalars(
                select(Order.id)
                .where(
                    Order.status.in_(
                        [
                            OrderStatus.PARTIALLY_FULFILLED.value,
                            OrderStatus.FULFILLED.value,
                            OrderStatus.DELIVERED.value,
                            OrderStatus.PICKED_UP.value,
                        ]
                    )
                )
                .order_by(Order.updated_at.desc())
                .limit(limit)
            )
        )
    count = 0
    for order_id in candidates:
        count += len(capture_due(database, order_id))
    return count


# --- imported orders (marketplaces, ERP) --------------------------------------------------


@dataclass(frozen=True)
class ImportLine:
    sku: str
    quantity: int
    unit_price: Decimal
    discount: Decimal = ZERO
    tax: Decimal = ZERO


@dataclass(frozen=True)
class ImportRequest:
    channel_id: int
    external_id: str
    currency: str
    lines: Sequence[ImportLine]
    shipping_total: Decimal = ZERO
    tax_included: bool = True
    email: str | None = None
    customer_id: int | None = None
    shipping_address: dict[str, Any] | None = None
    paid: bool = True
    locale: str | None = None
    # (type, value, verified) of the buyer, resolved to a profile when customer_id is None.
    identities: Sequence[tuple[str, str, bool]] = ()
    customer_name: str | None = None


def resolve_buyer(
    session: Session,
    channel_id: int,
    customer_id: int | None,
    identities: Sequence[tuple[str, str, bool]],
    name: str | None,
    address: dict[str, Any] | None,
) -> int | None:
    """The customer an order is for: the given id, else the profile its identifiers
    resolve to (created when none matches), else none (a guest)."""
    if customer_id is not None or not identities:
        return customer_id
    resolved = customers.resolve_identity(
        session,
        channel_id=channel_id,
        identities=identities,
        name=name,
        address=address,
        field="body.identities",
        address_field="body.shipping_address",
    )
    return int(resolved.id)


def import_order(session: Session, actor: Principal, data: ImportRequest) -> tuple[Order, bool]:
    """An order sold elsewhere (a marketplace, an ERP): created confirmed with the prices and
    taxes it was sold at, paid there, then routed like any order. The same external id in
    the same channel returns the existing order (``False``: not created)."""
    existing = orders.by_external_id(session, data.channel_id, data.external_id)
    if existing is not None:
        return existing, False
    try:
        currency = validate_currency(data.currency)
    except ValueError as exc:
        raise ValidationProblem.field("body.currency", str(exc)) from exc
    ids = catalog.variant_ids_by_sku(session, [x.sku for x in data.lines])
    infos = catalog.variant_infos(session, ids.values())
    errors: list[FieldError] = []
    drafts = []
    for i, x in enumerate(data.lines):
        if x.sku not in ids:
            errors.append(FieldError(f"body.lines[{i}].sku", f"unknown SKU {x.sku}"))
            continue
        for name in ("unit_price", "discount", "tax"):
            try:
                check_precision(getattr(x, name), currency)
            except ValueError as exc:
                errors.append(FieldError(f"body.lines[{i}].{name}", str(exc)))
        if errors:
            continue
        info = infos[ids[x.sku]]
        subtotal = quantize(x.unit_price * x.quantity, currency)
        total = subtotal - x.discount + (ZERO if data.tax_included else x.tax)
        drafts.append(
            orders.LineDraft(
                variant_id=info.id,
                sku=info.sku,
                name=info.product_name,
                tax_class=info.tax_class,
                quantity=x.quantity,
                unit_price=x.unit_price,
                subtotal=subtotal,
                discount=x.discount,
                tax=x.tax,
                tax_rate=(
                    x.tax / (subtotal - x.discount - (x.tax if data.tax_included else 0))
                ).quantize(Decimal("0.0001"))
                if subtotal - x.discount > x.tax
                else ZERO,
                total=total,
                delivery_mode="ship",
            )
        )
    try:
        check_precision(data.shipping_total, currency)
    except ValueError as exc:
        errors.append(FieldError("body.shipping_total", str(exc)))
    if errors:
        raise ValidationProblem(errors[0]["reason"], errors=errors)
    try:
        # Check-then-insert races with a concurrent import of the same external id: the
        # unique index decides, and the loser answers the winner's order. The savepoint
        # also undoes a profile the loser's resolution created.
        with session.begin_nested():
            order, customer_id = _create_imported(session, actor, data, currency, drafts)
    except IntegrityError:
        existing = orders.by_external_id(session, data.channel_id, data.external_id)
        if existing is None:
            raise
        return existing, False
    if data.paid and order.grand_total > 0:
        payments.record_external_payment(
            session,
            reference=order.number,
            customer_id=customer_id,
            channel_id=data.channel_id,
            currency=currency,
            amount=order.grand_total,
            external_reference=data.external_id,
            order_id=order.id,
        )
    publish(
        session,
        "order.imported",
        {**orders.order_event(order), "external_id": data.external_id},
        aggregate_type="order",
        aggregate_id=order.id,
    )
    return order, True


def _create_imported(
    session: Session,
    actor: Principal,
    data: ImportRequest,
    currency: str,
    drafts: Sequence[orders.LineDraft],
) -> tuple[Order, int | None]:
    customer_id = resolve_buyer(
        session,
        data.channel_id,
        data.customer_id,
        data.identities,
        data.customer_name,
        data.shipping_address,
    )
    goods = sum((d.total for d in drafts), ZERO)
    tax = sum((d.tax for d in drafts), ZERO)
    draft = orders.OrderDraft(
        channel_id=data.channel_id,
        currency=currency,
        source="import",
        lines=drafts,
        subtotal=sum((d.subtotal for d in drafts), ZERO),
        discount_total=sum((d.discount for d in drafts), ZERO),
        shipping_total=data.shipping_total,
        tax_total=tax,
        grand_total=goods + data.shipping_total,
        tax_included=data.tax_included,
        customer_id=customer_id,
        external_id=data.external_id,
        locale=data.locale,
        email=data.email,
        shipping_address=data.shipping_address,
        billing_address=data.shipping_address,
        status=OrderStatus.CONFIRMED,
    )
    try:
        order = orders.create_order(session, actor, draft)
    except ValueError as exc:
        raise ValidationProblem.field("body", str(exc)) from exc
    return order, customer_id


# --- staff-created orders (call centre, endless aisle) ---------------------------------


def create_staff_order(
    database: Database,
    actor: Principal,
    data: Any,
    *,
    key: str | None,
    request_id: str | None = None,
) -> Any:
    """A cart built for the customer in the chosen channel, then the same checkout as a
    shopper's (stock held, codes, payment), recorded as taken by this staff member."""
    from mercato import idempotency
    from mercato.carts import service as carts
    from mercato.carts.schemas import DeliveryMode
    from mercato.channels import service as channels
    from mercato.checkout import service as checkout

    scope = f"staff-order:{actor.kind}:{actor.id}"[:120]
    payload = data.model_dump(mode="json")
    fingerprint = idempotency.request_fingerprint(payload)
    with database.transaction() as session:
        session.info["request_id"] = request_id
        channel = channels.context_for_channel(session, data.channel_id)
        if key is not None and not idempotency.try_claim(session, scope, key, fingerprint):
            record = idempotency.record_for(session, scope, key)
            assert record is not None
            if record.request_hash != fingerprint:
                raise ValidationProblem(
                    "this Idempotency-Key was used with a different body",
                    code="idempotency-key-reused",
                )
            if record.status_code != idempotency.IN_PROGRESS:
                return checkout.Outcome(record.status_code, dict(record.response or {}))
            token = (record.response or {}).get("cart_token")
            if not token:
                raise UnprocessableState(
                    "this order is being taken; retry in a moment", code="idempotency-key-in-use"
                )
            customer_id = carts.owner_of(session, token)
        else:
            address = data.shipping_address
            customer_id = resolve_buyer(
                session,
                data.channel_id,
                data.customer_id,
                [(i.type.value, i.value, i.verified) for i in data.identities],
                data.customer_name,
                None if address is None else address.model_dump(),
            )
            cart = carts.create_cart(session, channel, customer_id, data.currency)
            ids = catalog.variant_ids_by_sku(session, [x.sku for x in data.lines if x.sku])
            for i, x in enumerate(data.lines):
                variant_id = x.variant_id if x.variant_id is not None else ids.get(x.sku or "")
                if variant_id is None:
                    raise ValidationProblem.field(f"body.lines[{i}]", "a known variant_id or sku")
                carts.add_line(
                    session,
                    cart,
                    channel,
                    variant_id,
                    x.quantity,
                    DeliveryMode(x.delivery_mode),
                    x.pickup_location_id,
                )
            changes: dict[str, Any] = {"email": data.email} if data.email else {}
            if address is not None:
                changes["shipping_address"] = address.model_dump()
            carts.update_cart(session, cart, channel, changes, address, None)
            computed = carts.compute(session, cart, channel, channel.default_locale)
            option = data.shipping_option_id or (
                computed.shipping_options[0].option_id if computed.shipping_options else None
            )
            if option is not None:
                cart.shipping_option_id = option
            for code in data.codes:
                carts.apply_code(session, cart, channel, code, channel.default_locale)
            token = cart.token
            if key is not None:
                idempotency.finish(
                    session, scope, key, idempotency.IN_PROGRESS, {"cart_token": token}
                )
    outcome = checkout.checkout(
        database,
        cart_token=token,
        channel=channel,
        customer_id=customer_id,
        locale=channel.default_locale,
        request=checkout.CheckoutRequest(
            tenders=[t.to_request() for t in data.payments],
            email=data.email,
            note=data.note,
            actor=actor,
            source="staff",
        ),
        key=key,
        payload=payload,
        request_id=request_id,
    )
    if key is not None and outcome.status_code != 202:
        with database.transaction() as session:
            idempotency.finish(session, scope, key, outcome.status_code, outcome.body)
    return outcome
