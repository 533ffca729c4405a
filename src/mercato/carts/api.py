"""Shopper-facing carts: one cart, opened from any channel, in that channel's language."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Annotated, Any

from fastapi import Query
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from mercato.carts import import_charges, service
from mercato.carts.deps import (
    CartRequest,
    CodeInPath,
    HoldRequest,
    LineId,
    ShopperRequest,
    TokenRequest,
)
from mercato.carts.models import Cart
from mercato.carts.schemas import (
    AppliedPromotionOut,
    CartHoldIn,
    CartHoldOut,
    CartIn,
    CartLineOut,
    CartOut,
    CartPatch,
    CodeIn,
    CodeStatusOut,
    DeliveryMode,
    DeliveryOptionsOut,
    HeldUnitsOut,
    ImportChargesOut,
    LineDeliveryOut,
    LineDiscountOut,
    LineIn,
    LinePatch,
    MoneyOut,
    PickupStoreOut,
    ShippingOptionOut,
    TaxLineOut,
    TaxStatus,
)
from mercato.deps import IdempotencyKey
from mercato.errors import NotFound, Unauthorized
from mercato.idempotency import Idempotent, shopper_scope
from mercato.inventory import service as inventory
from mercato.money import format_money
from mercato.orders import service as orders
from mercato.routing import router
from mercato.storefront.api import resolve_locale

api = router("/v1/store/carts", tags=["carts"])


def _money(amount: Decimal, currency: str, locale: str) -> MoneyOut:
    return MoneyOut(amount=amount, formatted=format_money(amount, currency, locale))


def cart_view(session: Session, computed: service.CartComputation) -> CartOut:
    cart, currency, locale = computed.cart, computed.currency, computed.locale

    def m(amount: Decimal) -> MoneyOut:
        return _money(amount, currency, locale)

    number = orders.get_order(session, cart.order_id).number if cart.order_id else None
    return CartOut(
        token=cart.token,
        status=cart.status,
        channel=computed.channel.code,
        locale=locale,
        currency=currency,
        price_list=cart.price_list,
        customer_id=cart.customer_id,
        email=cart.email,
        shipping_address=cart.shipping_address,
        billing_address=cart.billing_address,
        lines=[
            CartLineOut(
                id=x.line.id,
                variant_id=x.line.variant_id,
                sku=x.sku,
                name=x.name,
                options=x.options,
                quantity=x.line.quantity,
                delivery_mode=DeliveryMode(x.line.delivery_mode),
                pickup_location_id=x.line.pickup_location_id,
                unit_price=None if x.unit_price is None else m(x.unit_price),
                subtotal=m(x.subtotal),
                discount=m(x.discount),
                tax=m(x.tax),
                tax_rate=x.tax_rate,
                total=m(x.total),
                discounts=[LineDiscountOut(promotion_id=p, amount=a) for p, a in x.discounts],
                available=x.available,
                issues=x.issues,
            )
            for x in computed.lines
        ],
        codes=[
            CodeStatusOut(code=c.code, applied=c.applied, reason=c.reason) for c in computed.codes
        ],
        promotions=[
            AppliedPromotionOut(
                promotion_id=p.promotion_id,
                name=p.name,
                code=p.code,
                kind=p.kind.value,
                amount=m(p.amount),
            )
            for p in computed.promotions
        ],
        shipping_options=[_option(o, currency, locale) for o in computed.shipping_options],
        shipping_option_id=computed.shipping_option.option_id if computed.shipping_option else None,
        subtotal=m(computed.subtotal),
        discount_total=m(computed.discount_total),
        shipping_total=m(computed.shipping_total),
        tax_total=m(computed.tax_total),
        grand_total=m(computed.grand_total),
        tax_included=computed.tax_included,
        taxes=[
            TaxLineOut(
                name=t["name"],
                jurisdiction=t["jurisdiction"],
                rate=t["rate"],
                taxable=t["taxable"],
                tax=m(t["tax"]),
            )
            for t in computed.taxes
        ],
        import_charges=_import_charges(computed.import_charges, locale),
        issues=computed.issues,
        can_checkout=computed.can_checkout and cart.status == "open",
        order_number=number,
        held_until=service.held_until(session, cart),
        updated_at=cart.updated_at,
        tax_status=TaxStatus.PENDING if computed.tax_pending else TaxStatus.CALCULATED,
        tax_note=None if computed.tax_pending is None else str(computed.tax_pending),
    )


def _option(o: service.ShippingChoice, currency: str, locale: str) -> ShippingOptionOut:
    return ShippingOptionOut(
        option_id=o.option_id,
        carrier=o.carrier,
        service=o.service,
        name=o.name,
        amount=_money(o.amount, currency, locale),
        min_days=o.min_days,
        max_days=o.max_days,
        origin_country=o.origin_country,
    )


def _import_charges(
    charges: import_charges.ImportCharges | None, locale: str
) -> ImportChargesOut | None:
    if charges is None:
        return None
    currency = charges.currency
    return ImportChargesOut(
        origin_country=charges.origin_country,
        destination_country=charges.destination_country,
        duty=_money(charges.duty, currency, locale),
        import_tax=_money(charges.import_tax, currency, locale),
        total=_money(charges.total, currency, locale),
        payment="with_order" if charges.prepaid else "on_delivery",
        estimated=charges.estimated,
        de_minimis_applied=charges.de_minimis_applied,
        note=charges.note,
    )


def _locale(cart_request: CartRequest) -> str:
    return resolve_locale(cart_request.channel, cart_request.locale, cart_request.accept_language)


def _view(cart_request: CartRequest, token: str) -> CartOut:
    session = cart_request.session
    cart = service.get_cart(session, token, cart_request.customer_id)
    chosen = _locale(cart_request)
    return cart_view(session, service.compute(session, cart, cart_request.channel, chosen))


@api.post("", response_model=CartOut, status_code=201)
def create_cart(body: CartIn, cart_request: ShopperRequest, key: IdempotencyKey) -> JSONResponse:
    """A new cart in the channel's (or the given) currency. Keep its ``token``.

    Send an ``Idempotency-Key``: a retry gets the same cart, never a second one.
    """
    session, channel = cart_request.session, cart_request.channel
    customer_id = cart_request.customer_id

    def run() -> CartOut:
        cart = service.create_cart(session, channel, customer_id, body.currency, body.country)
        chosen = _locale(cart_request)
        return cart_view(session, service.compute(session, cart, channel, chosen))

    scope = shopper_scope("cart.create", channel.id, customer_id)
    return Idempotent(session, scope, key, body.model_dump(mode="json")).run(run)


@api.get("/mine", response_model=CartOut)
def my_cart(cart_request: ShopperRequest) -> CartOut:
    """The logged-in customer's open cart, from whichever channel it was started in."""
    customer_id = cart_request.customer_id
    if customer_id is None:
        raise Unauthorized("a customer bearer token is required", code="missing-customer-token")
    cart = service.open_cart_of(cart_request.session, customer_id)
    if cart is None:
        raise NotFound("no open cart", code="cart-not-found")
    return _view(cart_request, cart.token)


