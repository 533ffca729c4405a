"""The real-time stock feed: a POS sale reaches a storefront's open stream at once."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

from fastapi.testclient import TestClient

from mercato.auth.principal import Principal
from mercato.db import Database
from mercato.inventory import service as inventory
from tests.inventory.conftest import World

Stock = Callable[[int, int, int], None]


def _events(lines: Iterator[str]) -> Iterator[tuple[str, dict[str, object]]]:
    name = ""
    for line in lines:
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            yield name, json.loads(line[6:])


def test_stream_sends_snapshot_then_changes(
    client: TestClient, db: Database, world: World, stock: Stock
) -> None:
    v, other = world.variants[:2]
    stock(v, world.store_a, 5)
    headers = {"X-Channel-Key": world.channel_key}
    with client.stream(
        "GET", f"/v1/store/stock/stream?variant_ids={v}", headers=headers
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = _events(response.iter_lines())
        name, snapshot = next(events)
        assert name == "snapshot" and snapshot == {"available": {str(v): 5}}
        with db.transaction() as session:
            ctx = inventory.Context(Principal.system("pos"), reference_type="pos-sale")
            # A change of another variant is filtered out; the POS sale of ours arrives.
            inventory.adjust(
                session,
                ctx,
                world.store_a,
                [inventory.AdjustmentLine(other, 3, inventory.Reason.RECEIPT)],
            )
            inventory.adjust(
                session,
                ctx,
                world.store_a,
                [inventory.AdjustmentLine(v, -2, inventory.Reason.SALE)],
            )
        name, change = next(events)
        assert name == "stock"
        assert change["variant_id"] == v and change["location_id"] == world.store_a
        assert change["available"] == 3 and change["channel_available"] == 3
        assert change["reason"] == "sale"


def test_stream_needs_a_channel_key(client: TestClient) -> None:
    response = client.get("/v1/store/stock/stream")
    assert response.status_code == 401
