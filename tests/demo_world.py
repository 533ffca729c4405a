"""The demo business, seeded once per backend and shared by every end-to-end test.

It is separate from the per-test ``db`` fixture: seeding takes seconds, so the story tests
share it and each works with its own carts, customers and products.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from mercato import demo
from mercato.app import create_app
from mercato.auth.principal import Principal
from mercato.catalog import service as catalog
from mercato.catalog.schemas import ProductIn, ProductStatus, TranslationIn, VariantIn
from mercato.db import Base, Database
from mercato.inventory import service as inventory
from mercato.pricing import service as pricing
from mercato.settings import Settings
from tests.backends import BACKENDS, POSTGRES_URL

SYSTEM = Principal.system("tests")


# Logins per (database, staff member): checking a password costs a fraction of a second by
# design, so each demo staff member logs in once per database.
_TOKENS: dict[tuple[int, str], dict[str, str]] = {}


def staff_login(world: DemoWorld, prefix: str = "owner") -> dict[str, str]:
    """A demo staff member (``owner``, ``analyst``, ``shibuya.associate``,
    ``berlin.manager``...), logged in once per database."""
    cached = _TOKENS.get((id(world.database), prefix))
    if cached is not None:
        return cached
    response = world.client.post(
        "/v1/auth/login",
        json={"email": f"{prefix}@mercato.example", "password": world.credentials.staff_password},
    )
    assert response.status_code == 200, response.text
    headers = {"Authorization": f"Bearer {response.json()['token']}"}
    _TOKENS[(id(world.database), prefix)] = headers
    return headers


@dataclass
class DemoWorld:
    database: Database
    credentials: demo.DemoCredentials
    client: TestClient

    def key(self, channel: str) -> dict[str, str]:
        return {"X-Channel-Key": self.credentials.channel_keys[channel]}

    def staff(self) -> dict[str, str]:
        response = self.client.post(
            "/v1/auth/login",
            json={
                "email": self.credentials.staff_email,
                "password": self.credentials.staff_password,
            },
        )
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['token']}"}

    def location_id(self, code: str) -> int:
        from mercato.locations.models import Location

        with self.database.read() as session:
            found = session.query(Location.id).filter(Location.code == code).scalar()
        assert found is not None
        return int(found)

    def new_product(
        self, stock: dict[str, int], prices: dict[str, dict[str, str]], tax_class: str = "standard"
    ) -> int:
        """A fresh active variant with stock at locations (by code) and prices per list."""
        code = f"T-{uuid.uuid4().hex[:8]}"
        with self.database.transaction() as session:
            product = catalog.create_product(
                session,
                SYSTEM,
                ProductIn(
                    code=code,
                    name=f"Test item {code}",
                    status=ProductStatus.ACTIVE,
                    tax_class=tax_class,
                    variants=[VariantIn(sku=code, weight_g=300)],
                    translations={
                        "ja": TranslationIn(name=f"テスト商品 {code}"),
                        "de": TranslationIn(name=f"Testartikel {code}"),
                    },
                ),
            )
            variant_id = product.variants[0].id
            ctx = inventory.Context(SYSTEM, reference_type="test")
            for location, units in stock.items():
                inventory.receive_bulk(
                    session, ctx, self.location_id(location), [(variant_id, units)]
                )
            for price_list, amounts in prices.items():
                pricing.set_prices(
                    session,
                    SYSTEM,
                    price_list,
                    [
                        pricing.PriceInput(variant_id, currency, _dec(amount))
                        for currency, amount in amounts.items()
                    ],
                )
        return int(variant_id)


def _dec(value: str) -> Any:
    from decimal import Decimal

    return Decimal(value)


def _postgres_database() -> Iterator[str]:
    assert POSTGRES_URL
    url = make_url(POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://", 1))
    name = f"mercato_e2e_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield (
            url.set(database=name)
            .render_as_string(hide_password=False)
            .replace("postgresql+psycopg://", "postgresql://", 1)
        )
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session", params=BACKENDS)
def demo_world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DemoWorld]:
    data_dir = Path(tmp_path_factory.mktemp("demo"))
    if request.param == "postgresql":
        urls = _postgres_database()
        url = next(urls)
    else:
        urls = None
        url = f"sqlite:///{data_dir / 'demo.db'}"
    database = Database(url)
    Base.metadata.create_all(database.engine)
    credentials = demo.seed(database)
    app = create_app(Settings(data_dir=data_dir, dispatcher_enabled=False), database=database)
    with TestClient(app) as client:
        yield DemoWorld(database, credentials, client)
    database.dispose()
    if urls is not None:
        next(urls, None)
