"""A few days of trade for the demo business, so the back office has something to show:
orders from each web store and the app (paid by the test card), some collected in a
store, a few on hold, support cases from shoppers, and the reactions (routing) run.

Everything goes through the shopper and staff HTTP API in-process, exactly as a
storefront and a staff member would use it; nothing is written to a table directly.
"""

from __future__ import annotations

import random
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

with warnings.catch_warnings():
    # Starlette suggests another HTTP client package for its test client; this in-process
    # client is only used to place the demo's orders.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from mercato.app import create_app
from mercato.db import Database
from mercato.settings import Settings

# (channel, shipping address): a shopper of each market.
SHOPPERS: list[tuple[str, dict[str, Any]]] = [
    (
        "web-jp",
        {
            "name": "Aiko Tanaka",
            "line1": "1-2-3 Jingumae",
            "city": "Shibuya-ku",
            "region": "13",
            "postal_code": "150-0001",
            "country": "JP",
        },
    ),
    (
        "web-de",
        {
            "name": "Lena Schmidt",
            "line1": "Torstraße 1",
            "city": "Berlin",
            "postal_code": "10119",
            "country": "DE",
        },
    ),
    (
        "web-us",
        {
            "name": "Jordan Miller",
            "line1": "350 Fifth Avenue",
            "city": "New York",
            "region": "NY",
            "postal_code": "10118",
            "country": "US",
        },
    ),
    (
        "web-sg",
        {
            "name": "Wei Ling Tan",
            "line1": "1 Raffles Place",
            "city": "Singapore",
            "postal_code": "048616",
            "country": "SG",
        },
    ),
    (
        "web-vn",
        {
            "name": "Nguyễn Văn An",
            "line1": "12 Lê Lợi",
            "city": "Hồ Chí Minh",
            "region": "SG",
            "postal_code": "700000",
            "country": "VN",
        },
    ),
    (
        "app",
        {
            "name": "Mai Sato",
            "line1": "2-1 Umeda",
            "city": "Osaka",
            "region": "27",
            "postal_code": "530-0001",
            "country": "JP",
        },
    ),
]
FIRST_NAMES = ["Aiko", "Lena", "Jordan", "Wei", "An", "Mai", "Jonas", "Yuki", "Linh", "Sam"]
CASE_SUBJECTS = [
    ("Where is my parcel?", "My order has not arrived yet, can you check?"),
    ("Wrong size", "I would like to exchange the item for a larger size."),
    ("Invoice needed", "Please send me an invoice with my company name."),
]


@dataclass
class History:
    orders: int = 0
    held: int = 0
    cases: int = 0
    failed: int = 0


def add_history(
    database: Database,
    settings: Settings,
    channel_keys: dict[str, str],
    staff_email: str,
    staff_password: str,
    orders: int = 48,
    seed: int = 7,
    progress: Callable[[int], None] | None = None,
) -> History:
    """Place ``orders`` orders across the shopper channels (a few refusals are skipped)."""
    rng = random.Random(seed)
    app = create_app(settings.model_copy(update={"dispatcher_enabled": False}), database)
    history = History()
    with TestClient(app) as client:
        staff = _staff_headers(client, staff_email, staff_password)
        catalogue = {
            code: _variants(client, {"X-Channel-Key": channel_keys[code]}) for code, _ in SHOPPERS
        }
        for number in range(orders):
            channel, address = SHOPPERS[number % len(SHOPPERS)]
            key = {"X-Channel-Key": channel_keys[channel]}
            placed = _place(client, key, rng, catalogue[channel], address, number)
            if placed is None:
                history.failed += 1
                continue
            history.orders += 1
            if number % 9 == 4:
                answer = client.post(
                    f"/v1/orders/{placed['id']}/hold",
                    headers=staff,
                    json={"reason": "Address to confirm with the customer"},
                )
                history.held += answer.status_code == 200
            if number % 7 == 3:
                history.cases += _open_case(client, key, placed, rng)
            if progress is not None:
                progress(number + 1)
        app.state.dispatcher.drain()
    return history


def _staff_headers(client: TestClient, email: str, password: str) -> dict[str, str]:
    answer = client.post("/v1/auth/login", json={"email": email, "password": password})
    answer.raise_for_status()
    return {"Authorization": f"Bearer {answer.json()['token']}"}


def _variants(client: TestClient, key: dict[str, str]) -> list[int]:
    answer = client.get("/v1/store/products", params={"limit": 40}, headers=key)
    answer.raise_for_status()
    return [
        variant["id"]
        for product in answer.json()["items"]
        for variant in product["variants"]
        if variant.get("price")
    ]


def _place(
    client: TestClient,
    key: dict[str, str],
    rng: random.Random,
    variants: list[int],
    address: dict[str, Any],
    number: int,
) -> dict[str, Any] | None:
    if not variants:
        return None
    cart = client.post("/v1/store/carts", json={}, headers=key)
    if cart.status_code != 201:
        return None
    token = cart.json()["token"]
    for variant_id in rng.sample(variants, k=min(len(variants), rng.randint(1, 3))):
        client.post(
            f"/v1/store/carts/{token}/lines",
            headers=key,
            json={"variant_id": variant_id, "quantity": rng.randint(1, 2)},
        )
    email = f"{rng.choice(FIRST_NAMES).lower()}.{number}@example.com"
    body = client.patch(
        f"/v1/store/carts/{token}",
        headers=key,
        json={"email": email, "shipping_address": address},
    ).json()
    options = body.get("shipping_options") or []
    if not body.get("lines") or not options:
        return None
    body = client.patch(
        f"/v1/store/carts/{token}",
        headers=key,
        json={"shipping_option_id": options[0]["option_id"]},
    ).json()
    card = client.post(
        "/v1/store/payments/test-gateway/tokens",
        headers=key,
        json={"number": "4242424242424242", "exp_month": 12, "exp_year": 2031, "cvc": "123"},
    )
    if card.status_code != 201:
        return None
    tender = {
        "method": "test_gateway",
        "amount": body["grand_total"]["amount"],
        "token": card.json()["token"],
    }
    answer = client.post(
        f"/v1/store/carts/{token}/checkout",
        headers={**key, "Idempotency-Key": uuid.uuid4().hex},
        json={"payments": [tender]},
    )
    if answer.status_code not in (200, 201):
        return None
    order: dict[str, Any] = answer.json().get("order", answer.json())
    order["email"] = email
    return order


def _open_case(
    client: TestClient, key: dict[str, str], order: dict[str, Any], rng: random.Random
) -> int:
    subject, message = rng.choice(CASE_SUBJECTS)
    answer = client.post(
        "/v1/store/support/cases",
        headers={**key, "Idempotency-Key": uuid.uuid4().hex},
        json={
            "subject": subject,
            "message": {"body": message},
            "order_number": order.get("number"),
            "email": order["email"],
        },
    )
    return int(answer.status_code == 201)
