"""The catalog and promotions pages without a browser: what each role may do there, the
image upload through the page, the code export (the browser tests walk the users' tasks)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from mercato.db import Database
from tests.catalog.test_images import png
from tests.conftest import login
from tests.helpers import created, detach_categories, fast_password_hashing, make_product

Headers = dict[str, str]


@pytest.fixture(autouse=True)
def _fast_and_clean(monkeypatch: pytest.MonkeyPatch, db: Database) -> Iterator[None]:
    fast_password_hashing(monkeypatch)
    yield
    detach_categories(db)


def _signed_in(client: TestClient, headers: Headers) -> str:
    """Sign ``client`` in with the API token of ``headers``; returns the page's CSRF token."""
    client.cookies.set("mercato_staff", headers["Authorization"].removeprefix("Bearer "))
    page = client.get("/admin/catalog")
    assert page.status_code == 200, page.text
    found = re.search(r'"X-CSRF-Token": "([^"]+)"', page.text)
    assert found is not None
    return found.group(1)


def _analyst(client: TestClient, owner_headers: Headers) -> Headers:
    created(
        client.post(
            "/v1/staff",
            json={
                "email": "ana@example.com",
                "name": "Ana",
                "password": "long enough pw",
                "role": "analyst",
            },
            headers=owner_headers,
        )
    )
    return login(client, "ana@example.com", "long enough pw")


