from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Depends, Path, Query, Request
from fastapi.responses import FileResponse, Response
from starlette.concurrency import run_in_threadpool

from mercato.auth.permissions import Permission
from mercato.auth.principal import Principal
from mercato.catalog import images, importexport, service
from mercato.catalog.models import Category, Product
from mercato.catalog.schemas import (
    CategoryIn,
    CategoryOut,
    CategoryPatch,
    ImportReport,
    ProductIn,
    ProductOut,
    ProductPatch,
    ProductStatus,
    TranslationIn,
    TranslationOut,
    VariantIn,
    VariantOut,
    VariantPatch,
    import_request_body,
)
from mercato.deps import DbSession, Pagination, require
from mercato.errors import ValidationProblem
from mercato.i18n import normalise_locale
from mercato.routing import router
from mercato.schemas import PageOut

api = router("/v1", tags=["catalog"])
# Product images are public: shoppers' browsers and apps load them without credentials.
media = router(images.MEDIA_PATH.rstrip("/"), tags=["catalog"])

Reader = Annotated[Principal, Depends(require(Permission.CATALOG_READ))]
Writer = Annotated[Principal, Depends(require(Permission.CATALOG_WRITE))]
Importer = Annotated[Principal, Depends(require(Permission.CATALOG_IMPORT))]


def product_out(product: Product) -> ProductOut:
    return ProductOut(
        id=product.id,
        code=product.code,
        name=product.name,
        description=product.description,
        status=ProductStatus(product.status),
        tax_class=product.tax_class,
        category_id=product.category_id,
        media_urls=list(product.media_urls),
        attributes=dict(product.attributes),
        translations=[TranslationOut.model_validate(t) for t in product.translations],
        variants=[VariantOut.model_validate(v) for v in product.variants],
        created_at=product.created_at,
        updated_at=product.updated_at,
    )


def category_out(category: Category, translations: dict[str, str]) -> CategoryOut:
    return CategoryOut(
        id=category.id,
        code=category.code,
        name=category.name,
        parent_id=category.parent_id,
        position=category.position,
        translations=translations,
    )


def _locale(value: str) -> str:
    try:
        return normalise_locale(value)
    except ValueError as exc:
        raise ValidationProblem.field("path.locale", str(exc)) from exc


@api.get("/categories", response_model=PageOut[CategoryOut])
def list_categories(
    session: DbSession, page: Pagination, principal: Reader
) -> PageOut[CategoryOut]:
    """Categories in tree order: by position, then id."""
    cursor, limit = page
    result = service.page_categories(session, cursor=cursor, limit=limit)
    names = service.category_translations(session, [c.id for c in result.items])
    return PageOut(
        items=[category_out(c, names.get(c.id, {})) for c in result.items],
        next_cursor=result.next_cursor,
    )


@api.post("/categories", response_model=CategoryOut, status_code=201)
def create_category(body: CategoryIn, session: DbSession, principal: Writer) -> CategoryOut:
    category = service.create_category(session, principal, body)
    return category_out(category, dict(body.translations))


@api.get("/categories/{category_id}", response_model=CategoryOut)
def get_category(category_id: int, session: DbSession, principal: Reader) -> CategoryOut:
    category = service.get_category(session, category_id)
    names = service.category_translations(session, [category.id])
    return category_out(category, names.get(category.id, {}))


@api.patch("/categories/{category_id}", response_model=CategoryOut)
def update_category(
    category_id: int, body: CategoryPatch, session: DbSession, principal: Writer
) -> CategoryOut:
    category = service.update_category(session, principal, category_id, body)
    names = service.category_translations(session, [category.id])
    return category_out(category, names.get(category.id, {}))


@api.get("/products", response_model=PageOut[ProductOut])
def list_products(
    session: DbSession,
    page: Pagination,
    principal: Reader,
    q: Annotated[str | None, Query(max_length=200, description="Words in code, name, SKU")] = None,
    category_id: int | None = None,
    include_subcategories: bool = True,
    sku: Annotated[str | None, Query(max_length=80)] = None,
    barcode: Annotated[str | None, Query(max_length=64)] = None,
    status: ProductStatus | None = None,
) -> PageOut[ProductOut]:
    cursor, limit = page
    category_ids: set[int] | None = None
    if category_id is not None:
        service.get_category(session, category_id)
        category_ids = (
            service.category_with_descendants(session, [category_id])
            if include_subcategories
            else {category_id}
        )
    result = service.search_products(
        session,
        q=q,
        category_ids=category_ids,
        sku=sku,
        barcode=barcode,
        statuses=[status.value] if status else None,
        cursor=cursor,
        limit=limit,
    )
    return PageOut(items=[product_out(p) for p in result.items], next_cursor=result.next_cursor)


@api.post("/products", response_model=ProductOut, status_code=201)
def create_product(body: ProductIn, session: DbSession, principal: Writer) -> ProductOut:
    return product_out(service.create_product(session, principal, body))


@api.get("/products/{product_id}", response_model=ProductOut)
def get_product(product_id: int, session: DbSession, principal: Reader) -> ProductOut:
    return product_out(service.get_product(session, product_id))


@api.patch("/products/{product_id}", response_model=ProductOut)
def update_product(
    product_id: int, body: ProductPatch, session: DbSession, principal: Writer
) -> ProductOut:
    return product_out(service.update_product(session, principal, product_id, body))


