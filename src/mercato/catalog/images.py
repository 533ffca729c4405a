"""Product images uploaded to Mercato itself: checked, stored under the data directory and
served at a public URL.

A file is named by the SHA-256 of its bytes, so the same picture uploaded twice is stored
once, a URL never changes meaning (it can be cached for a year) and its ETag is the hash.
The product keeps the image's absolute URL in ``media_urls`` beside any outside URLs.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.catalog import service
from mercato.catalog.models import Product
from mercato.catalog.schemas import ProductPatch
from mercato.errors import NotFound, ValidationProblem

# Under the request body cap (MERCATO_MAX_BODY_BYTES, 1 MiB), with room for a form's fields.
MAX_IMAGE_BYTES = 1_000_000
MAX_IMAGES = 50  # ProductIn.media_urls allows as many
MEDIA_PATH = "/media/catalog/"
# A year: a URL names its bytes, so what it answers never changes.
CACHE_SECONDS = 365 * 24 * 3600

_TYPES = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
_NAME = re.compile(r"^([0-9a-f]{64})\.(jpg|png|webp)$")


@dataclass(frozen=True)
class StoredImage:
    name: str  # <sha256>.<extension>
    content_type: str
    size: int
    url: str


def sniff(data: bytes) -> str | None:
    """The image's extension from its first bytes (what it says it is counts for nothing)."""
    if data.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def check_image(data: bytes, field: str = "body") -> str:
    """The extension of an acceptable image, or a 422 naming what is wrong."""
    if not data:
        raise ValidationProblem.field(field, "the file is empty")
    if len(data) > MAX_IMAGE_BYTES:
        raise ValidationProblem.field(
            field, f"the image is larger than {MAX_IMAGE_BYTES // 1000} kB"
        )
    extension = sniff(data)
    if extension is None:
        raise ValidationProblem.field(field, "the file is not a JPEG, PNG or WebP image")
    return extension


def media_dir(data_dir: Path) -> Path:
    return data_dir / "media" / "catalog"


def _write(directory: Path, name: str, data: bytes) -> None:
    target = directory / name
    if target.exists():
        return
    directory.mkdir(parents=True, exist_ok=True)
    # Written aside and renamed, so a reader never sees half a file.
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".upload-")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def add_image(
    session: Session,
    actor: Principal,
    product_id: int,
    data: bytes,
    *,
    data_dir: Path,
    base_url: str,
    field: str = "body",
) -> tuple[Product, StoredImage]:
    """Store the image and add its URL to the product's media (last; once).

    ``base_url`` is where this server is reached (``https://shop.example``): the product
    keeps absolute URLs, as apps and marketplaces need them.
    """
    extension = check_image(data, field)
    product = service.get_product(session, product_id)
    digest = hashlib.sha256(data).hexdigest()
    name = f"{digest}.{extension}"
    url = base_url.rstrip("/") + MEDIA_PATH + name
    stored = StoredImage(name, _TYPES[extension], len(data), url)
    urls = list(product.media_urls)
    if url in urls:
        return product, stored
    if len(urls) >= MAX_IMAGES:
        raise ValidationProblem.field(field, f"a product has at most {MAX_IMAGES} images")
    _write(media_dir(data_dir), name, data)
    product = service.update_product(
        session, actor, product_id, ProductPatch(media_urls=[*urls, url])
    )
    return product, stored


def remove_image(session: Session, actor: Principal, product_id: int, url: str) -> Product:
    """Take a URL off the product's media. The file stays: another product, a cached page
    or an order confirmation may still show it."""
    product = service.get_product(session, product_id)
    urls = list(product.media_urls)
    if url not in urls:
        raise NotFound(f"product {product_id} has no image {url}")
    urls.remove(url)
    return service.update_product(session, actor, product_id, ProductPatch(media_urls=urls))


def stored_file(data_dir: Path, name: str) -> tuple[Path, str, str]:
    """The file behind a media URL's name: (path, content type, ETag); 404 if none."""
    match = _NAME.match(name)
    if match is None:
        raise NotFound("no such image")
    path = media_dir(data_dir) / name
    if not path.is_file():
        raise NotFound("no such image")
    return path, _TYPES[match.group(2)], f'"{match.group(1)}"'
