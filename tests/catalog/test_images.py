"""Product images uploaded to Mercato: checked, stored under the data directory, served
publicly with caching headers."""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mercato.catalog import images
from mercato.db import Database
from mercato.settings import Settings
from tests.conftest import assert_problem
from tests.helpers import audit_entries, detach_categories, fast_password_hashing, make_product

Headers = dict[str, str]


@pytest.fixture(autouse=True)
def _fast_and_clean(monkeypatch: pytest.MonkeyPatch, db: Database) -> Iterator[None]:
    fast_password_hashing(monkeypatch)
    yield
    detach_categories(db)


def png(width: int = 2, height: int = 2, shade: int = 0) -> bytes:
    """A small valid PNG (grey pixels of ``shade``)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    rows = b"".join(b"\x00" + bytes([shade]) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def _upload(client: TestClient, headers: Headers, product_id: int, data: bytes) -> Any:
    return client.post(
        f"/v1/products/{product_id}/images",
        content=data,
        headers={**headers, "Content-Type": "image/png"},
    )


def test_an_uploaded_image_is_stored_and_served_with_caching_headers(
    client: TestClient, owner_headers: Headers, settings: Settings, db: Database
) -> None:
    product = make_product(client, owner_headers, "IMG-1")
    data = png(shade=10)
    answer = _upload(client, owner_headers, product["id"], data)
    assert answer.status_code == 201, answer.text
    digest = hashlib.sha256(data).hexdigest()
    url = answer.json()["media_urls"][0]
    assert url == f"http://testserver/media/catalog/{digest}.png"
    assert (Path(settings.data_dir) / "media" / "catalog" / f"{digest}.png").read_bytes() == data
    assert audit_entries(db, "product.updated")

    served = client.get(url)  # no credentials: images are public
    assert served.status_code == 200
    assert served.content == data
    assert served.headers["content-type"] == "image/png"
    assert served.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert served.headers["etag"] == f'"{digest}"'
    again = client.get(url, headers={"If-None-Match": f'"{digest}"'})
    assert again.status_code == 304
    assert again.content == b""

    # The same file twice is one image; a second one goes after it.
    same = _upload(client, owner_headers, product["id"], data)
    assert same.json()["media_urls"] == [url]
    other = _upload(client, owner_headers, product["id"], png(shade=200))
    assert len(other.json()["media_urls"]) == 2

    removed = client.delete(
        f"/v1/products/{product['id']}/images", params={"url": url}, headers=owner_headers
    )
    assert removed.status_code == 200
    assert url not in removed.json()["media_urls"]
    assert client.get(url).status_code == 200  # the file stays for what still shows it


def test_only_images_of_the_allowed_types_and_size_are_taken(
    client: TestClient, owner_headers: Headers
) -> None:
    product = make_product(client, owner_headers, "IMG-2")
    for body in (b"", b"GIF89a" + b"\x00" * 20, b"<svg xmlns='http://www.w3.org/2000/svg'/>"):
        answer = _upload(client, owner_headers, product["id"], body)
        assert_problem(answer, 422)
    big = b"\xff\xd8\xff" + b"\x00" * images.MAX_IMAGE_BYTES
    assert _upload(client, owner_headers, product["id"], big).status_code in (413, 422)
    webp = b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\x00" * 8
    ok = _upload(client, owner_headers, product["id"], webp)
    assert ok.status_code == 201
    assert ok.json()["media_urls"][0].endswith(".webp")
    listed = client.get(f"/v1/products/{product['id']}", headers=owner_headers).json()
    assert len(listed["media_urls"]) == 1


def test_unknown_or_malformed_image_names_are_not_found(client: TestClient) -> None:
    assert client.get("/media/catalog/" + "0" * 64 + ".png").status_code == 404
    assert client.get("/media/catalog/..%2Fmercato.db").status_code == 404
    assert client.get("/media/catalog/notahash.png").status_code == 404


def test_uploading_needs_catalog_write(client: TestClient, owner_headers: Headers) -> None:
    product = make_product(client, owner_headers, "IMG-3")
    answer = _upload(client, {}, product["id"], png())
    assert answer.status_code == 401
