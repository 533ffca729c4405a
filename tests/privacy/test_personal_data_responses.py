"""Every staff answer that can carry a customer's personal data shows it only to roles with
``customers:pii``.

One person's name, email, phone, street and the free text staff typed about her all carry
a unique marker; she registers, buys, is shipped to (a real label), returns, writes to
support, gets store credit, points and a gift card, and is merged with a second profile.
Then every staff GET route of the application is called, with her ids in its path and
query, by each role without ``customers:pii`` (analyst, integration): no answer may hold
the marker. The same calls by the owner must show it where it belongs, so the world really
holds her data. A new GET route fails the walk until it is given ids here or declared as
having nothing to do with customers.
"""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.routing import APIRoute

from mercato.auth.permissions import ROLE_PERMISSIONS, Permission, Role
from mercato.customers import service as customers
from mercato.marketing import notifier
from tests.commerce.conftest import DemoWorld
from tests.commerce.helpers import TOKYO, ok
from tests.helpers import drain
from tests.returns.conftest import (
    line,
    place,
    product,
    ship_and_deliver,
    staff_login,
    start_return,
)

pytestmark = pytest.mark.slow

Headers = dict[str, str]

# Routes whose answers are about the business, not about customers (their path ids are
# products, locations, price lists...): not walked.
UNRELATED = frozenset(
    {
        "/v1/auth/me",
        "/v1/roles",
        "/v1/staff/{user_id}",
        "/v1/locations/{location_id}",
        "/v1/channels/{channel_id}",
        "/v1/channels/{channel_id}/keys",
        "/v1/categories/{category_id}",
        "/v1/products/{product_id}",
        "/v1/variants/{variant_id}",
        "/v1/inventory/levels/{variant_id}/{location_id}",
        "/v1/inventory/reservations/{reservation_id}",
        "/v1/inventory/transfers/{transfer_id}",
        "/v1/inventory/purchase-orders/{po_id}",
        "/v1/price-lists/{code}",
        "/v1/price-lists/{code}/prices",
        "/v1/promotions/{promotion_id}",
        "/v1/promotions/{promotion_id}/codes",  # codes name a customer by id only
        "/v1/shipping/carriers/{carrier_id}",
        "/v1/shipping/zones/{zone_id}",
        "/v1/shipping/rate-tables/{table_id}",
        "/v1/shipping/customs/{country}",
        "/v1/marketing/rules/{rule_id}",
        "/v1/marketing/rules/{rule_id}/dry-run",
        "/v1/marketing/rules/{rule_id}/runs",
        "/v1/marketing/runs/{run_id}",
        "/v1/return-policies/{policy_id}",
        # Required query parameters about prices, not people.
        "/v1/prices/resolve",
        "/v1/inventory/availability",
        "/v1/support/satisfaction",
    }
)
# Query parameters given her ids wherever a route declares them (filters find her rows
# among the shared demo business's).
QUERY_IDS = ("customer_id", "order_id")


@dataclass
class Person:
    marker: str  # in every personal value and every free text about her
    phone_digits: str
    ids: dict[str, Any]
    deliveries: list[int]  # webhook deliveries of the events her story published

    def leaks(self, text: str) -> list[str]:
        found = [self.marker] if self.marker in text.lower() else []
        return found + ([self.phone_digits] if self.phone_digits in text else [])


def _phone() -> tuple[str, str]:
    digits = random.choice("123456789") + "".join(random.choice("0123456789") for _ in range(7))
    return f"+8190{digits}", digits


