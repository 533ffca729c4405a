"""Every unsafe POST of the shopper API honours Idempotency-Key.

A storefront that retries after a lost answer (a timeout, a killed process) must not add
the units again, open a second cart or record a second case. For each POST under
``/v1/store`` the table below prepares what it needs in the demo business and sends it
twice with one key: the retry answers the first answer (``Idempotent-Replayed``) and
changes nothing more; the same key with another body is a 422. A route that is not in
the table (nor, with its reason, in ``NOT_UNSAFE``) fails the walk.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from mercato.carts.models import Cart, CartLine
from mercato.customers.models import Customer, CustomerRefreshToken
from mercato.privacy.models import PrivacyRequest
from mercato.returns.models import Return
from mercato.support.models import SupportCase, SupportMessage
from tests.auth.test_permission_matrix import _api_routes
from tests.commerce.conftest import DemoWorld
from tests.commerce.helpers import TOKYO, add, card_token, new_cart, ok, pay, register, ship_to
from tests.conftest import assert_problem
from tests.demo_world import staff_login
from tests.returns.conftest import fulfil, line, place, product

Headers = dict[str, str]

# POSTs that change nothing a retry could repeat, with the reason.
NOT_UNSAFE = {
    "/v1/store/customers/login": "a sign-in: a retry is another sign-in, and a stored answer "
    "would keep a bearer token for replay",
    "/v1/store/gift-cards/balance": "a read sent as POST to keep the code out of URLs",
    "/v1/store/customers/logout": "ends the session its token names: a repeat finds it ended "
    "and answers the same, nothing is created",
}


@dataclass
class Retry:
    path: str
    headers: Headers
    body: Any = None
    # Another body under the same key (None where the request has no body).
    other: Any = None
    # What the first call changed and the retry must leave as it is.
    effect: Callable[[], Any] | None = None


def _count(world: DemoWorld, model: Any, *where: Any) -> int:
    with world.database.read() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def _shopper(world: DemoWorld) -> Headers:
    key = world.key("web-jp")
    return {**key, **register(world.client, key, f"idem-{uuid.uuid4().hex[:8]}@example.com")}


def _cart_with_item(world: DemoWorld, headers: Headers, units: int = 1) -> str:
    item = world.new_product({"WH-TYO": 20}, {"JP": {"JPY": "1200"}})
    token = str(new_cart(world.client, headers)["token"])
    add(world.client, headers, token, item, units)
    return token


def _create_cart(world: DemoWorld) -> Retry:
    return Retry(
        "/v1/store/carts",
        world.key("web-jp"),
        {},
        {"currency": "JPY"},
        lambda: _count(world, Cart),
    )


def _add_line(world: DemoWorld) -> Retry:
    key = world.key("web-jp")
    item = world.new_product({"WH-TYO": 20}, {"JP": {"JPY": "1200"}})
    token = new_cart(world.client, key)["token"]
    cart_id = ok(world.client.get(f"/v1/store/carts/{token}", headers=key))

    def units() -> list[int]:
        lines = ok(world.client.get(f"/v1/store/carts/{token}", headers=key))["lines"]
        return [x["quantity"] for x in lines]

    assert cart_id["lines"] == []
    return Retry(
        f"/v1/store/carts/{token}/lines",
        key,
        {"variant_id": item, "quantity": 5},
        {"variant_id": item, "quantity": 6},
        units,
    )


def _apply_code(world: DemoWorld) -> Retry:
    staff = staff_login(world)
    promotion = ok(
        world.client.post(
            "/v1/promotions",
            headers=staff,
            json={
                "name": f"Retry {uuid.uuid4().hex[:6]}",
                "status": "active",
                "requires_code": True,
                "action": {"type": "percent_off_items", "percent": "10"},
            },
        ),
        201,
    )
    code = f"RETRY{uuid.uuid4().hex[:6].upper()}"
    ok(
        world.client.post(
            f"/v1/promotions/{promotion['id']}/codes", headers=staff, json={"code": code}
        ),
        201,
    )
    key = world.key("web-jp")
    token = _cart_with_item(world, key)
    return Retry(
        f"/v1/store/carts/{token}/codes",
        key,
        {"code": code},
        {"code": code.lower()},
        lambda: ok(world.client.get(f"/v1/store/carts/{token}", headers=key))["codes"],
    )


def _attach_customer(world: DemoWorld) -> Retry:
    key = world.key("web-jp")
    shopper = _shopper(world)
    token = _cart_with_item(world, key)
    return Retry(
        f"/v1/store/carts/{token}/customer",
        shopper,
        effect=lambda: _count(world, CartLine),
    )


def _hold(world: DemoWorld) -> Retry:
    key = world.key("web-jp")
    token = _cart_with_item(world, key, 2)
    return Retry(
        f"/v1/store/carts/{token}/hold",
        key,
        {"ttl_seconds": 120},
        {"ttl_seconds": 300},
        lambda: ok(world.client.get(f"/v1/store/carts/{token}/hold", headers=key))["holds"],
    )


def _checkout(world: DemoWorld) -> Retry:
    key = world.key("web-jp")
    token = _cart_with_item(world, key)
    cart = ship_to(world.client, key, token, TOKYO)
    tender = {
        "method": "test_gateway",
        "amount": cart["grand_total"]["amount"],
        "token": card_token(world.client, key),
    }
    return Retry(
        f"/v1/store/carts/{token}/checkout",
        key,
        {"payments": [tender]},
        {"payments": [{**tender, "amount": "1"}]},
        lambda: ok(world.client.get(f"/v1/store/carts/{token}", headers=key))["order_number"],
    )


def _register(world: DemoWorld) -> Retry:
    body = {"email": f"retry-{uuid.uuid4().hex[:8]}@example.com", "password": "a long password"}
    return Retry(
        "/v1/store/customers",
        world.key("web-jp"),
        body,
        {**body, "password": "another long password"},
        lambda: _count(world, Customer),
    )


def _refresh(world: DemoWorld) -> Retry:
    key = world.key("web-jp")
    email = f"refresh-{uuid.uuid4().hex[:8]}@example.com"
    refresh_token = ok(
        world.client.post(
            "/v1/store/customers", headers=key, json={"email": email, "password": "a long password"}
        ),
        201,
    )["refresh_token"]
    return Retry(
        "/v1/store/customers/token",
        key,
        {"refresh_token": refresh_token},
        # Keys are kept per refresh token (a shopper has no other identity here), so another
        # token under the same key is another request, not a reused key.
        None,
        lambda: _count(world, CustomerRefreshToken),
    )


def _change_password(world: DemoWorld) -> Retry:
    body = {"current_password": "a long password", "new_password": "a longer new password"}
    return Retry(
        "/v1/store/customers/me/password",
        _shopper(world),
        body,
        {**body, "new_password": "yet another new password"},
    )


def _add_address(world: DemoWorld) -> Retry:
    shopper = _shopper(world)
    address = {"name": "Aiko", "line1": "1-2-3 Jingumae", "city": "Tokyo", "country": "JP"}
    return Retry(
        "/v1/store/customers/me/addresses",
        shopper,
        address,
        {**address, "city": "Osaka"},
        lambda: len(ok(world.client.get("/v1/store/customers/me/addresses", headers=shopper))),
    )


def _card_token(world: DemoWorld) -> Retry:
    card = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2031, "cvc": "123"}
    return Retry(
        "/v1/store/payments/test-gateway/tokens",
        world.key("web-jp"),
        card,
        {**card, "cvc": "124"},
    )


def _waiting_for_3ds(world: DemoWorld) -> tuple[Headers, dict[str, Any]]:
    key = world.key("web-jp")
    token = _cart_with_item(world, key)
    cart = ship_to(world.client, key, token, TOKYO)
    pending = pay(
        world.client,
        key,
        token,
        cart["grand_total"]["amount"],
        card="3ds",
        idempotency_key=str(uuid.uuid4()),
    )
    assert pending.status_code == 202, pending.text
    return key, pending.json()


def _complete_action(world: DemoWorld) -> Retry:
    key, order = _waiting_for_3ds(world)
    action = order["payments"][0]
    body = {"client_secret": action["client_secret"]}
    return Retry(
        f"/v1/store/payments/{action['payment_id']}/complete-action",
        key,
        body,
        {**body, "outcome": "failed"},
    )


def _complete_order(world: DemoWorld) -> Retry:
    key, order = _waiting_for_3ds(world)
    action = order["payments"][0]
    ok(
        world.client.post(
            f"/v1/store/payments/{action['payment_id']}/complete-action",
            headers=key,
            json={"client_secret": action["client_secret"]},
        )
    )
    return Retry(f"/v1/store/orders/{order['number']}/complete", key)


def _consents(world: DemoWorld) -> Retry:
    shopper = _shopper(world)
    change = {"purpose": "marketing_email", "granted": True, "wording_version": "v1"}
    return Retry(
        "/v1/store/consents",
        shopper,
        {"changes": [change]},
        {"changes": [{**change, "granted": False}]},
        lambda: ok(world.client.get("/v1/store/consents/history", headers=shopper))["items"],
    )


def _open_case(world: DemoWorld) -> Retry:
    body = {
        "subject": "Where is my parcel?",
        "message": {"body": "It has not arrived."},
        "email": f"case-{uuid.uuid4().hex[:6]}@example.com",
    }
    return Retry(
        "/v1/store/support/cases",
        world.key("web-jp"),
        body,
        {**body, "subject": "Another question"},
        lambda: _count(world, SupportCase),
    )


def _my_case(world: DemoWorld, shopper: Headers) -> int:
    body = {"subject": "A question", "message": {"body": "Hello"}}
    opened = world.client.post("/v1/store/support/cases", headers=shopper, json=body)
    return int(ok(opened, 201)["id"])


def _write_to_case(world: DemoWorld) -> Retry:
    shopper = _shopper(world)
    case_id = _my_case(world, shopper)
    return Retry(
        f"/v1/store/support/cases/{case_id}/messages",
        shopper,
        {"body": "Any news?"},
        {"body": "Any news at all?"},
        lambda: _count(world, SupportMessage, SupportMessage.case_id == case_id),
    )


def _rate_case(world: DemoWorld) -> Retry:
    shopper = _shopper(world)
    case_id = _my_case(world, shopper)
    agent = staff_login(world, "support")
    for status in ("resolved", "closed"):
        ok(
            world.client.post(
                f"/v1/support/cases/{case_id}/status", headers=agent, json={"status": status}
            )
        )
    return Retry(
        f"/v1/store/support/cases/{case_id}/rating",
        shopper,
        {"satisfaction": 5},
        {"satisfaction": 4},
    )


def _export(world: DemoWorld) -> Retry:
    shopper = _shopper(world)
    return Retry(
        "/v1/store/customers/me/data-export",
        shopper,
        effect=lambda: _count(world, PrivacyRequest),
    )


def _returnable(world: DemoWorld) -> tuple[Headers, dict[str, Any]]:
    tee = product(world, {"M": {"JPY": "2900"}}, {"WH-TYO": 5})
    order = place(world, [(tee["M"], 2)])
    fulfil(world, order)
    app = {**world.key("app"), **order.customer}
    return app, {"order_number": order.number, "lines": [line(order, tee["M"], 1, "size_fit")]}


def _create_return(world: DemoWorld) -> Retry:
    app, body = _returnable(world)
    other = {**body, "lines": [{**body["lines"][0], "quantity": 2}]}
    return Retry("/v1/store/returns", app, body, other, lambda: _count(world, Return))


def _cancel_return(world: DemoWorld) -> Retry:
    app, body = _returnable(world)
    number = ok(world.client.post("/v1/store/returns", headers=app, json=body), 201)["number"]
    return Retry(f"/v1/store/returns/{number}/cancel", app)


RETRIES: dict[str, Callable[[DemoWorld], Retry]] = {
    "/v1/store/carts": _create_cart,
    "/v1/store/carts/{token}/lines": _add_line,
    "/v1/store/carts/{token}/codes": _apply_code,
    "/v1/store/carts/{token}/customer": _attach_customer,
    "/v1/store/carts/{token}/hold": _hold,
    "/v1/store/carts/{token}/checkout": _checkout,
    "/v1/store/customers": _register,
    "/v1/store/customers/token": _refresh,
    "/v1/store/customers/me/password": _change_password,
    "/v1/store/customers/me/addresses": _add_address,
    "/v1/store/payments/test-gateway/tokens": _card_token,
    "/v1/store/payments/{payment_id}/complete-action": _complete_action,
    "/v1/store/orders/{number}/complete": _complete_order,
    "/v1/store/consents": _consents,
    "/v1/store/support/cases": _open_case,
    "/v1/store/support/cases/{case_id}/messages": _write_to_case,
    "/v1/store/support/cases/{case_id}/rating": _rate_case,
    "/v1/store/customers/me/data-export": _export,
    "/v1/store/returns": _create_return,
    "/v1/store/returns/{number}/cancel": _cancel_return,
}


def _store_posts(app: Any) -> list[Any]:
    return [
        route
        for route in _api_routes(app.routes)
        if route.path.startswith("/v1/store/") or route.path == "/v1/store"
        if "POST" in (route.methods or ())
    ]


def test_every_unsafe_store_post_takes_an_idempotency_key(demo_world: DemoWorld) -> None:
    """The walk: a new POST under /v1/store fails here until it honours the key."""
    app: Any = demo_world.client.app
    paths = set()
    for route in _store_posts(app):
        paths.add(route.path)
        if route.path in NOT_UNSAFE:
            continue
        assert route.path in RETRIES, f"POST {route.path}: add it to RETRIES in this module"
        names = {d.call.__name__ for d in route.dependant.dependencies if d.call is not None}
        assert "idempotency_key" in names, f"POST {route.path} ignores Idempotency-Key"
    assert paths == set(RETRIES) | set(NOT_UNSAFE), "stale entries in RETRIES or NOT_UNSAFE"


@pytest.mark.parametrize("path", sorted(RETRIES))
def test_a_retry_answers_the_first_answer_and_changes_nothing(
    demo_world: DemoWorld, path: str
) -> None:
    client = demo_world.client
    retry = RETRIES[path](demo_world)
    headers = {**retry.headers, "Idempotency-Key": str(uuid.uuid4())}
    first = client.post(retry.path, headers=headers, json=retry.body)
    assert 200 <= first.status_code < 300, first.text
    assert "Idempotent-Replayed" not in first.headers
    effect = retry.effect() if retry.effect else None

    again = client.post(retry.path, headers=headers, json=retry.body)
    assert again.status_code == first.status_code, again.text
    assert again.headers.get("Idempotent-Replayed") == "true"
    if first.content:
        assert again.json() == first.json()
    else:
        assert again.content == b""
    if retry.effect:
        assert retry.effect() == effect

    if retry.other is not None:
        reused = client.post(retry.path, headers=headers, json=retry.other)
        assert_problem(reused, 422, "idempotency-key-reused")
        if retry.effect:
            assert retry.effect() == effect


def test_a_retried_add_to_cart_adds_the_units_once_even_concurrently(
    demo_world: DemoWorld,
) -> None:
    """Shoppers paid for units a lost answer made their storefront add twice."""
    client, key = demo_world.client, demo_world.key("web-jp")
    item = demo_world.new_product({"WH-TYO": 50}, {"JP": {"JPY": "1500"}})
    created = {**key, "Idempotency-Key": str(uuid.uuid4())}
    token = ok(client.post("/v1/store/carts", headers=created, json={}), 201)["token"]
    assert ok(client.post("/v1/store/carts", headers=created, json={}), 201)["token"] == token

    headers = {**key, "Idempotency-Key": str(uuid.uuid4())}
    body = {"variant_id": item, "quantity": 5}
    answers: list[Any] = []

    def post(own: TestClient) -> None:
        answers.append(own.post(f"/v1/store/carts/{token}/lines", headers=headers, json=body))

    clients = [TestClient(demo_world.client.app) for _ in range(6)]
    threads = [threading.Thread(target=post, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted({r.status_code for r in answers}) == [200], [r.text for r in answers]
    assert all(r.json()["lines"][0]["quantity"] == 5 for r in answers)
    cart = ok(client.get(f"/v1/store/carts/{token}", headers=key))
    assert [x["quantity"] for x in cart["lines"]] == [5]
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in answers) == 5
