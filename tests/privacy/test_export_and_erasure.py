"""Data subject requests end to end: a customer with history in every domain asks for her
data, then to be forgotten. The export holds every domain's part; after the erasure her
email, phone and name appear in no column of any table (read raw, and decrypted), she
cannot be found or log in, and her orders keep their amounts."""

from __future__ import annotations

import random
import uuid
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import inspect, select, text
from sqlalchemy.orm import Session

from mercato.crypto import EncryptedJSON, EncryptedString
from mercato.customers import service as customers
from mercato.db import Base
from mercato.marketing import notifier
from mercato.orders.models import Order
from mercato.privacy.models import PrivacyRequest
from tests.commerce.conftest import DemoWorld
from tests.commerce.helpers import add, new_cart, ok, pay, ship_to
from tests.conftest import assert_problem
from tests.helpers import drain

pytestmark = pytest.mark.slow


def _person() -> dict[str, str]:
    tag = uuid.uuid4().hex[:8]
    # Japanese mobile numbers never continue 090-0...: the first digit is 1-9.
    digits = random.choice("123456789") + "".join(random.choice("0123456789") for _ in range(7))
    return {
        "email": f"hana.{tag}@example.jp",
        "phone": f"+8190{digits}",
        "first_name": "Hana",
        "last_name": f"Kobayashi{tag}",
    }


def _raw_hits(session: Session, needles: list[str]) -> list[str]:
    """``table.column`` of every text-like column whose stored bytes contain a needle."""
    hits = []
    bind = session.get_bind()
    inspector = inspect(bind)
    preparer = bind.dialect.identifier_preparer
    for table in inspector.get_table_names():
        for column in inspector.get_columns(table):
            kind = str(column["type"]).upper()
            if not any(t in kind for t in ("CHAR", "TEXT", "JSON", "CLOB")):
                continue
            col = preparer.quote(column["name"])
            for needle in needles:
                found = session.execute(
                    text(
                        f"SELECT 1 FROM {preparer.quote(table)} "
                        f"WHERE lower(CAST({col} AS TEXT)) LIKE :p LIMIT 1"
                    ),
                    {"p": f"%{needle.lower()}%"},
                ).first()
                if found:
                    hits.append(f"{table}.{column['name']}")
    return sorted(set(hits))


def _decrypted_hits(session: Session, needles: list[str]) -> list[str]:
    """Every encrypted column, read through its key: does a decrypted value contain a needle?"""
    hits = []
    for table in Base.metadata.sorted_tables:
        columns = [c for c in table.columns if isinstance(c.type, EncryptedString | EncryptedJSON)]
        for column in columns:
            for value in session.scalars(select(column).where(column.is_not(None))):
                plain = str(value).lower()
                if any(n.lower() in plain for n in needles):
                    hits.append(f"{table.name}.{column.name}")
                    break
    return sorted(set(hits))


def _needles(person: dict[str, str]) -> list[str]:
    return [person["email"], person["phone"], person["phone"][1:], person["last_name"]]


