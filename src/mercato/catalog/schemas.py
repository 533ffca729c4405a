from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import Field, TypeAdapter, field_validator

from mercato.i18n import normalise_locale
from mercato.locations.schemas import validate_country
from mercato.schemas import ResponseModel, StrictModel

CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
TAX_CLASSES = ("standard", "reduced", "food", "books", "zero", "exempt", "shipping", "digital")


class ProductStatus(StrEnum):
    DRAFT = "draft"
    ACTIVE = "active"
    ARCHIVED = "archived"


def validate_barcode(value: str) -> str:
    """Digits-only barcodes must be valid GTIN-8/12/13/14; other symbologies pass as given."""
    code = value.strip()
    if not code or len(code) > 64 or any(c.isspace() for c in code):
        raise ValueError("a barcode is 1 to 64 characters without spaces")
    if code.isdigit():
        if len(code) not in (8, 12, 13, 14):
            raise ValueError("a numeric barcode must be a GTIN of 8, 12, 13 or 14 digits")
        body, check = code[:-1], int(code[-1])
        total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
        if (10 - total % 10) % 10 != check:
            raise ValueError("GTIN check digit is wrong")
    return code


def validate_tax_class(value: str) -> str:
    if value not in TAX_CLASSES:
        raise ValueError(f"unknown tax class {value!r}; use one of {', '.join(TAX_CLASSES)}")
    return value


def validate_hs_code(value: str) -> str:
    digits = value.replace(".", "").strip()
    if not digits.isdigit() or not 6 <= len(digits) <= 10:
        raise ValueError("an HS code is 6 to 10 digits")
    return digits


def validate_options(value: dict[str, str]) -> dict[str, str]:
    for key, option in value.items():
        if not key or len(key) > 40 or not isinstance(option, str) or len(option) > 100:
            raise ValueError("options map a name (1-40 chars) to a value (up to 100 chars)")
    return value


def validate_locale_key(value: dict[str, Any]) -> dict[str, Any]:
    return {normalise_locale(locale): text for locale, text in value.items()}


class OptionTranslation(StrictModel):
    """One option of the product's variants in a language: its name and its values."""

    name: str | None = Field(default=None, min_length=1, max_length=40)
    values: dict[str, str] = Field(
        default_factory=dict, description="The variants' value -> its translation"
    )

    @field_validator("values")
    @classmethod
    def _values(cls, value: dict[str, str]) -> dict[str, str]:
        for original, translated in value.items():
            if not original or len(original) > 100 or not translated or len(translated) > 100:
                raise ValueError("values map a value (up to 100 chars) to its translation")
        return value


class TranslationIn(StrictModel):
    name: str = Field(min_length=1, max_length=300)
    description: str | None = Field(default=None, max_length=20_000)
    options: dict[str, OptionTranslation] = Field(
        default_factory=dict,
        description="By option name as the variants have it (\"grind\"): its name and values "
        "in this language",
        max_length=40,
    )

    @field_validator("options")
    @classmethod
    def _options(cls, value: dict[str, OptionTranslation]) -> dict[str, OptionTranslation]:
        if any(not key or len(key) > 40 for key in value):
            raise ValueError("option names are 1 to 40 characters")
        return value

    def stored_options(self) -> dict[str, Any]:
        return {k: v.model_dump(exclude_none=True) for k, v in self.options.items()}


class VariantFields(StrictModel):
    barcode: str | None = None
    options: dict[str, str] = Field(default_factory=dict)
    weight_g: int | None = Field(default=None, ge=0, le=10_000_000)
    length_mm: int | None = Field(default=None, ge=0, le=100_000)
    width_mm: int | None = Field(default=None, ge=0, le=100_000)
    height_mm: int | None = Field(default=None, ge=0, le=100_000)
    hs_code: str | None = None
    country_of_origin: str | None = None
    position: int = Field(default=0, ge=0, le=100_000)
    active: bool = True

    @field_validator("barcode")
    @classmethod
    def _barcode(cls, value: str | None) -> str | None:
        return None if value is None else validate_barcode(value)

    @field_validator("hs_code")
    @classmethod
    def _hs(cls, value: str | None) -> str | None:
        return None if value is None else validate_hs_code(value)

    @field_validator("country_of_origin")
    @classmethod
    def _origin(cls, value: str | None) -> str | None:
        return None if value is None else validate_country(value)

    _options = field_validator("options")(validate_options)