@api.put("/products/{product_id}/translations/{locale}", response_model=ProductOut)
def put_translation(
    product_id: int,
    locale: Annotated[str, Path(max_length=20)],
    body: TranslationIn,
    session: DbSession,
    principal: Writer,
) -> ProductOut:
    return product_out(
        service.set_translation(session, principal, product_id, _locale(locale), body)
    )


@api.delete("/products/{product_id}/translations/{locale}", response_model=ProductOut)
def delete_translation(
    product_id: int,
    locale: Annotated[str, Path(max_length=20)],
    session: DbSession,
    principal: Writer,
) -> ProductOut:
    return product_out(service.delete_translation(session, principal, product_id, _locale(locale)))


@api.post("/products/{product_id}/variants", response_model=VariantOut, status_code=201)
def add_variant(
    product_id: int, body: VariantIn, session: DbSession, principal: Writer
) -> VariantOut:
    return VariantOut.model_validate(service.add_variant(session, principal, product_id, body))


@api.get("/variants/{variant_id}", response_model=VariantOut)
def get_variant(variant_id: int, session: DbSession, principal: Reader) -> VariantOut:
    return VariantOut.model_validate(service.get_variant(session, variant_id))


@api.patch("/variants/{variant_id}", response_model=VariantOut)
def update_variant(
    variant_id: int, body: VariantPatch, session: DbSession, principal: Writer
) -> VariantOut:
    return VariantOut.model_validate(service.update_variant(session, principal, variant_id, body))


@api.post(
    "/catalog/import",
    response_model=ImportReport,
    openapi_extra={"requestBody": import_request_body(importexport.MAX_ROWS)},
    responses={413: {"description": "The file is larger than `MERCATO_MAX_IMPORT_BYTES`"}},
)
async def import_catalog(
    request: Request,
    session: DbSession,
    principal: Importer,
    format: Literal["csv", "json"],
    dry_run: bool = False,
) -> ImportReport:
    """Import products, variants and translations. The body is the file (CSV or JSON).

    With ``dry_run=true`` nothing is written; without it, any bad row means nothing is
    written either, and the report lists every error by line.
    """
    raw = await request.body()  # at most MERCATO_MAX_IMPORT_BYTES (http_security)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValidationProblem.field("body", "the file is not UTF-8") from exc
    report = await run_in_threadpool(
        importexport.run_import, session, principal, text, format, dry_run=dry_run
    )
    if report.errors:
        raise ValidationProblem(
            f"{len(report.errors)} problem(s) in the file; nothing was imported",
            code="import-invalid",
            extra={"report": report.model_dump(mode="json")},
        )
    return report


@api.get("/catalog/export")
def export_catalog(
    session: DbSession, principal: Reader, format: Literal["csv", "json"] = "json"
) -> Response:
    if format == "csv":
        return Response(importexport.export_csv(session), media_type="text/csv; charset=utf-8")
    return Response(importexport.export_json(session), media_type="application/json")


IMAGE_BODY = {
    "requestBody": {
        "required": True,
        "description": f"The image itself: JPEG, PNG or WebP, at most {images.MAX_IMAGE_BYTES} "
        "bytes (the type is read from the file's first bytes)",
        "content": {
            kind: {"schema": {"type": "string", "format": "binary"}}
            for kind in ("image/jpeg", "image/png", "image/webp")
        },
    }
}


@api.post(
    "/products/{product_id}/images",
    response_model=ProductOut,
    status_code=201,
    openapi_extra=IMAGE_BODY,
    responses={413: {"description": "The body is larger than `MERCATO_MAX_BODY_BYTES`"}},
)
async def upload_image(
    product_id: int, request: Request, session: DbSession, principal: Writer
) -> ProductOut:
    """Store an image with the product; its public URL (under ``/media/catalog/``) is added
    to ``media_urls``. The same file again adds nothing."""
    data = await request.body()
    settings = request.app.state.settings
    product, _stored = await run_in_threadpool(
        images.add_image,
        session,
        principal,
        product_id,
        data,
        data_dir=settings.data_dir,
        base_url=str(request.base_url),
    )
    return product_out(product)


@api.delete("/products/{product_id}/images", response_model=ProductOut)
def remove_image(
    product_id: int,
    session: DbSession,
    principal: Writer,
    url: Annotated[str, Query(max_length=2000, description="One of the product's media_urls")],
) -> ProductOut:
    """Take an image off the product (the stored file stays for what still shows it)."""
    return product_out(images.remove_image(session, principal, product_id, url))


@media.get(
    "/{name}",
    response_class=FileResponse,
    responses={
        200: {"content": {kind: {} for kind in ("image/jpeg", "image/png", "image/webp")}},
        304: {"description": "The client's copy (If-None-Match) is current"},
    },
)
def get_image(name: Annotated[str, Path(max_length=80)], request: Request) -> Response:
    """An uploaded product image. Its name is its content's hash: cached for a year."""
    path, content_type, etag = images.stored_file(request.app.state.settings.data_dir, name)
    headers = {
        "Cache-Control": f"public, max-age={images.CACHE_SECONDS}, immutable",
        "ETag": etag,
    }
    if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
        return Response(status_code=304, headers=headers)
    return FileResponse(path, media_type=content_type, headers=headers)