def _customer_with_history(world: DemoWorld, person: dict[str, str]) -> dict[str, Any]:
    client, web, app = world.client, world.key("web-jp"), world.key("app")
    staff = world.staff()
    body = ok(
        client.post(
            "/v1/store/customers",
            headers=web,
            json={"email": person["email"], "password": "a long password"},
        ),
        201,
    )
    me = {**web, "Authorization": f"Bearer {body['token']}"}
    customer_id = body["customer"]["id"]
    ok(
        client.patch(
            "/v1/store/customers/me",
            headers=me,
            json={k: person[k] for k in ("first_name", "last_name", "phone")},
        )
    )
    address = {
        "name": f"{person['first_name']} {person['last_name']}",
        "line1": "1-2-3 Jingumae",
        "city": "Shibuya-ku",
        "region": "13",
        "postal_code": "150-0001",
        "country": "JP",
        "phone": person["phone"],
    }
    ok(client.post("/v1/store/customers/me/addresses", headers=me, json=address), 201)
    ok(
        client.post(
            "/v1/store/consents",
            headers=me,
            json={
                "changes": [
                    {"purpose": "marketing_email", "granted": True, "wording_version": "v3"}
                ]
            },
        )
    )

    # An order through checkout, shipped to her with her phone on the address.
    item = world.new_product({"WH-TYO": 10}, {"JP": {"JPY": "3000"}})
    token = new_cart(client, web)["token"]
    add(client, me, token, item, 2)
    ok(client.post(f"/v1/store/carts/{token}/customer", headers=me))
    cart = ship_to(
        client, me, token, {**address, "latitude": 35.67, "longitude": 139.7}, person["email"]
    )
    order = ok(
        pay(client, me, token, cart["grand_total"]["amount"], idempotency_key=f"privacy-{token}"),
        201,
    )
    # A staff note that quotes her phone number (free text nobody keys by customer).
    ok(
        client.post(
            f"/v1/orders/{order['id']}/notes",
            headers=staff,
            json={"body": f"Customer called from {person['phone']} about the delivery"},
        ),
        201,
    )
    # A hold whose reason quotes her phone number.
    ok(
        client.post(
            f"/v1/orders/{order['id']}/hold",
            headers=staff,
            json={"reason": f"Address check: call {person['phone']}"},
        )
    )
    # An open cart in the app.
    in_app = {**app, "Authorization": me["Authorization"]}
    open_cart = new_cart(client, app)["token"]
    add(client, in_app, open_cart, item, 1)
    ok(client.post(f"/v1/store/carts/{open_cart}/customer", headers=in_app))

    # A support case in the app, with her contact details in the message.
    ok(
        client.post(
            "/v1/store/support/cases",
            headers=in_app,
            json={
                "subject": f"Delivery for {person['last_name']}",
                "order_number": order["number"],
                "message": {"body": f"Please call {person['phone']} or write {person['email']}"},
            },
        ),
        201,
    )
    # A marketing email waiting in the outbox.
    with world.database.transaction() as session:
        notifier.queue_message(
            session,
            notifier.NewMessage(
                customer_id=customer_id,
                channel=notifier.MessageChannel.EMAIL,
                recipient=person["email"],
                template="personal_offer",
                locale="ja",
                subject=f"{person['last_name']} 様へ",
                body_text=f"{person['first_name']} {person['last_name']} 様",
                purpose="marketing_email",
            ),
        )
    # The outbox sends it (a notifier standing for the SMTP server).
    notifier.deliver_queued(world.database, {notifier.MessageChannel.EMAIL: _Outbox()}, limit=1000)
    full_name = f"{person['first_name']} {person['last_name']}"
    # Goodwill points and store credit from the call centre, gift card and a damaged unit
    # her courier brought back: free text staff typed about her, with her name and phone.
    ok(
        client.post(
            f"/v1/loyalty/accounts/{customer_id}/adjustments",
            headers={**staff, "Idempotency-Key": f"goodwill-{customer_id}"},
            json={"points": 150, "reason": f"late parcel, {full_name} called"},
        ),
        201,
    )
    ok(
        client.post(
            f"/v1/store-credit/{customer_id}/adjustments",
            headers={**staff, "Idempotency-Key": f"credit-{customer_id}"},
            json={"currency": "JPY", "amount": "500", "reason": f"sorry {person['phone']}"},
        ),
        201,
    )
    ok(
        client.post(
            "/v1/gift-cards",
            headers={**staff, "Idempotency-Key": f"card-{customer_id}"},
            json={
                "currency": "JPY",
                "amount": "1000",
                "customer_id": customer_id,
                "note": f"for {person['first_name']} {person['last_name']}",
            },
        ),
        201,
    )
    ok(
        client.post(
            "/v1/inventory/adjustments",
            headers={**staff, "Idempotency-Key": f"damage-{customer_id}"},
            json={
                "location_id": world.location_id("WH-TYO"),
                "lines": [{"variant_id": item, "quantity": -1, "reason": "damage"}],
                "note": f"crushed in the parcel of {full_name}",
            },
        ),
        201,
    )
    # A second profile from a POS sale with her phone, merged into hers by staff.
    with world.database.transaction() as session:
        pos_profile = customers.resolve_identity(
            session,
            channel_id=_channel_id(session, "pos-shibuya"),
            identities=[("phone", person["phone"], False)],
            name=f"{person['first_name']} {person['last_name']}",
        ).id
    ok(
        client.post(
            f"/v1/customers/{customer_id}/merge", headers=staff, json={"from": pos_profile}
        ),
        201,
    )
    return {"customer_id": customer_id, "pos_profile": pos_profile, "order": order, "me": me}


