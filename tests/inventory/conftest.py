"""A small world for stock tests: one product with variants, a warehouse and two stores."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from mercato.auth.principal import Principal
from mercato.catalog import service as catalog
from mercato.catalog.schemas import ProductIn, VariantIn
from mercato.channels import service as channels
from mercato.channels.schemas import ChannelIn, ChannelLocationIn, ChannelType
from mercato.db import Database
from mercato.inventory import service as inventory
from mercato.locations import service as locations
from mercato.locations.schemas import Address, Capabilities, LocationIn, LocationType


@dataclass
class World:
    variants: list[int]
    warehouse: int
    store_a: int
    store_b: int
    channel_id: int
    channel_key: str

    @property
    def locations(self) -> list[int]:
        return [self.warehouse, self.store_a, self.store_b]


def _location(
    session: Any, actor: Principal, code: str, kind: LocationType, lat: float, lng: float
) -> int:
    return locations.create_location(
        session,
        actor,
        LocationIn(
            code=code,
            name=code,
            type=kind,
            address=Address(city="Berlin", country="DE"),
            timezone="Europe/Berlin",
            latitude=lat,
            longitude=lng,
            capabilities=Capabilities(
                ship=kind is LocationType.WAREHOUSE,
                pickup=kind is LocationType.STORE,
                ship_from_store=kind is LocationType.STORE,
                returns=True,
            ),
        ),
    ).id


@pytest.fixture
def world(db: Database) -> World:
    actor = Principal.system("tests")
    with db.transaction() as session:
        product = catalog.create_product(
            session,
            actor,
            ProductIn(
                code="TEE",
                name="Tee",
                status="active",  # type: ignore[arg-type]
                variants=[VariantIn(sku=f"TEE-{n}") for n in range(4)],
            ),
        )
        warehouse = _location(session, actor, "WH-FRA", LocationType.WAREHOUSE, 50.04, 8.56)
        store_a = _location(session, actor, "ST-BERLIN", LocationType.STORE, 52.527, 13.402)
        store_b = _location(session, actor, "ST-MUNICH", LocationType.STORE, 48.137, 11.575)
        channel = channels.create_channel(
            session,
            actor,
            ChannelIn(
                code="web-de",
                name="Web DE",
                type=ChannelType.WEB,
                default_locale="de-DE",
                currencies=["EUR"],
                country="DE",
                locations=[
                    ChannelLocationIn(location_id=warehouse, priority=0),
                    ChannelLocationIn(location_id=store_a, priority=1),
                    ChannelLocationIn(location_id=store_b, priority=2),
                ],
            ),
        )
        _, key = channels.issue_key(session, actor, channel.id, "test")
        variants = [v.id for v in product.variants]
    return World(variants, warehouse, store_a, store_b, channel.id, key)


@pytest.fixture
def stock(db: Database) -> Callable[[int, int, int], None]:
    """Receive ``quantity`` units of a variant at a location."""

    def receive(variant_id: int, location_id: int, quantity: int) -> None:
        with db.transaction() as session:
            inventory.adjust(
                session,
                inventory.Context(Principal.system("tests")),
                location_id,
                [inventory.AdjustmentLine(variant_id, quantity, inventory.Reason.RECEIPT)],
            )

    return receive


def level(db: Database, variant_id: int, location_id: int) -> inventory.LevelSnapshot:
    with db.read() as session:
        return inventory.get_level(session, variant_id, location_id)


def assert_ledger_consistent(db: Database) -> None:
    with db.read() as session:
        _, bad = inventory.verify(session)
    assert not bad, bad
