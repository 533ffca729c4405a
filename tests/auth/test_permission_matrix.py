"""Every role against every permission that has an endpoint today.

For each permission the table lists real endpoints guarded by it; every role must be
allowed (2xx) exactly when its role grants the permission, and otherwise denied with a 403
that names the permission.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from mercato.auth import service as auth_service
from mercato.auth.permissions import LOCATION_SCOPED_ROLES, ROLE_PERMISSIONS, Permission, Role
from mercato.db import Database
from mercato.errors import Forbidden
from mercato.locations import service as locations_service
from mercato.locations.schemas import LocationPatch
from mercato.marketing import notifier
from mercato.orders.models import Order
from tests.conftest import assert_problem
from tests.helpers import (
    LOCATION,
    channel_key,
    created,
    detach_categories,
    fast_password_hashing,
    make_category,
    make_channel,
    make_location,
    make_product,
    ok,
)

pytestmark = pytest.mark.slow

Headers = dict[str, str]
P = Permission

# Permissions without a staff endpoint yet: the matrix skips them. When an endpoint
# arrives, test_every_staff_endpoint_names_a_permission_the_matrix_covers fails until a row
# for it is added to GUARDED (and the permission taken out of this list).
NO_ENDPOINT_YET: frozenset[Permission] = frozenset()


@dataclass(frozen=True)
class Call:
    permission: Permission
    method: str
    path: str  # formatted with the ids of the objects the fixture creates
    body: Any = None  # or a function of those ids giving the body
    raw: bytes | None = None


GUARDED: list[Call] = [
    Call(P.CATALOG_READ, "GET", "/v1/products"),
    Call(P.CATALOG_READ, "GET", "/v1/products/{product}"),
    Call(P.CATALOG_READ, "GET", "/v1/variants/{variant}"),
    Call(P.CATALOG_READ, "GET", "/v1/categories"),
    Call(P.CATALOG_READ, "GET", "/v1/categories/{category}"),
    Call(P.CATALOG_READ, "GET", "/v1/catalog/export?format=csv"),
    Call(P.CATALOG_WRITE, "POST", "/v1/categories", {"code": "new-cat", "name": "New"}),
    Call(P.CATALOG_WRITE, "PATCH", "/v1/categories/{category}", {"name": "Renamed"}),
    Call(P.CATALOG_WRITE, "POST", "/v1/products", {"code": "NEW", "name": "New"}),
    Call(P.CATALOG_WRITE, "PATCH", "/v1/products/{product}", {"status": "active"}),
    Call(P.CATALOG_WRITE, "PUT", "/v1/products/{product}/translations/ja", {"name": "新"}),
    Call(P.CATALOG_WRITE, "DELETE", "/v1/products/{product}/translations/ja"),
    Call(P.CATALOG_WRITE, "POST", "/v1/products/{product}/variants", {"sku": "NEW-2"}),
    Call(P.CATALOG_WRITE, "PATCH", "/v1/variants/{variant}", {"weight_g": 100}),
    Call(P.CATALOG_WRITE, "POST", "/v1/products/{product}/images", raw=b"\x89PNG\r\n\x1a\n"),
    Call(
        P.CATALOG_WRITE,
        "DELETE",
        "/v1/products/{product}/images?url=http://testserver/media/catalog/4c4b6a3be1314ab86138bef4314dde022e600960d8689a2c8f8631802d20dab6.png",
    ),
    Call(
        P.CATALOG_IMPORT,
        "POST",
        "/v1/catalog/import?format=json&dry_run=true",
        raw=b'[{"product_code": "IMP", "name": "Imported"}]',
    ),
    Call(P.CHANNELS_READ, "GET", "/v1/channels"),
    Call(P.CHANNELS_READ, "GET", "/v1/channels/{channel}"),
    Call(
        P.CHANNELS_WRITE,
        "POST",
        "/v1/channels",
        {
            "code": "new-channel",
            "name": "New",
            "type": "app",
            "default_locale": "en",
            "currencies": ["USD"],
        },
    ),
    Call(P.CHANNELS_WRITE, "PATCH", "/v1/channels/{channel}", {"name": "Renamed"}),
    Call(P.CHANNELS_WRITE, "GET", "/v1/channels/{channel}/keys"),
    Call(P.CHANNELS_WRITE, "POST", "/v1/channels/{channel}/keys", {"name": "pos"}),
    Call(P.CHANNELS_WRITE, "DELETE", "/v1/channels/{channel}/keys/{key}"),
    Call(P.LOCATIONS_READ, "GET", "/v1/locations"),
    Call(P.LOCATIONS_READ, "GET", "/v1/locations/{home}"),
    Call(P.LOCATIONS_WRITE, "POST", "/v1/locations", {**LOCATION, "code": "NEW-LOC"}),
    Call(P.LOCATIONS_WRITE, "PATCH", "/v1/locations/{other}", {"name": "Renamed"}),
    Call(P.STAFF_READ, "GET", "/v1/staff"),
    Call(P.STAFF_READ, "GET", "/v1/staff/{analyst}"),
    Call(
        P.STAFF_WRITE,
        "POST",
        "/v1/staff",
        {
            "email": "new@example.com",
            "name": "New",
            "password": "long enough pw",
            "role": "analyst",
        },
    ),
    Call(P.STAFF_WRITE, "PATCH", "/v1/staff/{analyst}", {"name": "Renamed"}),
    Call(P.STAFF_WRITE, "POST", "/v1/staff/{integration}/api-tokens", {"name": "erp"}),
    Call(P.AUDIT_READ, "GET", "/v1/audit"),
    Call(P.INVENTORY_READ, "GET", "/v1/inventory/levels"),
    Call(P.INVENTORY_READ, "GET", "/v1/inventory/movements"),
    # At the user's own location: store roles may change stock policy there.
    Call(P.INVENTORY_WRITE, "PATCH", "/v1/inventory/levels/{variant}/{home}", {"safety_stock": 2}),
    Call(P.CUSTOMERS_READ, "GET", "/v1/customers"),
    Call(P.CUSTOMERS_READ, "GET", "/v1/customers/{customer}"),
    Call(P.CUSTOMERS_PII, "GET", "/v1/customers?email=shopper@example.com"),
    Call(P.CUSTOMERS_WRITE, "PATCH", "/v1/customers/{customer}", {"tags": ["matrix"]}),
    Call(P.PRIVACY_WRITE, "POST", "/v1/customers/{customer}/privacy/export", {}),
    Call(P.PRIVACY_WRITE, "GET", "/v1/privacy/requests"),
    Call(P.SUPPORT_READ, "GET", "/v1/support/cases"),
    Call(P.SUPPORT_READ, "GET", "/v1/support/customers/{customer}/overview"),
    Call(P.SUPPORT_READ, "GET", "/v1/support/sla-policies"),
    Call(
        P.ANALYTICS_READ,
        "GET",
        "/v1/support/satisfaction?since=2030-01-01T00:00:00Z&until=2030-02-01T00:00:00Z",
    ),
    Call(
        P.SUPPORT_WRITE,
        "POST",
        "/v1/support/cases",
        {"email": "caller@example.com", "subject": "A call", "source": "phone"},
    ),
    Call(
        P.SUPPORT_WRITE,
        "PUT",
        "/v1/support/sla-policies/low",
        {"first_response_minutes": 60, "resolution_minutes": 600},
    ),
    Call(P.PRICING_READ, "GET", "/v1/price-lists"),
    Call(P.PRICING_READ, "GET", "/v1/exchange-rates"),
    Call(
        P.PRICING_WRITE,
        "POST",
        "/v1/price-lists",
        {"code": "NEW-PL", "name": "New", "base_currency": "EUR"},
    ),
    Call(P.PROMOTIONS_READ, "GET", "/v1/promotions"),
    Call(
        P.PROMOTIONS_WRITE,
        "POST",
        "/v1/promotions",
        {"name": "Ten off", "action": {"type": "percent_off_order", "percent": "10"}},
    ),
    Call(P.SHIPPING_READ, "GET", "/v1/shipping/carriers"),
    # Labels name the recipient: every role with shipping:read may list them, and roles
    # without customers:pii get them without their content (tests/privacy walks every
    # answer that can carry personal data).
    Call(P.SHIPPING_READ, "GET", "/v1/shipping/labels"),
    Call(
        P.SHIPPING_WRITE,
        "POST",
        "/v1/shipping/carriers",
        {
            "code": "new-carrier",
            "name": "New carrier",
            "tracking_prefix": "NC",
            "ships_from": ["DE"],
            "ships_to": ["DE", "AT"],
        },
    ),
    Call(P.ORDERS_READ, "GET", "/v1/orders"),
    Call(P.ORDERS_READ, "GET", "/v1/orders/{order}/messages"),
    # Without a key each allowed role queues one more copy of the sent message.
    Call(P.ORDERS_WRITE, "POST", "/v1/orders/{order}/messages/{message}/resend"),
    Call(P.EVENTS_READ, "GET", "/v1/webhooks/subscriptions"),
    Call(P.EVENTS_READ, "GET", "/v1/webhooks/dead-letters"),
    Call(
        P.WEBHOOKS_WRITE,
        "POST",
        "/v1/webhooks/subscriptions",
        {"url": "https://erp.example.com/hooks", "event_types": ["order.*"]},
    ),
    # The same external id answers the order imported first (200), so every role may repeat it.
    Call(
        P.ORDERS_WRITE,
        "POST",
        "/v1/orders/import",
        lambda ids: {
            "channel_id": ids["channel"],
            "external_id": "MATRIX-1",
            "currency": "EUR",
            "lines": [{"sku": "PROD-1", "quantity": 1, "unit_price": "10.00"}],
            "paid": False,
        },
    ),
    Call(P.PAYMENTS_READ, "GET", "/v1/payments"),
    Call(P.PAYMENTS_WRITE, "POST", "/v1/payments/reconcile", {"older_than_seconds": 3600}),
    Call(P.GIFT_CARDS_WRITE, "POST", "/v1/gift-cards", {"currency": "EUR", "amount": "10.00"}),
    Call(
        P.REFUNDS_WRITE,
        "POST",
        "/v1/store-credit/{customer}/adjustments",
        {"currency": "EUR", "amount": "5.00", "reason": "goodwill"},
    ),
]


@pytest.fixture(autouse=True)
def _fast_and_clean(monkeypatch: pytest.MonkeyPatch, db: Database) -> Iterator[None]:
    fast_password_hashing(monkeypatch)
    yield
    detach_categories(db)


def _order_with_message(
    client: TestClient, owner_headers: Headers, db: Database, channel: int, home: int
) -> tuple[int, int]:
    """An order sold at ``home`` (so its store's staff see it) and a sent message about it."""
    order = created(
        client.post(
            "/v1/orders/import",
            json={
                "channel_id": channel,
                "external_id": "MATRIX-MSG",
                "currency": "EUR",
                "email": "buyer@example.com",
                "lines": [{"sku": "PROD-1", "quantity": 1, "unit_price": "10.00"}],
                "paid": False,
            },
            headers=owner_headers,
        )
    )["id"]
    with db.transaction() as session:
        row = session.get(Order, order)
        assert row is not None
        row.store_location_id = home
        message = notifier.queue_message(
            session,
            notifier.NewMessage(
                customer_id=None,
                channel=notifier.MessageChannel.EMAIL,
                recipient="buyer@example.com",
                template="shipping_changed",
                locale="en",
                subject="Your order ships differently",
                body_text="...",
                reference_type="order",
                reference_id=str(order),
                order_id=order,
            ),
        )
        message.status = notifier.MessageStatus.SENT.value
        message_id = message.id
    return order, message_id


@pytest.fixture
def world(client: TestClient, owner_headers: Headers, db: Database) -> dict[str, int]:
    """One of every object the guarded endpoints act on, created by the owner."""
    home = make_location(client, owner_headers, "HOME")["id"]
    other = make_location(client, owner_headers, "OTHER")["id"]
    category = make_category(client, owner_headers, "cat")["id"]
    product = make_product(client, owner_headers, "PROD")
    channel = make_channel(client, owner_headers, "web")["id"]
    key = created(
        client.post(f"/v1/channels/{channel}/keys", json={"name": "web"}, headers=owner_headers)
    )["id"]
    staff = {}
    for role in (Role.ANALYST, Role.INTEGRATION):
        staff[role.value] = created(
            client.post(
                "/v1/staff",
                json={
                    "email": f"target-{role.value}@example.com",
                    "name": role.value,
                    "password": "long enough pw",
                    "role": role.value,
                },
                headers=owner_headers,
            )
        )["id"]
    store_key = {"X-Channel-Key": channel_key(client, owner_headers, channel)}
    customer = created(
        client.post(
            "/v1/store/customers",
            json={"email": "shopper@example.com", "password": "long enough pw"},
            headers=store_key,
        )
    )["customer"]["id"]
    order, message = _order_with_message(client, owner_headers, db, channel, home)
    return {
        "order": order,
        "message": message,
        "home": home,
        "other": other,
        "category": category,
        "product": product["id"],
        "variant": product["variants"][0]["id"],
        "channel": channel,
        "key": key,
        "customer": customer,
        **staff,
    }


def test_the_matrix_and_the_skip_list_do_not_overlap() -> None:
    covered = {call.permission for call in GUARDED}
    assert covered.isdisjoint(NO_ENDPOINT_YET)
    # Every permission the foundation domains define has rows in the matrix.
    assert covered >= {
        P.CATALOG_READ,
        P.CATALOG_WRITE,
        P.CATALOG_IMPORT,
        P.CHANNELS_READ,
        P.CHANNELS_WRITE,
        P.LOCATIONS_READ,
        P.LOCATIONS_WRITE,
        P.STAFF_READ,
        P.STAFF_WRITE,
        P.AUDIT_READ,
        P.CUSTOMERS_READ,
        P.CUSTOMERS_PII,
    }


def _api_routes(routes: Iterable[Any]) -> Iterator[APIRoute]:
    """Every APIRoute of the app, through included routers as well."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _api_routes(included.routes)


def test_every_staff_endpoint_names_a_permission_the_matrix_covers(app: Any) -> None:
    """Routes outside the shopper API and the login flow depend on ``deps.require``."""
    covered = {call.permission for call in GUARDED}
    open_paths = {
        "/v1/auth/login",
        "/v1/auth/logout",
        "/v1/auth/me",
        "/v1/auth/password",
        "/v1/roles",
    }
    # Inbound provider callbacks (carriers, payment gateways) authenticate by signature.
    callbacks = ("/v1/payments/webhooks/", "/v1/shipping/webhooks/")
    checked = 0
    for route in _api_routes(app.routes):
        if not route.path.startswith("/v1/"):
            continue
        if route.path.startswith("/v1/store/") or route.path in open_paths:
            continue
        if route.path.startswith(callbacks):
            continue
        names = {d.call.__name__ for d in route.dependant.dependencies if d.call is not None}
        required = [n.removeprefix("require_") for n in names if n.startswith("require_")]
        assert len(required) == 1, (route.path, route.methods, names)
        permission = Permission[required[0].upper()]
        assert permission in covered, (
            f"{sorted(route.methods or ())} {route.path} is guarded by {permission.value}: "
            "add it to GUARDED in this module"
        )
        checked += 1
    assert checked >= len({(c.method, c.path.split("?")[0]) for c in GUARDED})


@pytest.mark.parametrize("role", list(Role))
def test_permission_matrix(
    client: TestClient,
    make_staff: Callable[..., Headers],
    world: dict[str, int],
    role: Role,
) -> None:
    headers = make_staff(role, [world["home"]] if role in LOCATION_SCOPED_ROLES else [])
    granted = ROLE_PERMISSIONS[role]
    for call in GUARDED:
        path = call.path.format(**world)
        response = client.request(
            call.method,
            path,
            json=call.body(world) if callable(call.body) else call.body,
            content=call.raw,
            headers={**headers, "content-type": "application/json"},
        )
        if call.permission in granted:
            assert 200 <= response.status_code < 300, (role, call, response.text)
        else:
            problem = assert_problem(response, 403, "forbidden")
            assert problem["permission"] == call.permission.value, (role, call)
            assert call.permission.value in problem["detail"]


@pytest.mark.parametrize("role", sorted(LOCATION_SCOPED_ROLES))
def test_store_roles_cannot_change_another_location(
    client: TestClient,
    owner_headers: Headers,
    make_staff: Callable[..., Headers],
    db: Database,
    role: Role,
) -> None:
    home = make_location(client, owner_headers, "HOME")
    other = make_location(client, owner_headers, "OTHER")
    headers = make_staff(role, [home["id"]])
    denied = assert_problem(
        client.patch(f"/v1/locations/{other['id']}", json={"name": "Mine now"}, headers=headers),
        403,
    )
    assert denied["permission"] == "locations:write"
    assert (
        ok(client.get(f"/v1/locations/{other['id']}", headers=owner_headers))["name"]
        == (other["name"])
    )
    # The service itself confines a location-scoped principal to its own locations.
    me = ok(client.get("/v1/auth/me", headers=headers))["user"]
    with db.transaction() as session:
        user = auth_service.get_user(session, me["id"])
        principal = auth_service.principal_for(session, user)
        assert principal.location_ids == frozenset({home["id"]})
        with pytest.raises(Forbidden) as refused:
            locations_service.update_location(
                session, principal, other["id"], LocationPatch(name="Mine now")
            )
        assert refused.value.code == "location-forbidden"
        locations_service.update_location(
            session, principal, home["id"], LocationPatch(name="Home sweet home")
        )
    assert ok(client.get(f"/v1/locations/{home['id']}", headers=headers))["name"] == (
        "Home sweet home"
    )
    assert ok(client.get(f"/v1/locations/{other['id']}", headers=headers))["name"] == other["name"]