@api.get("/{token}", response_model=CartOut)
def get_cart(cart_request: TokenRequest) -> CartOut:
    """The cart with every total, in this channel's language; lines it cannot sell say why."""
    return _view(cart_request, cart_request.token)


@api.patch("/{token}", response_model=CartOut)
def update_cart(body: CartPatch, cart_request: TokenRequest) -> CartOut:
    """Email, addresses, chosen shipping option, currency."""
    cart = cart_request.cart()
    service.update_cart(
        cart_request.session,
        cart,
        cart_request.channel,
        body.model_dump(exclude_unset=True),
        body.shipping_address,
        body.billing_address,
    )
    return _view(cart_request, cart_request.token)


@api.post("/{token}/lines", response_model=CartOut)
def add_line(body: LineIn, cart_request: TokenRequest, key: IdempotencyKey) -> JSONResponse:
    """Add units of a variant. Send an ``Idempotency-Key``: a retry adds them only once."""
    cart = cart_request.cart()

    def run() -> CartOut:
        service.add_line(
            cart_request.session,
            cart,
            cart_request.channel,
            body.variant_id,
            body.quantity,
            body.delivery_mode,
            body.pickup_location_id,
        )
        return _view(cart_request, cart_request.token)

    payload = body.model_dump(mode="json")
    return _idempotent(cart_request, "cart.lines", key, payload).run(run, 200)


