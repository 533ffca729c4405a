"""Shopper flows used by several end-to-end tests."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

TOKYO = {
    "name": "Aiko Tanaka",
    "line1": "1-2-3 Jingumae",
    "city": "Shibuya-ku",
    "region": "13",
    "postal_code": "150-0001",
    "country": "JP",
    "latitude": 35.67,
    "longitude": 139.70,
}
BERLIN = {
    "name": "Lena Schmidt",
    "line1": "Torstraße 1",
    "city": "Berlin",
    "postal_code": "10119",
    "country": "DE",
    "latitude": 52.529,
    "longitude": 13.401,
}

CARDS = {
    "ok": "4242424242424242",
    "declined": "4000000000000002",
    "3ds": "4000000000003220",
    "no-funds": "4000000000009995",
}


def ok(response: Any, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


def new_cart(client: TestClient, key: dict[str, str], **body: Any) -> dict[str, Any]:
    return ok(client.post("/v1/store/carts", json=body, headers=key), 201)


def add(
    client: TestClient,
    key: dict[str, str],
    token: str,
    variant_id: int,
    quantity: int = 1,
    **extra: Any,
) -> dict[str, Any]:
    return ok(
        client.post(
            f"/v1/store/carts/{token}/lines",
            headers=key,
            json={"variant_id": variant_id, "quantity": quantity, **extra},
        )
    )


def ship_to(
    client: TestClient,
    key: dict[str, str],
    token: str,
    address: dict[str, Any],
    email: str = "shopper@example.com",
) -> dict[str, Any]:
    cart = ok(
        client.patch(
            f"/v1/store/carts/{token}",
            headers=key,
            json={"email": email, "shipping_address": address},
        )
    )
    assert cart["shipping_options"], cart
    option = cart["shipping_options"][0]["option_id"]
    return ok(
        client.patch(f"/v1/store/carts/{token}", headers=key, json={"shipping_option_id": option})
    )


def card_token(client: TestClient, key: dict[str, str], card: str = "ok") -> str:
    body = ok(
        client.post(
            "/v1/store/payments/test-gateway/tokens",
            headers=key,
            json={"number": CARDS[card], "exp_month": 12, "exp_year": 2031, "cvc": "123"},
        ),
        201,
    )
    return str(body["token"])


def pay(
    client: TestClient,
    key: dict[str, str],
    token: str,
    amount: str,
    *,
    card: str = "ok",
    idempotency_key: str | None = None,
    extra_headers: dict[str, str] | None = None,
) -> Any:
    headers = {**key, **(extra_headers or {})}
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    tender = {"method": "test_gateway", "amount": amount, "token": card_token(client, key, card)}
    return client.post(
        f"/v1/store/carts/{token}/checkout", headers=headers, json={"payments": [tender]}
    )


def register(client: TestClient, key: dict[str, str], email: str) -> dict[str, str]:
    body = ok(
        client.post(
            "/v1/store/customers",
            headers=key,
            json={"email": email, "password": "a long password", "first_name": "Aiko"},
        ),
        201,
    )
    return {"Authorization": f"Bearer {body['token']}"}


def login(client: TestClient, key: dict[str, str], email: str) -> dict[str, str]:
    body = ok(
        client.post(
            "/v1/store/customers/login",
            headers=key,
            json={"email": email, "password": "a long password"},
        )
    )
    return {"Authorization": f"Bearer {body['token']}"}
