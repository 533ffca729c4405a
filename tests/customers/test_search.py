"""Finding a person by the whole name (in either order) and by a loyalty card number,
through the blind indexes: the values are encrypted, so only exact values match, and
only roles with customers:pii may search by them."""

from __future__ import annotations

from typing import Any

from tests.conftest import assert_problem
from tests.customers.conftest import Headers, Shop, register


def _ids(shop: Shop, query: str, headers: Headers | None = None) -> list[int]:
    response = shop.client.get(f"/v1/customers?{query}", headers=headers or shop.staff)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return [item["id"] for item in body["items"]]


def test_a_customer_is_found_by_whole_name_and_by_loyalty_card(
    shop: Shop, analyst: Headers
) -> None:
    hana = register(shop, "hana@example.com", first_name="Hana", last_name="Sato")["customer"]
    register(shop, "hanako@example.com", first_name="Hanako", last_name="Sato")
    card = shop.client.post(
        f"/v1/customers/{hana['id']}/identities",
        headers=shop.staff,
        json={"type": "loyalty_card", "value": "LC-0042-7788"},
    )
    assert card.status_code == 201, card.text

    assert _ids(shop, "name=Hana%20Sato") == [hana["id"]]
    assert _ids(shop, "name=sato%20HANA") == [hana["id"]]
    assert _ids(shop, "name=Sato") == []  # a part of a name is not a search
    assert _ids(shop, "loyalty_card=lc0042%207788") == [hana["id"]]
    assert _ids(shop, "loyalty_card=LC-0042-7789") == []
    assert _ids(shop, "loyalty_card=not%20a%20card!") == []
    # Any of several: the union of what each finds.
    assert _ids(shop, "name=Hana%20Sato&phone=%2B49301234&loyalty_card=LC00427788") == [hana["id"]]

    for query in ("name=Hana%20Sato", "loyalty_card=LC00427788"):
        assert_problem(shop.client.get(f"/v1/customers?{query}", headers=analyst), 403)
