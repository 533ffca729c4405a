"""Helpers shared by the domain test modules (catalog, channels, customers, auth, core)."""

from __future__ import annotations

from typing import Any

import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from mercato.auth import passwords
from mercato.auth.models import AuditEntry
from mercato.catalog.models import Category, Product, ProductTranslation, Variant
from mercato.db import Database
from mercato.events import Dispatcher, OutboxEvent
from tests.demo_world import DemoWorld

LOCATION: dict[str, Any] = {
    "code": "WH-1",
    "name": "Main warehouse",
    "type": "warehouse",
    "address": {"line1": "Hafenstr. 1", "city": "Hamburg", "country": "DE"},
    "timezone": "Europe/Berlin",
    "latitude": 53.55,
    "longitude": 9.99,
    "capabilities": {"ship": True, "returns": True},
}


def fast_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2id at its minimum cost: the same algorithm and hash format, a fraction of the time.

    Hashing at production cost takes about 0.1 s; suites that create many accounts use this.
    """
    monkeypatch.setattr(
        passwords, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    )


def drain(target: DemoWorld | TestClient | FastAPI) -> int:
    """Run the application's outbox dispatcher until no committed event is left (tests run
    with the dispatcher thread off); returns how many events it handled.

    ``target`` is the application, a test client of it, or the demo world.
    """
    if isinstance(target, DemoWorld):
        target = target.client
    app = target.app if isinstance(target, TestClient) else target
    dispatcher = app.state.dispatcher
    assert isinstance(dispatcher, Dispatcher)
    return dispatcher.drain()


def detach_categories(db: Database) -> None:
    """Flatten the category tree so that the next test's table reset can delete every row.

    ``categories.parent_id`` is ``ON DELETE RESTRICT``, which SQLite enforces row by row
    inside one ``DELETE``; the shared reset deletes the table in one statement.
    """
    with db.transaction() as session:
        session.execute(update(Category).values(parent_id=None))


def gtin(body: str) -> str:
    """``body`` with its GTIN check digit appended (GTIN-8/12/13/14 all use the same rule)."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return body + str((10 - total % 10) % 10)


def wrong_gtin(body: str) -> str:
    good = gtin(body)
    return good[:-1] + str((int(good[-1]) + 1) % 10)


def count(db: Database, model: Any) -> int:
    with db.read() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def snapshot_counts(db: Database) -> dict[str, int]:
    """Row counts of the catalog tables, the audit log and the outbox."""
    models = (Category, Product, ProductTranslation, Variant, AuditEntry, OutboxEvent)
    return {model.__tablename__: count(db, model) for model in models}


def outbox(db: Database, type_: str | None = None) -> list[OutboxEvent]:
    with db.read() as session:
        query = select(OutboxEvent).order_by(OutboxEvent.id)
        if type_ is not None:
            query = query.where(OutboxEvent.type == type_)
        rows = list(session.scalars(query))
        session.expunge_all()  # keep the loaded values once the read transaction ends
        return rows


def audit_entries(db: Database, action: str | None = None) -> list[AuditEntry]:
    with db.read() as session:
        query = select(AuditEntry).order_by(AuditEntry.id)
        if action is not None:
            query = query.where(AuditEntry.action == action)
        rows = list(session.scalars(query))
        session.expunge_all()
        return rows


def created(response: Any) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def ok(response: Any) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


def make_category(
    client: TestClient,
    headers: dict[str, str],
    code: str,
    *,
    name: str | None = None,
    parent_id: int | None = None,
    translations: dict[str, str] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "name": name or code.title(), "parent_id": parent_id}
    if translations:
        body["translations"] = translations
    return created(client.post("/v1/categories", json=body, headers=headers))


def make_product(
    client: TestClient,
    headers: dict[str, str],
    code: str,
    *,
    name: str | None = None,
    skus: list[str] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "name": name or f"Product {code}", **fields}
    if "variants" not in body:
        body["variants"] = [{"sku": sku} for sku in (skus if skus is not None else [f"{code}-1"])]
    return created(client.post("/v1/products", json=body, headers=headers))


def make_location(client: TestClient, headers: dict[str, str], code: str) -> dict[str, Any]:
    return created(client.post("/v1/locations", json={**LOCATION, "code": code}, headers=headers))


def make_channel(
    client: TestClient, headers: dict[str, str], code: str, **fields: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "code": code,
        "name": f"Channel {code}",
        "type": "web",
        "default_locale": "en-US",
        "currencies": ["USD"],
        **fields,
    }
    return created(client.post("/v1/channels", json=body, headers=headers))


def channel_key(client: TestClient, headers: dict[str, str], channel_id: int) -> str:
    issued = created(
        client.post(f"/v1/channels/{channel_id}/keys", json={"name": "tests"}, headers=headers)
    )
    return str(issued["key"])


def all_items(client: TestClient, path: str, headers: dict[str, str]) -> list[Any]:
    """Every item of a paginated list, following ``next_cursor`` to the last page."""
    items: list[Any] = []
    separator = "&" if "?" in path else "?"
    url = f"{path}{separator}limit=200" if "limit=" not in path else path
    while True:
        page = ok(client.get(url, headers=headers))
        items += page["items"]
        if not page["next_cursor"]:
            return items
        url = f"{path}{separator}limit=200&cursor={page['next_cursor']}"
