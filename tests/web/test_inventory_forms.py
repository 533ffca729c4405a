"""The inventory forms without a browser: a refusal comes back beside the form (422),
an accepted form moves stock once, and the ledger check answers htmx with a fragment."""

from __future__ import annotations

import re
import uuid

from fastapi.testclient import TestClient

from mercato.web import PREFIX
from tests.conftest import OWNER_EMAIL, PASSWORD
from tests.helpers import make_location, make_product


def _sign_in(client: TestClient) -> str:
    page = client.get(f"{PREFIX}/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None
    client.post(
        f"{PREFIX}/login",
        data={"email": OWNER_EMAIL, "password": PASSWORD, "csrf_token": token.group(1)},
        follow_redirects=False,
    )
    form = client.get(f"{PREFIX}/inventory/adjust")
    found = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert found is not None
    return found.group(1)


def test_an_adjustment_form_refused_then_posted_once(
    client: TestClient, owner_headers: dict[str, str]
) -> None:
    place = make_location(client, owner_headers, "WH-FORMS")
    make_product(client, owner_headers, "FORMS", skus=["FORMS-1"])
    csrf = _sign_in(client)
    form = {
        "csrf_token": csrf,
        "idempotency_key": str(uuid.uuid4()),
        "sku": "NO-SUCH-SKU",
        "location_id": str(place["id"]),
        "quantity": "4",
        "reason": "receipt",
    }
    refused = client.post(f"{PREFIX}/inventory/adjust", data=form, follow_redirects=False)
    assert refused.status_code == 422
    assert 'id="sku-error"' in refused.text and "NO-SUCH-SKU" in refused.text
    form["sku"] = "FORMS-1"
    for _ in range(2):  # a double submission moves the stock once
        done = client.post(f"{PREFIX}/inventory/adjust", data=form, follow_redirects=False)
        assert done.status_code == 303
        assert done.headers["location"].startswith(f"{PREFIX}/inventory/ledger?")
    levels = client.get("/v1/inventory/levels", headers=owner_headers).json()["items"]
    assert [x["on_hand"] for x in levels if x["location_id"] == place["id"]] == [4]
    check = client.get(f"{PREFIX}/inventory/verify", headers={"HX-Request": "true"})
    assert check.status_code == 200 and "<html" not in check.text
    assert "The ledger checks out" in check.text
    grid = client.get(f"{PREFIX}/inventory?q=FORMS", headers={"HX-Target": "stock-grid"})
    assert grid.text.lstrip().startswith('<div id="stock-grid"') and "FORMS-1" in grid.text