class _Outbox:
    """Accepts every message, as a mail server would."""

    def send(self, message: notifier.OutgoingMessage) -> str:
        return f"test-{message.id}"


def _channel_id(session: Session, code: str) -> int:
    from mercato.channels.models import Channel

    found = session.scalar(select(Channel.id).where(Channel.code == code))
    assert found is not None
    return int(found)


def test_export_holds_every_domain_then_erasure_leaves_no_trace(demo_world: DemoWorld) -> None:
    client = demo_world.client
    person = _person()
    setup = _customer_with_history(demo_world, person)
    drain(demo_world)
    customer_id, order = setup["customer_id"], setup["order"]
    staff = demo_world.staff()

    # Her timeline has every interaction, from every domain, each with its channel.
    page = ok(client.get(f"/v1/customers/{customer_id}/timeline?limit=200", headers=staff))
    timeline = page["items"]
    kinds = {entry["kind"] for entry in timeline}
    assert {"order", "cart", "support_message", "consent", "email", "points"} <= kinds, kinds
    times = [entry["at"] for entry in timeline]
    assert times == sorted(times, reverse=True)

    # Export: one document, every domain's part, both profiles.
    document = ok(
        client.post(f"/v1/customers/{customer_id}/privacy/export", headers=staff, json={})
    )
    assert document["customer_id"] == customer_id
    assert set(document["profile_ids"]) == {customer_id, setup["pos_profile"]}
    data = document["data"]
    assert {
        "customers",
        "carts",
        "orders",
        "payments",
        "fulfillment",
        "support",
        "marketing",
        "loyalty",
        "returns",
    } <= set(data)
    assert any(p["email"] == person["email"] for p in data["customers"]["profiles"])
    assert {i["type"] for i in data["customers"]["identities"]} >= {"phone"}
    assert data["customers"]["addresses"][0]["data"]["phone"] == person["phone"]
    assert [o["number"] for o in data["orders"]] == [order["number"]]
    assert data["orders"][0]["lines"][0]["quantity"] == 2
    assert data["payments"]["payments"], data["payments"]
    assert len(data["carts"]) == 2
    assert data["support"][0]["messages"][0]["body"].startswith("Please call")
    assert data["marketing"]["consents"][0]["purpose"] == "marketing_email"
    assert data["marketing"]["messages"][0]["recipient"] == person["email"]
    assert data["loyalty"]["orders"][0]["order_id"] == order["id"]
    assert [e["points"] for e in data["loyalty"]["entries"]] == [150]
    # The shopper can download the same document herself.
    mine = ok(client.post("/v1/store/customers/me/data-export", headers=setup["me"]))
    assert [o["number"] for o in mine["data"]["orders"]] == [order["number"]]

    with demo_world.database.read() as session:
        # Before: her details are stored in many places, all encrypted: staff notes, hold
        # reasons, the audit log's record of them, the reasons and notes staff typed about
        # points, credit, cards and stock. Events and webhook bodies carry ids, not them.
        assert _raw_hits(session, _needles(person)) == []
        before = _decrypted_hits(session, _needles(person))
        assert {
            "customers.email",
            "orders.email",
            "orders.hold_reason",
            "order_notes.body",
            "carts.email",
            "support_messages.body",
            "marketing_messages.recipient",
            "customer_addresses.data",
            "audit_log.changes",
            "loyalty_entries.reason",
            "store_credit_transactions.reason",
            "gift_cards.note",
            "stock_movements.note",
        } <= set(before), before
        totals = {
            o.id: (o.grand_total, o.tax_total)
            for o in session.scalars(select(Order).where(Order.customer_id == customer_id))
        }

    # Her order is not shipped yet: the erasure waits until it is delivered or cancelled.
    blocked = assert_problem(
        client.post(
            f"/v1/customers/{customer_id}/privacy/erase",
            headers=staff,
            json={"reason": "GDPR art. 17 request", "confirm_customer_id": customer_id},
        ),
        409,
        "erasure-blocked",
    )
    assert [b["number"] for b in blocked["blocking"]] == [order["number"]]
    ok(
        client.post(
            f"/v1/orders/{order['id']}/cancel",
            headers=staff,
            json={"reason": f"{person['first_name']} {person['last_name']} asked to cancel"},
        )
    )
    with demo_world.database.read() as session:
        assert _raw_hits(session, _needles(person)) == []
        assert "order_transitions.reason" in _decrypted_hits(session, _needles(person))
    # Erasure asks for the id twice and a reason; an analyst may not.
    assert_problem(
        client.post(
            f"/v1/customers/{customer_id}/privacy/erase",
            headers=staff,
            json={"reason": "GDPR art. 17 request", "confirm_customer_id": customer_id + 1},
        ),
        422,
    )
    erased = ok(
        client.post(
            f"/v1/customers/{customer_id}/privacy/erase",
            headers=staff,
            json={"reason": "GDPR art. 17 request", "confirm_customer_id": customer_id},
        ),
        201,
    )
    assert erased["kind"] == "erasure" and erased["reference"].startswith("erased-")
    assert erased["summary"]["orders"] == 1
    drain(demo_world)

    with demo_world.database.read() as session:
        assert _raw_hits(session, _needles(person)) == []
        assert _decrypted_hits(session, _needles(person)) == []
        assert customers.find_by_email(session, person["email"]) is None
        assert customers.find_by_phone(session, person["phone"]) is None
        after = {
            o.id: (o.grand_total, o.tax_total)
            for o in session.scalars(select(Order).where(Order.customer_id == customer_id))
        }
        assert after == totals and all(t[0] > Decimal(0) for t in after.values())
        kept = session.scalar(select(Order).where(Order.id == order["id"]))
        assert kept is not None and kept.email is None
        assert kept.shipping_address == {
            "country": "JP",
            "region": "13",
            "name": erased["reference"],
        }
        logged = session.scalars(
            select(PrivacyRequest.kind).where(PrivacyRequest.customer_id == customer_id)
        ).all()
        assert sorted(logged) == ["erasure", "export", "export"]

    # She can no longer log in or be found; staff searches come back empty.
    assert (
        client.post(
            "/v1/store/customers/login",
            headers=demo_world.key("web-jp"),
            json={"email": person["email"], "password": "a long password"},
        ).status_code
        == 401
    )
    found = ok(client.get("/v1/customers", headers=staff, params={"email": person["email"]}))
    assert found["items"] == []
    # Erasing twice is a conflict that changes nothing.
    assert_problem(
        client.post(
            f"/v1/customers/{customer_id}/privacy/erase",
            headers=staff,
            json={"reason": "again", "confirm_customer_id": customer_id},
        ),
        409,
        "already-erased",
    )