def _make_person(world: DemoWorld) -> Person:
    client, web, owner = world.client, world.key("web-jp"), staff_login(world)
    marker = f"zq{uuid.uuid4().hex[:8]}"
    phone, digits = _phone()
    # An integrator subscribed to everything while she is served (paused at the end, so the
    # shared demo business queues nothing more for it).
    hook = ok(
        client.post(
            "/v1/webhooks/subscriptions",
            headers=owner,
            json={"url": "https://erp.example.com/hooks", "event_types": ["*"]},
        ),
        201,
    )
    email = f"{marker}@example.jp"
    body = ok(
        client.post(
            "/v1/store/customers",
            headers=web,
            json={
                "email": email,
                "password": "a long password",
                "first_name": f"Mei{marker}",
                "last_name": f"Sato{marker}",
                "phone": phone,
            },
        ),
        201,
    )
    me = {"Authorization": f"Bearer {body['token']}"}
    customer_id = body["customer"]["id"]
    address = {
        **TOKYO,
        "name": f"Mei{marker} Sato{marker}",
        "line1": f"{marker} 1-2-3 Jingumae",
        "phone": phone,
    }
    saved = {k: v for k, v in address.items() if k not in ("latitude", "longitude")}
    ok(client.post("/v1/store/customers/me/addresses", headers={**web, **me}, json=saved), 201)

    sizes = product(world, {"M": {"JPY": "4000"}}, {"WH-TYO": 20})
    order = place(world, [(sizes["M"], 2)], address=address, customer=me)
    ok(
        client.post(
            f"/v1/orders/{order.id}/notes",
            headers=owner,
            json={"body": f"{marker} called from {phone}"},
        ),
        201,
    )
    tasks = ship_and_deliver(world, order)
    [parcel] = tasks[0]["shipments"][0]["packages"]
    # The carrier's scan names who signed for it.
    ok(
        client.post(
            f"/v1/shipping/tracking/{parcel['tracking_number']}/events",
            headers=owner,
            json={
                "status": "delivered",
                "occurred_at": datetime.now(UTC).isoformat(),
                "location": "Shibuya depot",
                "description": f"Signed for by {marker}",
                "event_id": f"scan-{uuid.uuid4().hex}",
            },
        ),
        201,
    )
    ret = start_return(
        world,
        owner,
        order,
        [line(order, sizes["M"], 1, "size_fit", note=f"{marker} says too small")],
        note=f"{marker} will drop it at the store",
    )
    # A second order held, then cancelled, with reasons that quote her.
    second = place(world, [(sizes["M"], 1)], address=address, customer=me)
    ok(
        client.post(
            f"/v1/orders/{second.id}/hold",
            headers=owner,
            json={"reason": f"{marker} asked to wait, call {phone}"},
        )
    )
    ok(
        client.post(
            f"/v1/orders/{second.id}/cancel",
            headers=owner,
            json={"reason": f"{marker} changed her mind ({phone})"},
        )
    )
    case = ok(
        client.post(
            "/v1/store/support/cases",
            headers={**web, **me},
            json={
                "subject": f"Parcel for {marker}",
                "order_number": order.number,
                "message": {"body": f"Call me on {phone}, {marker}"},
            },
        ),
        201,
    )
    ok(
        client.post(
            f"/v1/store-credit/{customer_id}/adjustments",
            headers={**owner, "Idempotency-Key": f"credit-{marker}"},
            json={"currency": "JPY", "amount": "500", "reason": f"goodwill for {marker}"},
        ),
        201,
    )
    ok(
        client.post(
            f"/v1/loyalty/accounts/{customer_id}/adjustments",
            headers={**owner, "Idempotency-Key": f"points-{marker}"},
            json={"points": 100, "reason": f"late parcel for {marker}"},
        ),
        201,
    )
    card = ok(
        client.post(
            "/v1/gift-cards",
            headers={**owner, "Idempotency-Key": f"card-{marker}"},
            json={
                "currency": "JPY",
                "amount": "1000",
                "customer_id": customer_id,
                "note": f"birthday of {marker}",
            },
        ),
        201,
    )
    with world.database.transaction() as session:
        pos_profile = customers.resolve_identity(
            session,
            channel_id=_channel_id(world, "pos-shibuya"),
            identities=[("phone", phone, False)],
            name=f"Mei{marker} Sato{marker}",
        ).id
    merged = client.post(
        f"/v1/customers/{customer_id}/merge", headers=owner, json={"from": pos_profile}
    )
    merge = ok(merged, 201)
    with world.database.transaction() as session:
        notifier.queue_message(
            session,
            notifier.NewMessage(
                customer_id=customer_id,
                channel=notifier.MessageChannel.EMAIL,
                recipient=email,
                template="personal_offer",
                locale="ja",
                subject="お客様だけの特別オファー",  # a template's: no personal values
                body_text=f"Mei{marker} Sato{marker} 様",
                purpose="marketing_email",
            ),
        )
    drain(world)
    path = f"/v1/webhooks/subscriptions/{hook['id']}"
    ok(client.patch(path, headers=owner, json={"active": False}))
    deliveries = ok(client.get(f"{path}/deliveries?limit=200", headers=owner))["items"]
    label = _label_of(world, owner, order.number)
    payment = ok(client.get(f"/v1/payments?reference={order.number}", headers=owner))["items"][0]
    messages = ok(
        client.get(f"/v1/marketing/messages?customer_id={customer_id}", headers=owner)
    )["items"]
    ids: dict[str, Any] = {
        "customer_id": customer_id,
        "order_id": order.id,
        "number": order.number,
        "return_id": ret["id"],
        "task_id": tasks[0]["id"],
        "label_id": label["id"],
        "tracking_number": parcel["tracking_number"],
        "case_id": case["id"],
        "case_number": case["number"],
        "payment_id": payment["id"],
        "gift_card_id": card["id"],
        "merge_id": merge["merge_id"],
        "message_id": messages[0]["id"] if messages else None,
        "delivery_id": deliveries[0]["id"],
        "subscription_id": hook["id"],
    }
    return Person(marker, digits, ids, [d["id"] for d in deliveries])


