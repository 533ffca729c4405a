"""Orders taken by staff for a customer: the call centre, the endless aisle in a store.

A cart is built for the customer in the chosen channel (carts; the buyer resolved to a
profile from the identifiers given), then it goes through the same checkout as a
shopper's (stock held, codes, payment), recorded as taken by the staff member. With an
Idempotency-Key a retry answers the first outcome, and a retry while the first is still
running finds the cart it built.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pydantic import Field
from sqlalchemy.orm import Session

from mercato import idempotency
from mercato.auth.principal import Principal
from mercato.carts import service as carts
from mercato.carts.schemas import AddressIn, DeliveryMode
from mercato.catalog import service as catalog
from mercato.channels import service as channels
from mercato.channels.context import ChannelContext
from mercato.customers.schemas import IdentityIn
from mercato.db import Database
from mercato.errors import UnprocessableState, ValidationProblem
from mercato.flows import checkout
from mercato.flows.imported_orders import resolve_buyer
from mercato.payments.schemas import TenderIn
from mercato.schemas import StrictModel


class StaffLineIn(StrictModel):
    variant_id: int | None = None
    sku: str | None = Field(default=None, max_length=80)
    quantity: int = Field(ge=1, le=999)
    delivery_mode: str = Field(default="ship", pattern="^(ship|pickup)$")
    pickup_location_id: int | None = None


class StaffOrderIn(StrictModel):
    """An order taken by staff for a customer: call centre, endless aisle at the POS."""

    channel_id: int
    customer_id: int | None = None
    # Without customer_id: who the buyer is (a phone number at the POS, a loyalty card),
    # resolved to a profile (see customers identity resolution).
    identities: list[IdentityIn] = Field(default_factory=list, max_length=10)
    customer_name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=254)
    currency: str | None = None
    lines: list[StaffLineIn] = Field(min_length=1, max_length=100)
    shipping_address: AddressIn | None = None
    shipping_option_id: str | None = Field(
        default=None, max_length=200, description="Default: the cheapest option"
    )
    codes: list[str] = Field(default_factory=list, max_length=5)
    payments: list[TenderIn] = Field(
        min_length=1,
        max_length=5,
        description="Up to five tenders adding up to the grand total exactly",
    )
    note: str | None = Field(default=None, max_length=1000)


def create_staff_order(
    database: Database,
    actor: Principal,
    data: StaffOrderIn,
    *,
    key: str | None,
    request_id: str | None = None,
) -> Any:
    """A cart built for the customer in the chosen channel, then the same checkout as a
    shopper's (stock held, codes, payment), recorded as taken by this staff member."""
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
            customer_id, computed = _build_cart(session, channel, data)
            token = computed.cart.token
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


@dataclass(frozen=True)
class StaffQuote:
    """What the order would cost now: read out to the caller before taking payment."""

    currency: str
    lines: list[tuple[str, str, int, Decimal]]  # sku, name, quantity, line total
    subtotal: Decimal
    discount_total: Decimal
    shipping_total: Decimal
    tax_total: Decimal
    grand_total: Decimal
    shipping_option: str | None
    issues: list[str]


def _build_cart(
    session: Session, channel: ChannelContext, data: StaffOrderIn
) -> tuple[int | None, carts.CartComputation]:
    """The customer's cart in the channel, with the lines, address, shipping and codes."""
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
        chosen = {"shipping_option_id": option}
        carts.update_cart(session, cart, channel, chosen, None, None)
    for code in data.codes:
        carts.apply_code(session, cart, channel, code, channel.default_locale)
    return customer_id, computed


def quote_staff_order(database: Database, actor: Principal, data: StaffOrderIn) -> StaffQuote:
    """The totals the order would have (the same cart the order would be taken from),
    nothing kept: the cart is built in a savepoint rolled back at once."""
    with database.transaction() as session:
        savepoint = session.begin_nested()
        try:
            channel = channels.context_for_channel(session, data.channel_id)
            _customer, first = _build_cart(session, channel, data)
            # Again: the shipping option was chosen after the first computation.
            computed = carts.compute(session, first.cart, channel, channel.default_locale)
            return StaffQuote(
                currency=computed.currency,
                lines=[(x.sku, x.name, x.line.quantity, x.total) for x in computed.lines],
                subtotal=computed.subtotal,
                discount_total=computed.discount_total,
                shipping_total=computed.shipping_total,
                tax_total=computed.tax_total,
                grand_total=computed.grand_total,
                shipping_option=None
                if computed.shipping_option is None
                else computed.shipping_option.name,
                issues=[*computed.issues, *(i for x in computed.lines for i in x.issues)],
            )
        finally:
            savepoint.rollback()