@api.patch("/{token}/lines/{line_id}", response_model=CartOut)
def update_line(body: LinePatch, cart_request: TokenRequest, line_id: LineId) -> CartOut:
    """Change quantity (0 removes the line) or delivery (ship, or pickup at a store)."""
    cart = cart_request.cart()
    changes = body.model_dump(exclude_unset=True)
    service.update_line(cart_request.session, cart, cart_request.channel, line_id, changes)
    return _view(cart_request, cart_request.token)


@api.delete("/{token}/lines/{line_id}", response_model=CartOut)
def remove_line(cart_request: TokenRequest, line_id: LineId) -> CartOut:
    cart = cart_request.cart()
    service.update_line(cart_request.session, cart, cart_request.channel, line_id, {"quantity": 0})
    return _view(cart_request, cart_request.token)


@api.post("/{token}/codes", response_model=CartOut)
def apply_code(body: CodeIn, cart_request: TokenRequest, key: IdempotencyKey) -> JSONResponse:
    """Apply a discount code; a code that can never work here is a 422 with its reason."""
    session, channel = cart_request.session, cart_request.channel
    cart = cart_request.cart()
    chosen = _locale(cart_request)

    def run() -> CartOut:
        return cart_view(session, service.apply_code(session, cart, channel, body.code, chosen))

    payload = body.model_dump(mode="json")
    return _idempotent(cart_request, "cart.codes", key, payload).run(run, 200)


@api.delete("/{token}/codes/{code}", response_model=CartOut)
def remove_code(cart_request: TokenRequest, code: CodeInPath) -> CartOut:
    cart = cart_request.cart()
    service.remove_code(cart_request.session, cart, cart_request.channel, code)
    return _view(cart_request, cart_request.token)


@api.post("/{token}/customer", response_model=CartOut)
def attach_customer(cart_request: TokenRequest, key: IdempotencyKey) -> JSONResponse:
    """After login: the guest cart joins the customer's open cart (the answer has its token)."""
    customer_id = cart_request.customer_id
    if customer_id is None:
        raise Unauthorized("a customer bearer token is required", code="missing-customer-token")

    def run() -> CartOut:
        # Inside: a retry finds the cart already the customer's and gets the first answer.
        session = cart_request.session
        cart = service.get_cart(session, cart_request.token, None)
        merged = service.attach_customer(session, cart, cart_request.channel, customer_id)
        return _view(cart_request, merged.token)

    payload = {"customer_id": customer_id}
    return _idempotent(cart_request, "cart.customer", key, payload).run(run, 200)


def _idempotent(
    cart_request: CartRequest, operation: str, key: str | None, payload: Any
) -> Idempotent:
    """A cart operation run once per ``Idempotency-Key`` of this cart."""
    scope = _cart_scope(operation, cart_request.token)
    return Idempotent(cart_request.session, scope, key, payload)


def _cart_scope(operation: str, token: str) -> str:
    """Keys of a cart's operations are the cart's: its token is what the shopper holds."""
    return f"{operation}:{token}"[:120]


def _hold_view(session: Session, cart: Cart) -> CartHoldOut:
    until = service.held_until(session, cart)
    return CartHoldOut(
        token=cart.token,
        held_until=until,
        holds=[
            HeldUnitsOut(variant_id=r.variant_id, location_id=r.location_id, quantity=r.quantity)
            for r in (service.held_units(session, cart) if until else [])
        ],
    )