def test_privacy_requests_need_the_privacy_permission(demo_world: DemoWorld) -> None:
    client = demo_world.client
    body = ok(
        client.post(
            "/v1/store/customers",
            headers=demo_world.key("web-jp"),
            json={"email": f"p-{uuid.uuid4().hex[:8]}@example.jp", "password": "a long password"},
        ),
        201,
    )
    customer_id = body["customer"]["id"]
    support = ok(
        client.post(
            "/v1/auth/login",
            json={
                "email": "support@mercato.example",
                "password": demo_world.credentials.staff_password,
            },
        )
    )
    agent = {"Authorization": f"Bearer {support['token']}"}
    for path, payload in (
        (f"/v1/customers/{customer_id}/privacy/export", {}),
        (
            f"/v1/customers/{customer_id}/privacy/erase",
            {"reason": "x", "confirm_customer_id": customer_id},
        ),
    ):
        assert_problem(client.post(path, headers=agent, json=payload), 403)
    assert_problem(
        client.post(
            "/v1/customers/999999999/privacy/erase",
            headers=demo_world.staff(),
            json={"reason": "x", "confirm_customer_id": 999999999},
        ),
        404,
    )
    with demo_world.database.read() as session:
        assert (
            session.scalars(
                select(PrivacyRequest).where(PrivacyRequest.customer_id == customer_id)
            ).all()
            == []
        )