def _label_of(world: DemoWorld, owner: Headers, number: str) -> dict[str, Any]:
    labels = ok(world.client.get(f"/v1/shipping/labels?reference={number}", headers=owner))["items"]
    [label] = labels
    return dict(label)


def _channel_id(world: DemoWorld, code: str) -> int:
    from sqlalchemy import select

    from mercato.channels.models import Channel

    with world.database.read() as session:
        found = session.scalar(select(Channel.id).where(Channel.code == code))
    assert found is not None
    return int(found)


def _routes(routes: Iterable[Any]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _routes(included.routes)


def _staff_gets(world: DemoWorld) -> list[APIRoute]:
    return sorted(
        (
            r
            for r in _routes(world.client.app.routes)
            if "GET" in (r.methods or ())
            and r.path.startswith("/v1/")
            and not r.path.startswith("/v1/store/")
        ),
        key=lambda r: r.path,
    )


def _url(route: APIRoute, person: Person) -> str | None:
    """The route with her ids in its path and query; None when it is not about people."""
    if route.path in UNRELATED:
        return None
    ids = dict(person.ids)
    if route.path.startswith("/v1/support/cases/by-number/"):
        ids["number"] = ids["case_number"]
    names = re.findall(r"{(\w+)}", route.path)
    missing = [n for n in names if ids.get(n) is None]
    assert not missing, (
        f"GET {route.path}: give the person's {missing} in _make_person, or list the route "
        "in UNRELATED if its answers never concern customers"
    )
    path = route.path.format(**{n: ids[n] for n in names})
    query = [
        f"{p.name}={ids[p.name]}" for p in route.dependant.query_params if p.name in QUERY_IDS
    ]
    if any(p.name == "reference" for p in route.dependant.query_params):
        query.append(f"reference={ids['number']}")
    return path + ("?" + "&".join(query) if query else "")


def _login_as(world: DemoWorld, role: Role) -> Headers:
    if role is Role.ANALYST:
        return staff_login(world, "analyst")
    email = f"pii-{role.value}-{uuid.uuid4().hex[:6]}@mercato.example"
    ok(
        world.client.post(
            "/v1/staff",
            headers=staff_login(world),
            json={"email": email, "name": role.value, "password": "long enough pw", "role": role},
        ),
        201,
    )
    body = ok(
        world.client.post("/v1/auth/login", json={"email": email, "password": "long enough pw"})
    )
    return {"Authorization": f"Bearer {body['token']}"}


WITHOUT_PII = sorted(
    role for role, granted in ROLE_PERMISSIONS.items() if Permission.CUSTOMERS_PII not in granted
)


@pytest.fixture
def person(demo_world: DemoWorld) -> Person:
    return _make_person(demo_world)


def test_roles_without_personal_data_access_are_named() -> None:
    assert WITHOUT_PII == [Role.ANALYST, Role.INTEGRATION]


def test_no_answer_shows_personal_data_without_customers_pii(
    demo_world: DemoWorld, person: Person
) -> None:
    client, owner = demo_world.client, staff_login(demo_world)
    walked: dict[str, str] = {}
    for route in _staff_gets(demo_world):
        url = _url(route, person)
        if url is not None:
            walked[route.path] = url
    assert len(walked) >= 40, sorted(walked)

    # The owner sees her data where it belongs: the world holds it, the walk reaches it.
    shown = {
        path for path, url in walked.items() if person.leaks(client.get(url, headers=owner).text)
    }
    assert {
        "/v1/customers/{customer_id}",
        "/v1/orders/{order_id}",
        "/v1/orders/{order_id}/notes",
        "/v1/shipping/labels",
        "/v1/shipping/labels/{label_id}",
        "/v1/fulfillment/orders/{task_id}",
        "/v1/returns/{return_id}",
        "/v1/support/cases/{case_id}",
    } <= shown, sorted(shown)

    for role in WITHOUT_PII:
        headers = _login_as(demo_world, role)
        leaked = {}
        for path, url in walked.items():
            response = client.get(url, headers=headers)
            assert response.status_code in (200, 403), (role, url, response.text)
            found = person.leaks(response.text)
            if found:
                at = response.text.lower().find(found[0])
                leaked[path] = response.text[max(0, at - 60) : at + 30]
        assert leaked == {}, "\n".join(f"{role} {p}: ...{t}..." for p, t in leaked.items())


def test_events_sent_to_integrators_carry_ids_not_personal_data(
    demo_world: DemoWorld, person: Person
) -> None:
    """What webhooks deliver is what an integration reads: ids and facts, no names,
    contacts, addresses or text typed about the person."""
    headers = _login_as(demo_world, Role.INTEGRATION)
    assert len(person.deliveries) >= 10
    leaked = {}
    for delivery in person.deliveries:
        body = ok(demo_world.client.get(f"/v1/webhooks/deliveries/{delivery}", headers=headers))
        found = person.leaks(repr(body["payload"]))
        if found:
            leaked[body["event_type"]] = found
    assert leaked == {}