@api.post(
    "/{token}/hold",
    response_model=CartHoldOut,
    responses={409: {"description": "Not enough stock for every line: nothing is held"}},
)
def hold_stock(body: CartHoldIn, cart_request: HoldRequest, key: IdempotencyKey) -> JSONResponse:
    """Hold the units of every line for a while (a flash sale, a slow payment form).

    All or nothing; holding again replaces the hold; changing the lines lets it go; it
    expires by itself; checkout turns it into the order's hold. Send an
    ``Idempotency-Key`` to retry safely.
    """
    session = cart_request.session
    cart = cart_request.cart()

    def run() -> CartHoldOut:
        ttl = timedelta(seconds=body.ttl_seconds)
        service.hold_stock(session, cart, cart_request.channel, ttl)
        return _hold_view(session, cart)

    payload = {"cart": cart_request.token, **body.model_dump(mode="json")}
    return _idempotent(cart_request, "cart.hold", key, payload).run(run, 200)


@api.get("/{token}/hold", response_model=CartHoldOut)
def get_hold(cart_request: HoldRequest) -> CartHoldOut:
    """What the cart's hold still holds (nothing once it expired or was let go)."""
    return _hold_view(cart_request.session, cart_request.cart())


@api.delete("/{token}/hold", response_model=CartHoldOut)
def release_hold(cart_request: HoldRequest) -> CartHoldOut:
    """Give the held units back now."""
    cart = cart_request.cart()
    service.let_hold_go(cart_request.session, cart, cart_request.channel)
    return _hold_view(cart_request.session, cart)


@api.get("/{token}/delivery-options", response_model=DeliveryOptionsOut)
def delivery_options(
    cart_request: TokenRequest,
    latitude: Annotated[float | None, Query(ge=-90, le=90)] = None,
    longitude: Annotated[float | None, Query(ge=-180, le=180)] = None,
) -> DeliveryOptionsOut:
    """Per line: ship to the address, pick up at a store with stock (nearest first), or ship
    from a store; plus the carriers' shipping options for the address."""
    session, channel = cart_request.session, cart_request.channel
    cart = cart_request.cart()
    chosen = _locale(cart_request)
    computed = service.compute(session, cart, channel, chosen)
    address = cart.shipping_address or {}
    lat = latitude if latitude is not None else address.get("latitude")
    lng = longitude if longitude is not None else address.get("longitude")
    variant_ids = [x.line.variant_id for x in computed.lines]
    nearby = inventory.nearby_stock(session, variant_ids, channel.location_ids, lat, lng, limit=50)
    stores = [n for n in nearby if n.can_pickup]
    ship_country_ok = not address or channel.ships_to(address.get("country", ""))
    lines = [_line_delivery(x, nearby, stores, ship_country_ok) for x in computed.lines]
    return DeliveryOptionsOut(
        shipping_options=[_option(o, computed.currency, chosen) for o in computed.shipping_options],
        lines=lines,
    )


def _line_delivery(
    x: service.LineComputation,
    nearby: list[inventory.NearbyStock],
    stores: list[inventory.NearbyStock],
    ship_country_ok: bool,
) -> LineDeliveryOut:
    """How one line can reach the shopper: shipped, shipped from a store, or picked up."""
    holding = [n for n in stores if n.available.get(x.line.variant_id, 0) >= x.line.quantity]
    return LineDeliveryOut(
        line_id=x.line.id,
        variant_id=x.line.variant_id,
        ship=ship_country_ok and x.available >= x.line.quantity,
        ship_from_store=ship_country_ok
        and any(
            n.can_ship_from_store and n.available.get(x.line.variant_id, 0) >= x.line.quantity
            for n in nearby
        ),
        pickup_stores=[
            PickupStoreOut(
                location_id=n.location_id,
                code=n.code,
                name=n.name,
                distance_km=n.distance_km,
                available=n.available.get(x.line.variant_id, 0),
            )
            for n in holding[:10]
        ],
    )
