"""Editing settings records without a browser: channels, new locations with their
address and position, webhook subscriptions and integration tokens, each through the
API's rules (what the API then answers is what the form saved)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.demo_world import DemoWorld, staff_login
from tests.web.test_settings_pages import sign_in


@pytest.fixture
def pages(demo_world: DemoWorld) -> Iterator[TestClient]:
    with TestClient(demo_world.client.app, follow_redirects=False) as client:
        yield client


def _code(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}".upper()


def test_a_channel_is_edited_with_its_locations_in_priority_order(
    pages: TestClient, demo_world: DemoWorld
) -> None:
    admin = staff_login(demo_world, "admin")
    made = demo_world.client.post(
        "/v1/channels",
        headers=admin,
        json={
            "code": _code("web"),
            "name": "Web",
            "type": "web",
            "default_locale": "en-GB",
            "currencies": ["EUR"],
        },
    )
    assert made.status_code == 201, made.text
    channel = made.json()["id"]
    category = demo_world.client.get("/v1/categories", headers=admin).json()["items"][0]["id"]
    berlin, shibuya = demo_world.location_id("ST-BERLIN"), demo_world.location_id("ST-SHIBUYA")
    csrf = sign_in(pages, demo_world, "admin")
    url = f"/admin/settings/channels/{channel}"
    page = pages.get(url).text
    assert 'data-testid="edit-channel"' in page and f'id="priority-{berlin}"' in page
    form = {
        "csrf_token": csrf,
        "name": "Web Europe",
        "default_locale": "de-DE",
        "locales": "de-DE, en-GB",
        "currencies": "EUR, CHF",
        "ship_to_countries": "de, at, ch",
        "location_id": [berlin, shibuya],
        "priority": ["2", "1"],
        "assortment": [str(category)],
    }
    saved = pages.post(url, data=form)
    assert saved.status_code == 303, saved.text[:3000]
    shown = demo_world.client.get(f"/v1/channels/{channel}", headers=admin).json()
    assert shown["name"] == "Web Europe" and shown["locales"] == ["de-DE", "en-GB"]
    assert shown["currencies"] == ["EUR", "CHF"]
    assert shown["ship_to_countries"] == ["DE", "AT", "CH"]
    assert {(x["location_id"], x["priority"]) for x in shown["locations"]} == {
        (berlin, 2),
        (shibuya, 1),
    }
    assert shown["assortment_category_ids"] == [category]
    page = pages.get(url).text
    assert f'id="priority-{shibuya}" name="priority" inputmode="numeric" value="1"' in page

    # The API's rules, on the form: what was typed stays, the field says what is wrong.
    refused = pages.post(url, data={**form, "currencies": "EUR, EURO"})
    assert refused.status_code == 422
    assert "EURO" in refused.text and "is-invalid" in refused.text
    refused = pages.post(url, data={**form, "priority": ["x", ""]})
    assert refused.status_code == 422 and "a priority is a whole number" in refused.text
    # Nothing ticked and no priority: the whole catalogue, from nowhere.
    cleared = {**form, "priority": ["", ""], "assortment": []}
    assert pages.post(url, data=cleared).status_code == 303
    shown = demo_world.client.get(f"/v1/channels/{channel}", headers=admin).json()
    assert shown["locations"] == [] and shown["assortment_category_ids"] is None

    manager = sign_in(pages, demo_world, "berlin.manager")
    assert 'data-testid="edit-channel"' not in pages.get(url).text
    assert pages.post(url, data={**form, "csrf_token": manager}).status_code == 403


def test_a_location_is_created_and_its_address_and_position_edited(
    pages: TestClient, demo_world: DemoWorld
) -> None:
    csrf = sign_in(pages, demo_world, "admin")
    assert 'data-testid="new-location"' in pages.get("/admin/settings/locations").text
    code = _code("st")
    form = {
        "csrf_token": csrf,
        "idempotency_key": uuid.uuid4().hex,
        "code": code,
        "name": "Hamburg store",
        "type": "store",
        "line1": "Jungfernstieg 1",
        "postal_code": "20354",
        "city": "Hamburg",
        "country": "DE",
        "timezone": "Europe/Hamburg",
        "latitude": "95",
        "longitude": "10",
        "ship": "1",
        "pickup": "1",
    }
    refused = pages.post("/admin/settings/locations", data=form)
    assert refused.status_code == 422
    assert "is not an IANA time zone" in refused.text and "less than or equal to 90" in refused.text
    assert "Jungfernstieg 1" in refused.text  # what was typed stays
    form |= {"timezone": "Europe/Berlin", "latitude": "53,5526", "longitude": "9.9934"}
    made = pages.post("/admin/settings/locations", data=form)
    assert made.status_code == 303, made.text[:3000]
    again = pages.post("/admin/settings/locations", data=form)  # the same form, once
    assert again.headers["location"] == made.headers["location"]
    url = made.headers["location"]
    location = int(url.rsplit("/", 1)[1])
    admin = staff_login(demo_world, "admin")
    shown = demo_world.client.get(f"/v1/locations/{location}", headers=admin).json()
    assert shown["code"] == code and shown["address"]["city"] == "Hamburg"
    assert (shown["latitude"], shown["longitude"]) == (53.5526, 9.9934)
    assert shown["capabilities"] == {
        "ship": True,
        "pickup": True,
        "ship_from_store": False,
        "returns": False,
    }

    edit = {
        "csrf_token": csrf,
        "name": "Hamburg store",
        "line1": "Mönckebergstraße 7",
        "postal_code": "20095",
        "city": "Hamburg",
        "country": "DE",
        "timezone": "Europe/Berlin",
        "latitude": "53.5503",
        "longitude": "10.0006",
        "ship": "1",
        "active": "1",
    }
    assert pages.post(url, data=edit).status_code == 303
    shown = demo_world.client.get(f"/v1/locations/{location}", headers=admin).json()
    assert shown["address"]["line1"] == "Mönckebergstraße 7"
    assert (shown["latitude"], shown["longitude"]) == (53.5503, 10.0006)
    assert shown["coordinates_source"] == "given"
    refused = pages.post(url, data={**edit, "country": "XX", "longitude": "east"})
    assert refused.status_code == 422 and "a number such as 52.52" in refused.text
    refused = pages.post(url, data={**edit, "country": "XX"})
    assert refused.status_code == 422 and "not an ISO 3166-1 alpha-2" in refused.text

    manager = sign_in(pages, demo_world, "berlin.manager")
    assert 'data-testid="new-location"' not in pages.get("/admin/settings/locations").text
    form |= {"csrf_token": manager, "code": _code("st"), "idempotency_key": uuid.uuid4().hex}
    assert pages.post("/admin/settings/locations", data=form).status_code == 403


def test_a_webhook_subscription_is_edited_and_deleted(
    pages: TestClient, demo_world: DemoWorld
) -> None:
    admin = staff_login(demo_world, "admin")
    made = demo_world.client.post(
        "/v1/webhooks/subscriptions",
        headers=admin,
        json={"url": "https://erp.example.com/old", "event_types": ["order.*"]},
    )
    assert made.status_code == 201, made.text
    subscription = made.json()["id"]
    url = f"/admin/settings/webhooks/{subscription}"
    analyst = sign_in(pages, demo_world, "analyst")
    assert 'data-testid="edit-subscription"' not in pages.get(url).text
    edit = {"url": "https://erp.example.com/new", "event_types": "order.placed, stock.*"}
    assert pages.post(f"{url}/edit", data={**edit, "csrf_token": analyst}).status_code == 403
    gone = {"csrf_token": analyst, "confirm": "1"}
    assert pages.post(f"{url}/delete", data=gone).status_code == 403

    csrf = sign_in(pages, demo_world, "admin")
    assert 'data-testid="edit-subscription"' in pages.get(url).text
    saved = pages.post(f"{url}/edit", data={**edit, "csrf_token": csrf})
    assert saved.status_code == 303
    shown = demo_world.client.get(f"/v1/webhooks/subscriptions/{subscription}", headers=admin)
    assert shown.json()["url"] == "https://erp.example.com/new"
    assert shown.json()["event_types"] == ["order.placed", "stock.*"]
    refused = pages.post(
        f"{url}/edit",
        data={"csrf_token": csrf, "url": "ftp://x", "event_types": "order.placed, Bad!"},
    )
    assert refused.status_code == 422 and "Bad!" in refused.text and "is-invalid" in refused.text

    kept = pages.post(f"{url}/delete", data={"csrf_token": csrf})  # not confirmed
    assert kept.status_code == 303 and kept.headers["location"] == url
    assert (
        demo_world.client.get(
            f"/v1/webhooks/subscriptions/{subscription}", headers=admin
        ).status_code
        == 200
    )
    deleted = pages.post(f"{url}/delete", data={"csrf_token": csrf, "confirm": "1"})
    assert deleted.status_code == 303 and deleted.headers["location"] == "/admin/settings/webhooks"
    assert (
        demo_world.client.get(
            f"/v1/webhooks/subscriptions/{subscription}", headers=admin
        ).status_code
        == 404
    )


def test_an_integration_token_is_shown_once_and_works(
    pages: TestClient, demo_world: DemoWorld
) -> None:
    admin = staff_login(demo_world, "admin")
    made = demo_world.client.post(
        "/v1/staff",
        headers=admin,
        json={
            "email": f"erp-{uuid.uuid4().hex[:6]}@mercato.example",
            "name": "ERP sync",
            "password": "a-long-password",
            "role": "integration",
        },
    )
    assert made.status_code == 201, made.text
    user = made.json()["id"]
    url = f"/admin/settings/staff/{user}"
    csrf = sign_in(pages, demo_world, "admin")
    assert 'data-testid="issue-token"' in pages.get(url).text
    form = {"csrf_token": csrf, "name": "ERP", "idempotency_key": uuid.uuid4().hex}
    first = pages.post(f"{url}/api-tokens", data=form)
    assert first.status_code == 200
    token = re.search(r'data-testid="new-token" value="([^"]+)"', first.text)
    assert token
    answer = demo_world.client.get(
        "/v1/auth/me", headers={"Authorization": f"Bearer {token.group(1)}"}
    )
    assert answer.status_code == 200 and answer.json()["user"]["role"] == "integration", answer.text
    again = pages.post(f"{url}/api-tokens", data=form)
    assert again.status_code == 200
    assert token.group(1) not in again.text and "cannot be shown again" in again.text
    assert pages.get(f"{url}/api-tokens").status_code == 303
    assert token.group(1) not in pages.get(url).text
    refused = pages.post(f"{url}/api-tokens", data={"csrf_token": csrf, "name": " "})
    assert refused.status_code == 422

    # A person's account is not offered a token; a role without staff:write is refused.
    people = demo_world.client.get("/v1/staff?limit=200", headers=admin).json()["items"]
    person = next(x["id"] for x in people if x["email"] == "support@mercato.example")
    assert 'data-testid="issue-token"' not in pages.get(f"/admin/settings/staff/{person}").text
    support = sign_in(pages, demo_world, "support")
    form |= {"csrf_token": support, "idempotency_key": uuid.uuid4().hex}
    assert pages.post(f"{url}/api-tokens", data=form).status_code == 403


def test_a_zone_and_a_rate_table_are_edited(pages: TestClient, demo_world: DemoWorld) -> None:
    admin = staff_login(demo_world, "admin")
    carrier = demo_world.client.get("/v1/shipping/carriers", headers=admin).json()["items"][0]
    zone = demo_world.client.post(
        "/v1/shipping/zones",
        headers=admin,
        json={"code": _code("z").lower(), "name": "Alps", "members": [{"country": "AT"}]},
    ).json()
    made = demo_world.client.post(
        "/v1/shipping/rate-tables",
        headers=admin,
        json={
            "service_id": carrier["services"][0]["id"],
            "zone_id": zone["id"],
            "origin_country": "DE",
            "currency": "EUR",
            "brackets": [{"up_to_g": 1000, "price": "4.90"}],
        },
    )
    assert made.status_code == 201, made.text
    table = made.json()["id"]
    csrf = sign_in(pages, demo_world, "admin")
    assert (
        f"/admin/settings/carriers/zones/{zone['id']}" in pages.get("/admin/settings/carriers").text
    )

    url = f"/admin/settings/carriers/zones/{zone['id']}"
    assert "AT" in pages.get(url).text
    refused = pages.post(url, data={"csrf_token": csrf, "name": "Alps", "members": "AT\nQQ"})
    assert refused.status_code == 422 and "QQ" in refused.text and "is-invalid" in refused.text
    saved = pages.post(
        url, data={"csrf_token": csrf, "name": "Alps and more", "members": "AT\nCH 39\nIT-BZ"}
    )
    assert saved.status_code == 303, saved.text[:3000]
    shown = demo_world.client.get(f"/v1/shipping/zones/{zone['id']}", headers=admin).json()
    assert shown["name"] == "Alps and more"
    assert [(m["country"], m["region"], m["postal_prefix"]) for m in shown["members"]] == [
        ("AT", None, None),
        ("CH", None, "39"),
        ("IT", "BZ", None),
    ]

    url = f"/admin/settings/carriers/rate-tables/{table}"
    assert "1000 4.90" in pages.get(url).text
    form = {"csrf_token": csrf, "brackets": "1000 5.20\n5000 9,90", "free_over": "80"}
    assert pages.post(url, data=form).status_code == 303
    shown = demo_world.client.get(f"/v1/shipping/rate-tables/{table}", headers=admin).json()
    assert [(b["up_to_g"], b["price"]) for b in shown["brackets"]] == [
        (1000, "5.20"),
        (5000, "9.90"),
    ]
    assert float(shown["free_over"]) == 80
    assert shown["zone_id"] == zone["id"] and shown["currency"] == "EUR"
    refused = pages.post(url, data={**form, "brackets": "heavy 5.20"})
    assert refused.status_code == 422 and "write grams and price" in refused.text

    analyst = sign_in(pages, demo_world, "analyst")
    assert "Save rate table" not in pages.get(url).text
    assert pages.post(url, data={**form, "csrf_token": analyst}).status_code == 403
