"""The product page: details, translations per language, variants (options, barcodes),
images, and prices per price list and currency. Each form calls the service the matching
API endpoint calls, with the signed-in principal."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from mercato.auth.permissions import Permission
from mercato.auth.principal import Principal
from mercato.catalog import images, service
from mercato.catalog.api import product_out
from mercato.catalog.schemas import (
    TAX_CLASSES,
    ProductIn,
    ProductOut,
    ProductPatch,
    ProductStatus,
    TranslationIn,
    VariantIn,
    VariantOut,
    VariantPatch,
)
from mercato.deps import get_database
from mercato.errors import Problem, ValidationProblem
from mercato.i18n import normalise_locale
from mercato.pricing import service as pricing
from mercato.pricing.schemas import PriceIn, PriceListOut, PriceOut
from mercato.web import PREFIX
from mercato.web.catalog_forms import (
    all_categories,
    blank_none,
    category_labels,
    decimal_or_none,
    field_messages,
    optional_int,
)
from mercato.web.pages import once, redirect, show
from mercato.web.rendering import gettext_for
from mercato.web.session import require_page

# Included in the catalog screen's router (``web/catalog.py``), which adds the prefix.
router = APIRouter(include_in_schema=False)

P = Permission
# The languages the translation forms offer first; others already stored are shown too.
LANGUAGES = ("de", "ja", "vi")


def _options_text(options: dict[str, str]) -> str:
    return "\n".join(f"{name}={value}" for name, value in options.items())


def parse_options(text: str) -> dict[str, str]:
    """``name=value`` lines (as the page shows them) into a variant's options."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        if "=" in line:
            name, value = line.split("=", 1)
            if name.strip():
                found[name.strip()] = value.strip()
    return found


def parse_attributes(text: str) -> dict[str, Any]:
    """Attributes as a JSON object; a 422 on ``attributes`` otherwise."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationProblem.field("body.attributes", f"not JSON: {exc.msg}") from exc
    if not isinstance(value, dict):
        raise ValidationProblem.field("body.attributes", 'a JSON object: {"origin": "Kenya"}')
    return value


def _prices(session: Session, product: ProductOut) -> tuple[list[PriceListOut], list[Any]]:
    """Every price list, and each explicit price of the product's variants in them."""
    lists = [PriceListOut.model_validate(p) for p in pricing.list_price_lists(session)]
    rows: list[dict[str, Any]] = []
    for price_list in lists:
        for variant in product.variants:
            found = pricing.list_prices(session, price_list.code, variant.id, limit=200)
            rows += [
                {"list": price_list, "sku": variant.sku, "price": PriceOut.model_validate(p)}
                for p in found.items
            ]
    return lists, rows


