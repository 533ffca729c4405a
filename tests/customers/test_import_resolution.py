"""Identity resolution through the orders API: marketplace invoices from the UCI Online
Retail data (the same CustomerID across many invoices and countries) imported with the
buyer id as a verified identifier end up as one profile per buyer, with the right order
count and lifetime value; a POS sale with a phone and a web order with an email of the
same person are linked the same way."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from mercato.customers.models import Customer, MergeSuggestion
from mercato.money import quantize
from mercato.orders.models import Order
from tests.commerce.helpers import ok
from tests.customers.conftest import Shop

pytestmark = pytest.mark.slow

# The lines of the UCI "Online Retail" customers who bought from two countries.
DATA = Path(__file__).resolve().parents[1] / "data" / "online_retail_multicountry.csv"
# Every buyer of the data with invoices from more than one country: 48 invoices.
BUYERS = ("12370", "12394", "12417", "12422", "12429", "12431", "12455", "12457")
COUNTRIES = {
    "Denmark": "DK",
    "Austria": "AT",
    "Cyprus": "CY",
    "Australia": "AU",
    "Switzerland": "CH",
    "Belgium": "BE",
    "Spain": "ES",
}


def _invoices() -> dict[str, dict[str, Any]]:
    invoices: dict[str, dict[str, Any]] = {}
    with DATA.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        for row in reader:
            if row["CustomerID"] not in BUYERS or row["InvoiceNo"].startswith(("C", "A")):
                continue
            invoice = invoices.setdefault(
                row["InvoiceNo"],
                {
                    "buyer": row["CustomerID"],
                    "country": COUNTRIES[row["Country"]],
                    "lines": [],
                },
            )
            invoice["lines"].append(
                {
                    "sku": f"UCI-{row['StockCode']}",
                    "quantity": int(row["Quantity"]),
                    "unit_price": row["UnitPrice"],
                    "name": row["Description"].strip() or row["StockCode"],
                }
            )
    return invoices


def test_imported_marketplace_orders_resolve_to_one_profile_per_buyer(shop: Shop) -> None:
    invoices = _invoices()
    assert len(invoices) == 48 and {i["buyer"] for i in invoices.values()} == set(BUYERS)
    products: dict[str, str] = {}
    for invoice in invoices.values():
        for line in invoice["lines"]:
            products.setdefault(line["sku"], line["name"])
    catalog = [
        {"product_code": sku, "name": name, "status": "active", "variants": [{"sku": sku}]}
        for sku, name in products.items()
    ]
    report = ok(
        shop.client.post(
            "/v1/catalog/import?format=json",
            content=json.dumps(catalog).encode(),
            headers={**shop.staff, "content-type": "application/json"},
        )
    )
    assert report["errors"] == [], report

    expected: dict[str, list[Decimal]] = defaultdict(list)
    for number, invoice in sorted(invoices.items()):
        body = {
            "channel_id": shop.marketplace["id"],
            "external_id": number,
            "currency": "GBP",
            "identities": [
                {"type": "marketplace_buyer", "value": invoice["buyer"], "verified": True}
            ],
            "shipping_address": {
                "name": f"Buyer {invoice['buyer']}",
                "line1": "1 Market Street",
                "city": "Somewhere",
                "country": invoice["country"],
            },
            "lines": [
                {k: line[k] for k in ("sku", "quantity", "unit_price")} for line in invoice["lines"]
            ],
        }
        order = ok(shop.client.post("/v1/orders/import", json=body, headers=shop.staff), 201)
        expected[invoice["buyer"]].append(Decimal(str(order["grand_total"])))
        # Importing the same invoice again is the same order, not a second one.
        again = ok(shop.client.post("/v1/orders/import", json=body, headers=shop.staff))
        assert again["id"] == order["id"]
    shop.drain()

    with shop.db.read() as session:
        assert session.scalar(select(func.count()).select_from(Customer)) == len(BUYERS)
        owners = session.execute(select(Order.external_id, Order.customer_id)).all()
    by_buyer: dict[str, set[int]] = defaultdict(set)
    for external_id, customer_id in owners:
        by_buyer[invoices[external_id]["buyer"]].add(customer_id)
    assert all(len(ids) == 1 for ids in by_buyer.values())
    for buyer, ids in by_buyer.items():
        (customer_id,) = ids
        profile = ok(shop.client.get(f"/v1/customers/{customer_id}/profile", headers=shop.staff))
        assert [(i["type"], i["value"]) for i in profile["identities"]] == [
            ("marketplace_buyer", buyer)
        ]
        figures = profile["figures"]
        assert figures["order_count"] == len(expected[buyer])
        lifetime = figures["lifetime_value"][0]
        assert lifetime["currency"] == "GBP"
        total = sum(expected[buyer], Decimal(0))
        assert Decimal(str(lifetime["lifetime_value"])) == total
        # Two countries, two addresses, still one person.
        assert len({a["country"] for a in profile["addresses"]}) >= 2
        # The invoice lines' own arithmetic: the imported total is the sum of the lines.
        recomputed = sum(
            (
                quantize(Decimal(line["unit_price"]) * line["quantity"], "GBP")
                for invoice in invoices.values()
                if invoice["buyer"] == buyer
                for line in invoice["lines"]
            ),
            Decimal(0),
        )
        assert recomputed == total


def test_pos_phone_and_web_email_of_one_person_are_linked(shop: Shop) -> None:
    """A verified phone at the POS and the same verified phone on a later marketplace order
    attach to one profile; an unverified email that matches only becomes a suggestion."""
    catalog = [
        {"product_code": "TEA", "name": "Tea", "status": "active", "variants": [{"sku": "TEA-1"}]}
    ]
    ok(
        shop.client.post(
            "/v1/catalog/import?format=json",
            content=json.dumps(catalog).encode(),
            headers={**shop.staff, "content-type": "application/json"},
        )
    )

    def imported(external_id: str, identities: list[dict[str, Any]]) -> dict[str, Any]:
        return ok(
            shop.client.post(
                "/v1/orders/import",
                headers=shop.staff,
                json={
                    "channel_id": shop.marketplace["id"],
                    "external_id": external_id,
                    "currency": "EUR",
                    "identities": identities,
                    "customer_name": "Mai Nguyen",
                    "lines": [{"sku": "TEA-1", "quantity": 1, "unit_price": "12.00"}],
                },
            ),
            201,
        )

    first = imported("A-1", [{"type": "phone", "value": "+84 90 123 4567", "verified": True}])
    second = imported(
        "A-2",
        [
            {"type": "phone", "value": "+84901234567", "verified": True},
            {"type": "email", "value": "mai@example.vn", "verified": False},
        ],
    )
    assert first["customer_id"] == second["customer_id"] is not None
    # Only an unverified email in common: a new profile and a suggestion, not an attach.
    third = imported("A-3", [{"type": "email", "value": "MAI@example.vn", "verified": False}])
    assert third["customer_id"] not in (None, first["customer_id"])
    with shop.db.read() as session:
        suggested = session.scalars(select(MergeSuggestion)).all()
        assert {(s.customer_id, s.candidate_id) for s in suggested} & {
            (third["customer_id"], first["customer_id"]),
            (first["customer_id"], third["customer_id"]),
        }


def test_bad_identities_on_an_import_change_nothing(shop: Shop) -> None:
    response = shop.client.post(
        "/v1/orders/import",
        headers=shop.staff,
        json={
            "channel_id": shop.marketplace["id"],
            "external_id": "BAD-1",
            "currency": "EUR",
            "identities": [{"type": "phone", "value": "not a number", "verified": True}],
            "lines": [{"sku": "NOPE", "quantity": 1, "unit_price": "1.00"}],
        },
    )
    assert response.status_code == 422, response.text
    with shop.db.read() as session:
        assert session.scalar(select(func.count()).select_from(Customer)) == 0
        assert session.scalar(select(func.count()).select_from(Order)) == 0
