"""Story 6: a flash sale through checkout, from two API processes, sells exactly the stock."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from mercato.inventory import service as inventory
from tests.commerce.conftest import DemoWorld
from tests.commerce.helpers import TOKYO, add, card_token, new_cart, ship_to
from tests.servers import api_processes

pytestmark = pytest.mark.slow

BUYERS = 16
STOCK = {"WH-TYO": 3, "ST-SHIBUYA": 2}


def test_flash_sale_checkouts_never_oversell(demo_world: DemoWorld, tmp_path: Path) -> None:
    client, key = demo_world.client, demo_world.key("web-jp")
    item = demo_world.new_product(STOCK, {"JP": {"JPY": "19800"}})
    carts = []
    for n in range(BUYERS):
        token = new_cart(client, key)["token"]
        add(client, key, token, item, 1)
        total = ship_to(client, key, token, TOKYO, f"buyer{n}@example.com")["grand_total"]
        carts.append((token, total["amount"], card_token(client, key)))
    url = demo_world.database.engine.url.render_as_string(hide_password=False).replace(
        "+psycopg", ""
    )
    gate = threading.Barrier(BUYERS)
    with api_processes(url, 2, tmp_path) as urls:

        def buy(n: int) -> int:
            token, amount, card = carts[n]
            with httpx.Client(base_url=urls[n % 2], timeout=120) as http:
                gate.wait()
                response = http.post(
                    f"/v1/store/carts/{token}/checkout",
                    headers={**key, "Idempotency-Key": str(uuid.uuid4())},
                    json={
                        "payments": [{"method": "test_gateway", "amount": amount, "token": card}]
                    },
                )
                return response.status_code

        with ThreadPoolExecutor(BUYERS) as pool:
            statuses = list(pool.map(buy, range(BUYERS)))
    sold = statuses.count(201)
    assert sold == sum(STOCK.values()), statuses
    assert statuses.count(409) == BUYERS - sold, statuses  # insufficient stock, nothing else
    places = [demo_world.location_id(code) for code in STOCK]
    with demo_world.database.read() as session:
        assert inventory.availability(session, [item], places)[item] == 0
        held = sum(inventory.get_level(session, item, p).reserved for p in places)
        _, mismatches = inventory.verify(session)
    assert held == sold and not mismatches