def _product_page(
    request: Request,
    product_id: int,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    principal: Principal = request.state.principal
    with get_database(request).read() as session:
        product = product_out(service.get_product(session, product_id))
        labels = category_labels(all_categories(session))
        lists, prices = _prices(session, product) if principal.has(P.PRICING_READ) else ([], [])
    stored = {t.locale: t for t in product.translations}
    locales = list(LANGUAGES) + [code for code in stored if code not in LANGUAGES]
    context = {
        "active": "catalog",
        "product": product,
        "categories": labels,
        "statuses": [s.value for s in ProductStatus],
        "tax_classes": TAX_CLASSES,
        "translations": stored,
        "translation_locales": locales,
        "options_text": {v.id: _options_text(v.options) for v in product.variants},
        "attributes_text": json.dumps(product.attributes, ensure_ascii=False, indent=2)
        if product.attributes
        else "",
        "uploaded": [u for u in product.media_urls if images.MEDIA_PATH in u],
        "price_lists": lists,
        "prices": prices,
        "errors": errors or {},
        "max_image_kb": images.MAX_IMAGE_BYTES // 1000,
    }
    return show(request, "catalog/product.html", context, status_code=status_code)


def _back(product_id: int, anchor: str = "") -> str:
    return f"{PREFIX}/catalog/products/{product_id}{anchor}"


# --- a new product --------------------------------------------------------------------------------


@router.get("/catalog/products/new", response_class=HTMLResponse)
def new_product(
    request: Request, principal: Principal = require_page(P.CATALOG_WRITE)
) -> HTMLResponse:
    return show(
        request,
        "catalog/new.html",
        {"active": "catalog", "errors": {}, "values": {}, "tax_classes": TAX_CLASSES},
    )


@router.post("/catalog/products/new", response_class=HTMLResponse)
def create_product(
    request: Request,
    code: Annotated[str, Form(max_length=80)],
    name: Annotated[str, Form(max_length=300)],
    sku: Annotated[str, Form(max_length=80)] = "",
    tax_class: Annotated[str, Form(max_length=40)] = "standard",
    idempotency_key: Annotated[str | None, Form(max_length=200)] = None,
    principal: Principal = require_page(P.CATALOG_WRITE),
) -> Response:
    """As ``POST /v1/products``: a draft with its first variant, if an SKU is given."""
    values = {"code": code, "name": name, "sku": sku, "tax_class": tax_class}
    try:
        body = ProductIn(
            code=code.strip(),
            name=name.strip(),
            tax_class=tax_class,
            variants=[VariantIn(sku=sku.strip())] if sku.strip() else [],
        )
        with get_database(request).transaction() as session:
            product_id, _replayed = once(
                session,
                principal,
                "catalog.product",
                idempotency_key,
                body.model_dump(mode="json"),
                lambda: service.create_product(session, principal, body).id,
            )
    except (ValidationError, ValidationProblem) as error:
        messages = {k.removeprefix("variants.0."): v for k, v in field_messages(error).items()}
        return _new_again(request, messages, values)
    except Problem as problem:
        if problem.status != 409:
            raise
        return _new_again(request, {"code": problem.detail}, values)
    _ = gettext_for(request).gettext
    return redirect(request, _back(int(product_id)), _("Product created."))


def _new_again(request: Request, errors: dict[str, str], values: dict[str, str]) -> HTMLResponse:
    context = {"active": "catalog", "errors": errors, "values": values, "tax_classes": TAX_CLASSES}
    return show(request, "catalog/new.html", context, status_code=422)


# --- the product page and its forms ---------------------------------------------------------------


@router.get("/catalog/products/{product_id}", response_class=HTMLResponse)
def product_page(
    request: Request, product_id: int, principal: Principal = require_page(P.CATALOG_READ)
) -> HTMLResponse:
    return _product_page(request, product_id)


@router.post("/catalog/products/{product_id}", response_class=HTMLResponse)
def update_product(
    request: Request,
    product_id: int,
    name: Annotated[str, Form(max_length=300)],
    description: Annotated[str, Form(max_length=20_000)] = "",
    status: Annotated[str, Form(max_length=20)] = "draft",
    tax_class: Annotated[str, Form(max_length=40)] = "standard",
    category_id: Annotated[str, Form(max_length=20)] = "",
    attributes: Annotated[str, Form(max_length=20_000)] = "",
    principal: Principal = require_page(P.CATALOG_WRITE),
) -> Response:
    """As ``PATCH /v1/products/{id}``."""
    try:
        patch = ProductPatch.model_validate(
            {
                "name": name.strip(),
                "description": blank_none(description),
                "status": status,
                "tax_class": tax_class,
                "category_id": optional_int(category_id),
                "attributes": parse_attributes(attributes),
            }
        )
        with get_database(request).transaction() as session:
            service.update_product(session, principal, product_id, patch)
    except (ValidationError, ValidationProblem) as error:
        return _product_page(request, product_id, field_messages(error), 422)
    _ = gettext_for(request).gettext
    return redirect(request, _back(product_id), _("Product saved."))


@router.post("/catalog/products/{product_id}/translations", response_class=HTMLResponse)
def save_translation(
    request: Request,
    product_id: int,
    locale: Annotated[str, Form(max_length=20)],
    name: Annotated[str, Form(max_length=300)] = "",
    description: Annotated[str, Form(max_length=20_000)] = "",
    principal: Principal = require_page(P.CATALOG_WRITE),
) -> Response:
    """As ``PUT /v1/products/{id}/translations/{locale}`` (an empty name deletes it, as
    ``DELETE`` does). The option translations already stored are kept."""
    _ = gettext_for(request).gettext
    try:
        code = normalise_locale(locale)
    except ValueError as exc:
        return _product_page(request, product_id, {f"name-{locale}": str(exc)}, 422)
    try:
        with get_database(request).transaction() as session:
            product = service.get_product(session, product_id)
            current = next((t for t in product.translations if t.locale == code), None)
            if not name.strip():
                if current is not None:
                    service.delete_translation(session, principal, product_id, code)
            else:
                body = TranslationIn.model_validate(
                    {
                        "name": name.strip(),
                        "description": blank_none(description),
                        "options": current.options if current is not None else {},
                    }
                )
                service.set_translation(session, principal, product_id, code, body)
    except (ValidationError, ValidationProblem) as error:
        messages = {f"{k}-{code}": v for k, v in field_messages(error).items()}
        return _product_page(request, product_id, messages, 422)
    return redirect(request, _back(product_id, "#translations"), _("Translation saved."))


# --- variants -------------------------------------------------------------------------------------


@router.post("/catalog/products/{product_id}/variants", response_class=HTMLResponse)
def add_variant(
    request: Request,
    product_id: int,
    sku: Annotated[str, Form(max_length=80)],
    barcode: Annotated[str, Form(max_length=64)] = "",
    options: Annotated[str, Form(max_length=5000)] = "",
    weight_g: Annotated[str, Form(max_length=12)] = "",
    idempotency_key: Annotated[str | None, Form(max_length=200)] = None,
    principal: Principal = require_page(P.CATALOG_WRITE),
) -> Response:
    """As ``POST /v1/products/{id}/variants``."""
    try:
        body = VariantIn.model_validate(
            {
                "sku": sku.strip(),
                "barcode": blank_none(barcode),
                "options": parse_options(options),
                "weight_g": optional_int(weight_g),
            }
        )
        with get_database(request).transaction() as session:
            once(
                session,
                principal,
                f"catalog.variant.{product_id}",
                idempotency_key,
                body.model_dump(mode="json"),
                lambda: service.add_variant(session, principal, product_id, body).id,
            )
    except (ValidationError, ValidationProblem) as error:
        messages = {f"new-{k}": v for k, v in field_messages(error).items()}
        return _product_page(request, product_id, messages, 422)
    except Problem as problem:
        if problem.status != 409:
            raise
        return _product_page(request, product_id, {"new-sku": problem.detail}, 422)
    _ = gettext_for(request).gettext
    return redirect(request, _back(product_id, "#variants"), _("Variant added."))


@router.get("/catalog/variants/{variant_id}", response_class=HTMLResponse)
def variant_page(
    request: Request, variant_id: int, principal: Principal = require_page(P.CATALOG_READ)
) -> HTMLResponse:
    return _variant_page(request, variant_id)


def _variant_page(
    request: Request, variant_id: int, errors: dict[str, str] | None = None
) -> HTMLResponse:
    with get_database(request).read() as session:
        variant = VariantOut.model_validate(service.get_variant(session, variant_id))
        product = product_out(service.get_product(session, variant.product_id))
    context = {
        "active": "catalog",
        "variant": variant,
        "product": product,
        "options_text": _options_text(variant.options),
        "errors": errors or {},
    }
    return show(request, "catalog/variant.html", context, status_code=422 if errors else 200)


@router.post("/catalog/variants/{variant_id}", response_class=HTMLResponse)
def update_variant(
    request: Request,
    variant_id: int,
    barcode: Annotated[str, Form(max_length=64)] = "",
    options: Annotated[str, Form(max_length=5000)] = "",
    weight_g: Annotated[str, Form(max_length=12)] = "",
    length_mm: Annotated[str, Form(max_length=12)] = "",
    width_mm: Annotated[str, Form(max_length=12)] = "",
    height_mm: Annotated[str, Form(max_length=12)] = "",
    hs_code: Annotated[str, Form(max_length=12)] = "",
    country_of_origin: Annotated[str, Form(max_length=2)] = "",
    position: Annotated[int, Form(ge=0, le=100_000)] = 0,
    active: Annotated[bool, Form()] = False,
    principal: Principal = require_page(P.CATALOG_WRITE),
) -> Response:
    """As ``PATCH /v1/variants/{id}``; a barcode left empty is kept as it was."""
    fields: dict[str, Any] = {
        "options": parse_options(options),
        "weight_g": optional_int(weight_g),
        "length_mm": optional_int(length_mm),
        "width_mm": optional_int(width_mm),
        "height_mm": optional_int(height_mm),
        "hs_code": blank_none(hs_code),
        "country_of_origin": blank_none(country_of_origin),
        "position": position,
        "active": active,
    }
    if blank_none(barcode):
        fields["barcode"] = barcode.strip()
    try:
        patch = VariantPatch.model_validate(fields)
        with get_database(request).transaction() as session:
            variant = service.update_variant(session, principal, variant_id, patch)
            product_id = variant.product_id
    except (ValidationError, ValidationProblem) as error:
        return _variant_page(request, variant_id, field_messages(error))
    except Problem as problem:
        if problem.status != 409:
            raise
        return _variant_page(request, variant_id, {"barcode": problem.detail})
    _ = gettext_for(request).gettext
    return redirect(request, _back(product_id, "#variants"), _("Variant saved."))


# --- images ---------------------------------------------------------------------------------------


@router.post("/catalog/products/{product_id}/images", response_class=HTMLResponse)
async def upload_image(
    request: Request,
    product_id: int,
    image: Annotated[UploadFile, File()],
    principal: Principal = require_page(P.CATALOG_WRITE),
) -> Response:
    """As ``POST /v1/products/{id}/images``."""
    data = await image.read(images.MAX_IMAGE_BYTES + 1)
    try:
        await run_in_threadpool(_store_image, request, principal, product_id, data)
    except ValidationProblem as problem:
        errors = {"image": field_messages(problem).popitem()[1]}
        return await run_in_threadpool(_product_page, request, product_id, errors, 422)
    _ = gettext_for(request).gettext
    return redirect(request, _back(product_id, "#images"), _("Image added."))


def _store_image(request: Request, principal: Principal, product_id: int, data: bytes) -> None:
    with get_database(request).transaction() as session:
        images.add_image(
            session,
            principal,
            product_id,
            data,
            data_dir=request.app.state.settings.data_dir,
            base_url=str(request.base_url),
            field="image",
        )


@router.post("/catalog/products/{product_id}/images/remove", response_class=HTMLResponse)
def remove_image(
    request: Request,
    product_id: int,
    url: Annotated[str, Form(max_length=2000)],
    principal: Principal = require_page(P.CATALOG_WRITE),
) -> Response:
    """As ``DELETE /v1/products/{id}/images``."""
    with get_database(request).transaction() as session:
        images.remove_image(session, principal, product_id, url)
    _ = gettext_for(request).gettext
    return redirect(request, _back(product_id, "#images"), _("Image removed."))


# --- prices ---------------------------------------------------------------------------------------


@router.post("/catalog/products/{product_id}/prices", response_class=HTMLResponse)
def set_price(
    request: Request,
    product_id: int,
    variant_id: Annotated[int, Form()],
    price_list: Annotated[str, Form(max_length=40)],
    currency: Annotated[str, Form(max_length=3)],
    amount: Annotated[str, Form(max_length=30)],
    country: Annotated[str, Form(max_length=2)] = "",
    principal: Principal = require_page(P.PRICING_WRITE),
) -> Response:
    """As ``PUT /v1/price-lists/{code}/prices`` with one price."""
    value = decimal_or_none(amount)
    if value is None:
        _ = gettext_for(request).gettext
        return _product_page(request, product_id, {"amount": _("Enter an amount.")}, 422)
    try:
        body = PriceIn.model_validate(
            {
                "variant_id": variant_id,
                "currency": currency.strip().upper(),
                "amount": value,
                "country": blank_none(country),
            }
        )
        with get_database(request).transaction() as session:
            product = service.get_product(session, product_id)
            if variant_id not in {v.id for v in product.variants}:
                raise ValidationProblem.field("body.variant_id", "not a variant of this product")
            price = pricing.PriceInput(
                variant_id=variant_id,
                currency=body.currency,
                amount=body.amount,
                country=body.country,
            )
            pricing.set_prices(session, principal, price_list, [price])
    except (ValidationError, ValidationProblem) as error:
        messages = {k.removeprefix("prices.0."): v for k, v in field_messages(error).items()}
        return _product_page(request, product_id, messages, 422)
    _ = gettext_for(request).gettext
    return redirect(request, _back(product_id, "#prices"), _("Price saved."))