def test_an_owner_uploads_an_image_through_the_page(
    client: TestClient, owner_headers: Headers
) -> None:
    product = make_product(client, owner_headers, "PAGE-1")
    token = _signed_in(client, owner_headers)
    answer = client.post(
        f"/admin/catalog/products/{product['id']}/images",
        data={"csrf_token": token},
        files={"image": ("front.png", png(), "image/png")},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    urls = client.get(f"/v1/products/{product['id']}", headers=owner_headers).json()["media_urls"]
    assert len(urls) == 1
    page = client.get(f"/admin/catalog/products/{product['id']}")
    assert f'src="{urls[0]}"' in page.text
    wrong = client.post(
        f"/admin/catalog/products/{product['id']}/images",
        data={"csrf_token": token},
        files={"image": ("notes.png", b"plain text", "image/png")},
    )
    assert wrong.status_code == 422
    assert "not a JPEG, PNG or WebP image" in wrong.text


def test_an_analyst_reads_the_catalog_and_promotions_and_changes_nothing(
    client: TestClient, owner_headers: Headers
) -> None:
    product = make_product(client, owner_headers, "PAGE-2")
    analyst = _analyst(client, owner_headers)
    token = _signed_in(client, analyst)
    page = client.get(f"/admin/catalog/products/{product['id']}")
    assert page.status_code == 200
    assert "Save details" not in page.text and "Upload" not in page.text
    for path, form in (
        (f"/admin/catalog/products/{product['id']}", {"name": "Renamed"}),
        (f"/admin/catalog/products/{product['id']}/translations", {"locale": "de", "name": "X"}),
        ("/admin/catalog/categories", {"code": "c", "name": "C"}),
        ("/admin/promotions/new", {"name": "P", "action_type": "percent_off_order"}),
        ("/admin/promotions/gift-cards", {"currency": "EUR", "amount": "5"}),
    ):
        refused = client.post(path, data={"csrf_token": token, **form}, follow_redirects=False)
        assert refused.status_code == 403, (path, refused.status_code)
    assert client.get("/admin/catalog/import").status_code == 403
    assert client.get("/admin/promotions").status_code == 200
    assert "New promotion" not in client.get("/admin/promotions").text
    assert (
        client.get(f"/v1/products/{product['id']}", headers=owner_headers).json()["name"]
        == product["name"]
    )


def test_generated_codes_export_as_csv(client: TestClient, owner_headers: Headers) -> None:
    token = _signed_in(client, owner_headers)
    made = client.post(
        "/admin/promotions/new",
        data={
            "csrf_token": token,
            "name": "Ten off",
            "action_type": "percent_off_order",
            "percent": "10",
            "requires_code": "true",
        },
        follow_redirects=False,
    )
    assert made.status_code == 303, made.text
    promotion = made.headers["location"]
    generated = client.post(
        f"{promotion}/codes",
        data={"csrf_token": token, "count": "12", "prefix": "TEN", "idempotency_key": "k-1"},
        follow_redirects=False,
    )
    assert generated.status_code == 303
    batch = re.search(r"batch=([^#&]+)", generated.headers["location"])
    assert batch is not None
    again = client.post(
        f"{promotion}/codes",
        data={"csrf_token": token, "count": "12", "prefix": "TEN", "idempotency_key": "k-1"},
        follow_redirects=False,
    )
    assert again.headers["location"] == generated.headers["location"]  # the form acted once
    exported = client.get(f"{promotion}/codes.csv")
    assert exported.headers["content-disposition"].startswith("attachment;")
    lines = exported.text.splitlines()
    assert lines[0] == "code,max_uses,uses,expires_at,batch,disabled"
    assert len(lines) == 13
    assert all(line.startswith("TEN") for line in lines[1:])


def test_many_codes_are_made_in_the_background_with_their_csv(
    client: TestClient, owner_headers: Headers
) -> None:
    token = _signed_in(client, owner_headers)
    made = client.post(
        "/admin/promotions/new",
        data={
            "csrf_token": token,
            "name": "Many codes",
            "action_type": "percent_off_order",
            "percent": "5",
            "requires_code": "true",
        },
        follow_redirects=False,
    )
    promotion = made.headers["location"]
    form = {"csrf_token": token, "count": "1500", "prefix": "BIG", "idempotency_key": "k-big"}
    generated = client.post(f"{promotion}/codes", data=form, follow_redirects=False)
    assert generated.status_code == 303, generated.text
    job = generated.headers["location"]
    assert re.fullmatch(r"/admin/jobs/\d+", job)
    again = client.post(f"{promotion}/codes", data=form, follow_redirects=False)
    assert again.headers["location"] == job  # one job for one submission
    deadline = time.monotonic() + 60
    while 'data-status="running"' in (page := client.get(job)).text:
        assert time.monotonic() < deadline, "the codes were not made in time"
        time.sleep(0.2)
    assert 'data-status="succeeded"' in page.text
    assert "Open the result" in page.text
    download = client.get(f"{job}/download")
    lines = download.text.splitlines()
    assert lines[0] == "code,max_uses,uses,expires_at,batch,disabled"
    assert len(lines) == 1501 and all(line.startswith("BIG") for line in lines[1:])
    assert len(client.get(f"{promotion}/codes.csv").text.splitlines()) == 1501


def test_the_screens_speak_the_users_language(client: TestClient, owner_headers: Headers) -> None:
    product = make_product(client, owner_headers, "PAGE-3")
    _signed_in(client, owner_headers)
    for language, words in (
        ("de", ("Übersetzungen", "Variante hinzufügen", "Preis festlegen")),
        ("ja", ("翻訳", "バリエーションを追加", "価格を設定")),
        ("vi", ("Bản dịch", "Thêm biến thể", "Đặt giá")),
    ):
        page = client.get(
            f"/admin/catalog/products/{product['id']}", headers={"Accept-Language": language}
        )
        assert all(word in page.text for word in words), language
    promotions = client.get("/admin/promotions/gift-cards", headers={"Accept-Language": "de"})
    assert "Eine Geschenkkarte ausgeben" in promotions.text


def test_an_import_file_larger_than_other_bodies_is_taken(
    client: TestClient, owner_headers: Headers
) -> None:
    """The import page takes files up to MERCATO_MAX_IMPORT_BYTES, as the API does."""
    token = _signed_in(client, owner_headers)
    long = "x" * 1000
    rows = "".join(f"BIG-{i},BIG-{i}-1,Big {i},draft,{long}\n" for i in range(1_100))
    body = ("product_code,sku,name,status,description\n" + rows).encode()
    assert len(body) > 1024 * 1024
    answer = client.post(
        "/admin/catalog/import",
        data={"csrf_token": token, "format": "csv", "dry_run": "true"},
        files={"file": ("big.csv", body, "text/csv")},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text[:300]
    job = answer.headers["location"]
    assert re.match(r"^/admin/jobs/\d+$", job)
    for _ in range(300):  # the work runs in a thread of the server: wait for its end
        progress = client.get(f"{job}/progress").text
        if 'data-status="running"' not in progress:
            break
        time.sleep(0.1)
    assert 'data-status="succeeded"' in progress
    assert "1100" in progress.replace(",", "")