class VariantIn(VariantFields):
    sku: str = Field(min_length=1, max_length=80, pattern=CODE_PATTERN)


class VariantPatch(StrictModel):
    barcode: str | None = None
    options: dict[str, str] | None = None
    weight_g: int | None = Field(default=None, ge=0, le=10_000_000)
    length_mm: int | None = Field(default=None, ge=0, le=100_000)
    width_mm: int | None = Field(default=None, ge=0, le=100_000)
    height_mm: int | None = Field(default=None, ge=0, le=100_000)
    hs_code: str | None = None
    country_of_origin: str | None = None
    position: int | None = Field(default=None, ge=0, le=100_000)
    active: bool | None = None

    @field_validator("barcode")
    @classmethod
    def _barcode(cls, value: str | None) -> str | None:
        return None if value is None else validate_barcode(value)

    @field_validator("hs_code")
    @classmethod
    def _hs(cls, value: str | None) -> str | None:
        return None if value is None else validate_hs_code(value)

    @field_validator("country_of_origin")
    @classmethod
    def _origin(cls, value: str | None) -> str | None:
        return None if value is None else validate_country(value)

    @field_validator("options")
    @classmethod
    def _options(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return None if value is None else validate_options(value)


class ProductIn(StrictModel):
    code: str = Field(min_length=1, max_length=80, pattern=CODE_PATTERN)
    name: str = Field(min_length=1, max_length=300)
    description: str | None = Field(default=None, max_length=20_000)
    status: ProductStatus = ProductStatus.DRAFT
    tax_class: str = "standard"
    category_id: int | None = None
    media_urls: list[str] = Field(default_factory=list, max_length=50)
    attributes: dict[str, Any] = Field(default_factory=dict)
    translations: dict[str, TranslationIn] = Field(
        default_factory=dict, description="Keyed by locale (BCP 47), e.g. ja, ja-JP, de"
    )
    variants: list[VariantIn] = Field(default_factory=list, max_length=500)

    _tax = field_validator("tax_class")(validate_tax_class)
    _translations = field_validator("translations")(validate_locale_key)

    @field_validator("media_urls")
    @classmethod
    def _media(cls, value: list[str]) -> list[str]:
        return [validate_media_url(url) for url in value]


def validate_media_url(url: str) -> str:
    if not (url.startswith("https://") or url.startswith("http://")) or len(url) > 2000:
        raise ValueError(f"{url[:80]!r} is not an http(s) URL")
    return url


class ProductPatch(StrictModel):
    name: str | None = Field(default=None, min_length=1, max_length=300)
    description: str | None = Field(default=None, max_length=20_000)
    status: ProductStatus | None = None
    tax_class: str | None = None
    category_id: int | None = None
    media_urls: list[str] | None = Field(default=None, max_length=50)
    attributes: dict[str, Any] | None = None

    @field_validator("tax_class")
    @classmethod
    def _tax(cls, value: str | None) -> str | None:
        return None if value is None else validate_tax_class(value)

    @field_validator("media_urls")
    @classmethod
    def _media(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else [validate_media_url(url) for url in value]


class VariantOut(ResponseModel):
    id: int
    product_id: int
    sku: str
    barcode: str | None
    options: dict[str, str]
    weight_g: int | None
    length_mm: int | None
    width_mm: int | None
    height_mm: int | None
    hs_code: str | None
    country_of_origin: str | None
    position: int
    active: bool


class TranslationOut(ResponseModel):
    locale: str
    name: str
    description: str | None
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("options", mode="before")
    @classmethod
    def _none(cls, value: Any) -> Any:
        return value or {}


class ProductOut(ResponseModel):
    id: int
    code: str
    name: str
    description: str | None
    status: ProductStatus
    tax_class: str
    category_id: int | None
    media_urls: list[str]
    attributes: dict[str, Any]
    translations: list[TranslationOut]
    variants: list[VariantOut]
    created_at: datetime
    updated_at: datetime


class CategoryIn(StrictModel):
    code: str = Field(min_length=1, max_length=80, pattern=CODE_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    parent_id: int | None = None
    position: int = Field(default=0, ge=0, le=100_000)
    translations: dict[str, str] = Field(default_factory=dict)

    _translations = field_validator("translations")(validate_locale_key)


class CategoryPatch(StrictModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    parent_id: int | None = None
    position: int | None = Field(default=None, ge=0, le=100_000)
    translations: dict[str, str] | None = None

    @field_validator("translations")
    @classmethod
    def _translations(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return None if value is None else validate_locale_key(value)


class CategoryOut(ResponseModel):
    id: int
    code: str
    name: str
    parent_id: int | None
    position: int
    translations: dict[str, str]


class ImportRowError(ResponseModel):
    line: int
    field: str
    reason: str


class ImportReport(ResponseModel):
    format: str
    dry_run: bool
    rows: int
    products: int
    variants: int
    created: int = 0
    updated: int = 0
    errors: list[ImportRowError]
    imported: bool


# --- the import file -------------------------------------------------------------------------


class ImportProductIn(StrictModel):
    """One product of a JSON import file, with its variants and translations. It documents
    the file: the importer checks every product itself and reports each problem with its
    position in the list."""

    product_code: str = Field(min_length=1, max_length=80, description="Matches existing products")
    name: str = Field(min_length=1, max_length=300)
    description: str | None = Field(default=None, max_length=20_000)
    status: ProductStatus = ProductStatus.DRAFT
    tax_class: str = Field(default="standard", json_schema_extra={"enum": list(TAX_CLASSES)})
    category_code: str | None = Field(default=None, max_length=80)
    media_urls: list[str] = Field(default_factory=list, description="http(s) URLs")
    attributes: dict[str, Any] | None = Field(
        default=None, description="Left out: an existing product keeps its attributes"
    )
    translations: dict[str, TranslationIn] = Field(
        default_factory=dict, description="Keyed by locale (BCP 47), e.g. ja, ja-JP, de"
    )
    variants: list[VariantIn] = Field(
        default_factory=list, description="Matched to existing variants by SKU"
    )


class ImportFileIn(StrictModel):
    products: list[ImportProductIn]


IMPORT_CSV_DESCRIPTION = (
    "One row per variant, the header first. Columns: product_code and sku (required), name, "
    "description, status, tax_class, category_code, media_urls (|-separated), attributes (a "
    "JSON object), barcode, weight_g, length_mm, width_mm, height_mm, hs_code, "
    "country_of_origin, position, active; any number of option:<name> columns and "
    "name:<locale> / description:<locale> translation columns. Product cells repeat on each "
    "of its rows; a row whose variant cells are all empty is a product without variants."
)


def _inline(schema: Any, defs: dict[str, Any]) -> Any:
    """``schema`` with its local ``$ref``s replaced by what they name: the request body of
    an operation that reads its file itself has no component of its own to point to."""
    if isinstance(schema, dict):
        ref = schema.get("$ref", "")
        own = {k: _inline(v, defs) for k, v in schema.items() if k not in ("$ref", "$defs")}
        if ref.startswith("#/$defs/"):
            return {**_inline(defs[ref.removeprefix("#/$defs/")], defs), **own}
        return own
    if isinstance(schema, list):
        return [_inline(item, defs) for item in schema]
    return schema


def import_request_body(max_rows: int) -> dict[str, Any]:
    """The OpenAPI ``requestBody`` of ``POST /v1/catalog/import``: the file itself, JSON or
    CSV as the ``format`` query parameter says."""
    products = TypeAdapter(list[ImportProductIn] | ImportFileIn).json_schema()
    json_body = _inline(products, products.get("$defs", {}))
    json_body["description"] = (
        f"A list of products, or {{\"products\": [...]}}; at most {max_rows} products"
    )
    csv_body = {
        "type": "string",
        "description": f"{IMPORT_CSV_DESCRIPTION} At most {max_rows} rows.",
    }
    return {
        "required": True,
        "description": "The file, UTF-8, at most `MERCATO_MAX_IMPORT_BYTES` bytes (20 MiB by "
        "default; format=json or format=csv)",
        "content": {
            "application/json": {"schema": json_body},
            "text/csv": {"schema": csv_body},
        },
    }
