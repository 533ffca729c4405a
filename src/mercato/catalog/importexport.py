"""Bulk import and export of products, variants and translations (CSV and JSON).

CSV has one row per variant; product columns repeat on each of its rows (the shape ERPs and
spreadsheets produce). Columns: ``product_code, name, description, status, tax_class,
category_code, media_urls`` (``|``-separated), ``attributes`` (a JSON object), ``sku,
barcode, weight_g, length_mm, width_mm, height_mm, hs_code, country_of_origin, position,
active``, any number of ``option:<name>`` columns and ``name:<locale>`` /
``description:<locale>`` translation columns. Options are translated by
``option_name:<locale>:<name>`` (the option's name, on any row of the product) and
``option_value:<locale>:<name>`` (the translation of the row's ``option:<name>`` value);
they need the product's ``name:<locale>``. A row whose variant cells are all empty is a
product without variants.

JSON is a list of product objects (``product_code``, ..., ``translations``:
``{locale: {name, description, options}}`` with ``options`` as
``{"grind": {"name": "Mahlgrad", "values": {"Whole bean": "Ganze Bohne"}}}``,
``variants``: ``[{sku, barcode, options, ...}]``).

Every row is validated before anything is written. Any bad row means nothing is imported:
the report lists every error with its line (CSV: the file line, the header being line 1;
JSON: the 1-based position of the product in the list). Existing products (by code) and
variants (by SKU) are updated, new ones created.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from mercato.auth.principal import Principal
from mercato.auth.service import audit
from mercato.catalog import service
from mercato.catalog.event_types import ProductCreated, ProductFacts, ProductUpdated
from mercato.catalog.models import Category, Product, ProductTranslation, Variant
from mercato.catalog.schemas import (
    ImportReport,
    ImportRowError,
    ProductStatus,
    TranslationIn,
    VariantIn,
    validate_media_url,
    validate_tax_class,
)
from mercato.db import utcnow
from mercato.errors import ValidationProblem
from mercato.events import publish
from mercato.i18n import normalise_locale
from mercato.schemas import NUL_REASON, holds_nul

MAX_ROWS = 50_000
PRODUCT_COLUMNS = (
    "product_code",
    "name",
    "description",
    "status",
    "tax_class",
    "category_code",
    "media_urls",
    "attributes",
)
VARIANT_COLUMNS = (
    "sku",
    "barcode",
    "weight_g",
    "length_mm",
    "width_mm",
    "height_mm",
    "hs_code",
    "country_of_origin",
    "position",
    "active",
)
INT_COLUMNS = ("weight_g", "length_mm", "width_mm", "height_mm", "position")
OPTION_TRANSLATION_COLUMNS = ("option_name", "option_value")


@dataclass
class ProductRecord:
    line: int
    code: str
    name: str
    description: str | None
    status: str
    tax_class: str
    category_code: str | None
    media_urls: list[str]
    # None: not given (an existing product keeps its attributes).
    attributes: dict[str, Any] | None = None
    translations: dict[str, TranslationIn] = field(default_factory=dict)
    variants: list[tuple[int, VariantIn]] = field(default_factory=list)


class _Collector:
    def __init__(self) -> None:
        self.errors: list[ImportRowError] = []

    def add(self, line: int, field_name: str, reason: str) -> None:
        self.errors.append(ImportRowError(line=line, field=field_name, reason=reason))

    def pydantic(self, line: int, prefix: str, exc: ValidationError) -> None:
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            reason = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
            self.add(line, f"{prefix}{loc}" if loc else prefix.rstrip("."), reason)


_VARIANT_CELLS = frozenset({"variants", *VariantIn.model_fields})


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


# --- parsing -------------------------------------------------------------------------------


def parse_csv(text: str, errors: _Collector) -> list[ProductRecord]:
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames:
        errors.add(1, "header", "the file has no header row")
        return []
    header = [h.strip() for h in reader.fieldnames]
    for required in ("product_code", "sku"):
        if required not in header:
            errors.add(1, required, "required column is missing")
    known = set(PRODUCT_COLUMNS) | set(VARIANT_COLUMNS)
    for column in header:
        prefix, _, rest = column.partition(":")
        if column in known or (prefix in ("option", "name", "description") and rest):
            continue
        if prefix in OPTION_TRANSLATION_COLUMNS and all(rest.partition(":")[::2]):
            continue
        errors.add(1, column, "unknown column")
    if errors.errors:
        return []
    products: dict[str, ProductRecord] = {}
    for index, raw in enumerate(reader):
        line = reader.line_num
        if index >= MAX_ROWS:
            errors.add(line, "file", f"more than {MAX_ROWS} rows; split the file")
            break
        row = {(k or "").strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        if None in raw:
            errors.add(line, "row", "more cells than header columns")
            continue
        _csv_row(line, row, products, errors)
    return list(products.values())


def _csv_row(
    line: int, row: dict[str, str], products: dict[str, ProductRecord], errors: _Collector
) -> None:
    code = row.get("product_code", "")
    if not code:
        errors.add(line, "product_code", "required")
        return
    record = products.get(code)
    translations = _csv_translations(line, row, errors)
    if record is None:
        record = _product_record(
            line,
            {
                "product_code": code,
                "name": row.get("name"),
                "description": row.get("description") or None,
                "status": row.get("status") or None,
                "tax_class": row.get("tax_class") or None,
                "category_code": row.get("category_code") or None,
                "media_urls": [u for u in row.get("media_urls", "").split("|") if u.strip()],
                "attributes": _csv_attributes(line, row.get("attributes", ""), errors),
                "translations": translations,
            },
            errors,
        )
        if record is None:
            return
        products[code] = record
    elif row.get("name") and row["name"] != record.name:
        errors.add(line, "name", f"differs from the name given for {code} on line {record.line}")
    _merge_option_translations(line, record, _csv_option_translations(row), errors)
    variant: dict[str, Any] = {c: row[c] for c in VARIANT_COLUMNS if not _blank(row.get(c))}
    for column in INT_COLUMNS:
        if column in variant:
            try:
                variant[column] = int(variant[column])
            except ValueError:
                errors.add(line, column, "not a whole number")
                return
    options = {k.split(":", 1)[1]: v for k, v in row.items() if k.startswith("option:") and v}
    if not variant and not options:
        return  # a product without variants
    variant["options"] = options
    _add_variant(record, line, variant, errors, prefix="")


def _csv_attributes(line: int, cell: str, errors: _Collector) -> Any:
    if not cell:
        return None
    try:
        return json.loads(cell)
    except json.JSONDecodeError:
        errors.add(line, "attributes", "not a JSON object")
        return None


def _csv_translations(line: int, row: dict[str, str], errors: _Collector) -> dict[str, Any]:
    found: dict[str, dict[str, str]] = {}
    for column, value in row.items():
        kind, _, locale = column.partition(":")
        if kind in ("name", "description") and locale and value:
            found.setdefault(locale, {})[kind] = value
    for locale, parts in found.items():
        if "name" not in parts:
            errors.add(line, f"name:{locale}", "a translated description needs a translated name")
    return {locale: parts for locale, parts in found.items() if "name" in parts}


def _csv_option_translations(row: dict[str, str]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{locale: {option: {"name": ..., "values": {value: translation}}}}`` of one row."""
    found: dict[str, dict[str, dict[str, Any]]] = {}
    for column, value in row.items():
        kind, _, rest = column.partition(":")
        if kind not in OPTION_TRANSLATION_COLUMNS or not value:
            continue
        locale, _, option = rest.partition(":")
        entry = found.setdefault(locale, {}).setdefault(option, {})
        if kind == "option_name":
            entry["name"] = value
        elif row.get(f"option:{option}"):
            entry.setdefault("values", {})[row[f"option:{option}"]] = value
    return found


def _merge_option_translations(
    line: int,
    record: ProductRecord,
    found: dict[str, dict[str, dict[str, Any]]],
    errors: _Collector,
) -> None:
    """Each variant row brings its own translated values: gather them on the product."""
    for locale, options in found.items():
        column = f"option_name:{locale}"
        try:
            tag = normalise_locale(locale)
        except ValueError as exc:
            errors.add(line, column, str(exc))
            continue
        current = record.translations.get(tag)
        if current is None:
            errors.add(line, column, f"option translations need the product's name:{locale}")
            continue
        merged = current.stored_options()
        for option, entry in options.items():
            into = merged.setdefault(option, {})
            into.update({k: v for k, v in entry.items() if k == "name"})
            into["values"] = {**into.get("values", {}), **entry.get("values", {})}
        try:
            record.translations[tag] = TranslationIn.model_validate(
                {"name": current.name, "description": current.description, "options": merged}
            )
        except ValidationError as exc:
            errors.pydantic(line, f"{column}.", exc)


def parse_json(text: str, errors: _Collector) -> list[ProductRecord]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        errors.add(exc.lineno, "file", f"not JSON: {exc.msg}")
        return []
    if isinstance(data, dict) and isinstance(data.get("products"), list):
        data = data["products"]
    if not isinstance(data, list):
        errors.add(1, "file", 'expected a list of products (or {"products": [...]})')
        return []
    if len(data) > MAX_ROWS:
        errors.add(1, "file", f"more than {MAX_ROWS} products; split the file")
        return []
    records: list[ProductRecord] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(data, start=1):
        if not isinstance(item, dict):
            errors.add(index, "product", "each product is an object")
            continue
        unknown = set(item) - {*PRODUCT_COLUMNS, "translations", "variants"}
        for name in sorted(unknown):
            errors.add(index, name, "unknown field")
        record = _product_record(index, item, errors)
        if record is None:
            continue
        if record.code in seen:
            errors.add(index, "product_code", f"{record.code} also on line {seen[record.code]}")
            continue
        seen[record.code] = index
        variants = item.get("variants") or []
        if not isinstance(variants, list):
            errors.add(index, "variants", "a list of variants")
            continue
        for vi, variant in enumerate(variants):
            if not isinstance(variant, dict):
                errors.add(index, f"variants[{vi}]", "each variant is an object")
                continue
            _add_variant(record, index, dict(variant), errors, prefix=f"variants[{vi}].")
        records.append(record)
    return records


def _product_record(line: int, item: dict[str, Any], errors: _Collector) -> ProductRecord | None:
    before = len(errors.errors)
    # Variant cells are checked by VariantIn; the product's own cells here.
    for cell, value in item.items():
        if cell not in _VARIANT_CELLS and holds_nul(value):
            errors.add(line, cell, NUL_REASON)
    code = item.get("product_code")
    if _blank(code) or not isinstance(code, str) or len(code) > 80:
        errors.add(line, "product_code", "required, up to 80 characters")
    name = item.get("name")
    if _blank(name) or not isinstance(name, str) or len(name) > 300:
        errors.add(line, "name", "required, up to 300 characters")
    description = item.get("description") or None
    if description is not None and (not isinstance(description, str) or len(description) > 20_000):
        errors.add(line, "description", "text, up to 20000 characters")
    status = item.get("status") or ProductStatus.DRAFT.value
    if not isinstance(status, str) or status not in {s.value for s in ProductStatus}:
        errors.add(line, "status", "one of draft, active, archived")
    category_code = item.get("category_code") or None
    if category_code is not None and (
        not isinstance(category_code, str) or len(category_code) > 80
    ):
        errors.add(line, "category_code", "a category code, up to 80 characters")
    attributes = item.get("attributes")
    if attributes is not None and not isinstance(attributes, dict):
        errors.add(line, "attributes", "an object")
    tax_class = item.get("tax_class") or "standard"
    try:
        validate_tax_class(tax_class if isinstance(tax_class, str) else repr(tax_class))
    except ValueError as exc:
        errors.add(line, "tax_class", str(exc))
    media = item.get("media_urls") or []
    if not isinstance(media, list):
        errors.add(line, "media_urls", "a list of URLs")
        media = []
    for url in media:
        try:
            validate_media_url(url if isinstance(url, str) else repr(url))
        except ValueError as exc:
            errors.add(line, "media_urls", str(exc))
    translations: dict[str, TranslationIn] = {}
    raw_translations = item.get("translations") or {}
    if not isinstance(raw_translations, dict):
        errors.add(line, "translations", "an object keyed by locale")
        raw_translations = {}
    for locale, text in raw_translations.items():
        try:
            tag = normalise_locale(str(locale))
        except ValueError as exc:
            errors.add(line, f"translations.{locale}", str(exc))
            continue
        try:
            translations[tag] = TranslationIn.model_validate(text)
        except ValidationError as exc:
            errors.pydantic(line, f"translations.{locale}.", exc)
    if len(errors.errors) > before:
        return None
    assert isinstance(code, str) and isinstance(name, str)
    return ProductRecord(
        line=line,
        code=code.strip(),
        name=name.strip(),
        description=description,
        status=str(status),
        tax_class=str(tax_class),
        category_code=category_code,
        media_urls=[str(u) for u in media],
        attributes=attributes,
        translations=translations,
    )


def _add_variant(
    record: ProductRecord, line: int, variant: dict[str, Any], errors: _Collector, prefix: str
) -> None:
    try:
        record.variants.append((line, VariantIn.model_validate(variant)))
    except ValidationError as exc:
        errors.pydantic(line, prefix, exc)


# --- checking against the database ---------------------------------------------------------


def _check_references(
    session: Session, records: list[ProductRecord], errors: _Collector
) -> dict[str, int]:
    codes = {r.category_code for r in records if r.category_code}
    categories = (
        dict(
            session.execute(
                select(Category.code, Category.id).where(Category.code.in_(codes))
            ).all()
        )
        if codes
        else {}
    )
    for r in records:
        if r.category_code and r.category_code not in categories:
            errors.add(r.line, "category_code", f"unknown category {r.category_code}")
    _check_variant_keys(session, records, errors)
    return categories


def _check_variant_keys(session: Session, records: list[ProductRecord], errors: _Collector) -> None:
    sku_line: dict[str, int] = {}
    barcode_owner: dict[str, tuple[int, str]] = {}
    for r in records:
        for line, v in r.variants:
            if v.sku in sku_line:
                errors.add(line, "sku", f"SKU {v.sku} also on line {sku_line[v.sku]}")
            sku_line[v.sku] = line
            if v.barcode:
                if v.barcode in barcode_owner:
                    errors.add(
                        line,
                        "barcode",
                        f"barcode {v.barcode} also on line {barcode_owner[v.barcode][0]}",
                    )
                barcode_owner[v.barcode] = (line, v.sku)
    if not sku_line:
        return
    # A SKU may only move between imports if it stays on the same product.
    product_of_sku: dict[str, str] = {}
    for r in records:
        for _, v in r.variants:
            product_of_sku[v.sku] = r.code
    existing = session.execute(
        select(Variant.sku, Product.code)
        .join(Product, Product.id == Variant.product_id)
        .where(Variant.sku.in_(list(sku_line)))
    )
    for sku, product_code in existing:
        if product_of_sku[sku] != product_code:
            errors.add(sku_line[sku], "sku", f"SKU {sku} belongs to product {product_code}")
    if barcode_owner:
        taken = session.execute(
            select(Variant.barcode, Variant.sku).where(Variant.barcode.in_(list(barcode_owner)))
        )
        for barcode, sku in taken:
            line, wanted_sku = barcode_owner[str(barcode)]
            if sku != wanted_sku:
                errors.add(line, "barcode", f"barcode {barcode} belongs to SKU {sku}")


# --- writing -------------------------------------------------------------------------------


def _write(
    session: Session, records: list[ProductRecord], categories: dict[str, int]
) -> tuple[list[Product], list[Product]]:
    """Create or update every record; returns the created and the updated products."""
    existing = {
        p.code: p
        for p in session.scalars(
            select(Product)
            .where(Product.code.in_([r.code for r in records]))
            .options(selectinload(Product.variants), selectinload(Product.translations))
        )
    }
    created: list[Product] = []
    updated: list[Product] = []
    now = utcnow()
    parents = service.category_parents(session)
    for r in records:
        product = existing.get(r.code)
        if product is None:
            product = Product(code=r.code, created_at=now, variants=[], translations=[])
            session.add(product)
            created.append(product)
        else:
            updated.append(product)
        product.name, product.description = r.name, r.description
        product.status, product.tax_class = r.status, r.tax_class
        product.category_id = categories.get(r.category_code) if r.category_code else None
        product.category_path = service.category_path(session, product.category_id, parents)
        product.media_urls = list(r.media_urls)
        if r.attributes is not None:
            product.attributes = dict(r.attributes)
        product.attributes = product.attributes or {}
        product.updated_at = now
        by_locale = {t.locale: t for t in product.translations}
        for locale, t in r.translations.items():
            row = by_locale.get(locale)
            if row is None:
                product.translations.append(
                    ProductTranslation(
                        locale=locale,
                        name=t.name,
                        description=t.description,
                        options=t.stored_options(),
                    )
                )
            else:
                row.name, row.description = t.name, t.description
                if "options" in t.model_fields_set:  # a file without them keeps them
                    row.options = t.stored_options()
        by_sku = {v.sku: v for v in product.variants}
        for _, v in r.variants:
            variant = by_sku.get(v.sku)
            if variant is None:
                variant = Variant(sku=v.sku, created_at=now)
                product.variants.append(variant)
            for name, value in v.model_dump(exclude={"sku"}).items():
                setattr(variant, name, value)
            variant.updated_at = now
        service._refresh_search_text(product)
    session.flush()
    return created, updated


def run_import(
    session: Session, actor: Principal, text: str, fmt: str, *, dry_run: bool
) -> ImportReport:
    if fmt not in ("csv", "json"):
        raise ValidationProblem.field("query.format", "csv or json")
    errors = _Collector()
    records = parse_csv(text, errors) if fmt == "csv" else parse_json(text, errors)
    # Every record that parsed is also checked against the database, so that one report
    # (a dry run in particular) lists every bad row, not only the first kind of problem.
    categories = _check_references(session, records, errors)
    rows = sum(len(r.variants) for r in records) if fmt == "csv" else len(records)
    report = ImportReport(
        format=fmt,
        dry_run=dry_run,
        rows=rows,
        products=len(records),
        variants=sum(len(r.variants) for r in records),
        errors=sorted(errors.errors, key=lambda e: (e.line, e.field)),
        imported=False,
    )
    if errors.errors or dry_run:
        return report
    created, updated = _write(session, records, categories)
    audit(
        session,
        actor,
        "catalog.imported",
        "catalog",
        None,
        {
            "format": fmt,
            "products": len(records),
            "created": len(created),
            "updated": len(updated),
        },
    )
    kinds: tuple[tuple[type[ProductFacts], list[Product]], ...] = (
        (ProductCreated, created),
        (ProductUpdated, updated),
    )
    for kind, products in kinds:
        for product in products:
            publish(session, kind(**service.product_event(product)))
    report.created, report.updated, report.imported = len(created), len(updated), True
    return report


# --- export --------------------------------------------------------------------------------


def _all_products(session: Session) -> list[Product]:
    return list(
        session.scalars(
            select(Product)
            .order_by(Product.id)
            .options(selectinload(Product.variants), selectinload(Product.translations))
        )
    )


def export_records(session: Session) -> list[dict[str, Any]]:
    categories = dict(session.execute(select(Category.id, Category.code)).all())
    records = []
    for p in _all_products(session):
        records.append(
            {
                "product_code": p.code,
                "name": p.name,
                "description": p.description,
                "status": p.status,
                "tax_class": p.tax_class,
                "category_code": categories.get(p.category_id) if p.category_id else None,
                "media_urls": list(p.media_urls),
                "attributes": dict(p.attributes or {}),
                "translations": {
                    t.locale: {
                        "name": t.name,
                        "description": t.description,
                        **({"options": dict(t.options)} if t.options else {}),
                    }
                    for t in p.translations
                },
                "variants": [
                    {
                        "sku": v.sku,
                        "barcode": v.barcode,
                        "options": dict(v.options),
                        **{
                            c: getattr(v, c) for c in VARIANT_COLUMNS if c not in ("sku", "barcode")
                        },
                        "active": v.active,
                    }
                    for v in p.variants
                ],
            }
        )
    return records


def export_json(session: Session) -> str:
    return json.dumps(export_records(session), ensure_ascii=False, indent=1)


def export_csv(session: Session) -> str:
    records = export_records(session)
    option_names = sorted({k for r in records for v in r["variants"] for k in v["options"]})
    locales = sorted({loc for r in records for loc in r["translations"]})
    header = [*PRODUCT_COLUMNS, *VARIANT_COLUMNS]
    header += [f"option:{name}" for name in option_names]
    for loc in locales:
        header += [f"name:{loc}", f"description:{loc}"]
    translated = _translated_options(records, locales)
    header += [f"{kind}:{loc}:{name}" for kind, loc, name in translated]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for r in records:
        product_cells = [
            r["product_code"],
            r["name"],
            r["description"] or "",
            r["status"],
            r["tax_class"],
            r["category_code"] or "",
            "|".join(r["media_urls"]),
            json.dumps(r["attributes"], ensure_ascii=False, sort_keys=True)
            if r["attributes"]
            else "",
        ]
        translation_cells: list[str] = []
        for loc in locales:
            t = r["translations"].get(loc) or {}
            translation_cells += [t.get("name") or "", t.get("description") or ""]
        if not r["variants"]:
            # A product without variants: one row whose variant cells are empty.
            blank = [""] * (len(VARIANT_COLUMNS) + len(option_names))
            option_cells = [_option_cell(r, {"options": {}}, column) for column in translated]
            writer.writerow(product_cells + blank + translation_cells + option_cells)
        for v in r["variants"]:
            cells = [*product_cells]
            cells += [_csv_cell(v.get(c)) for c in VARIANT_COLUMNS]
            cells += [v["options"].get(name, "") for name in option_names]
            option_cells = [_option_cell(r, v, column) for column in translated]
            writer.writerow(cells + translation_cells + option_cells)
    return out.getvalue()


def _translated_options(
    records: list[dict[str, Any]], locales: list[str]
) -> list[tuple[str, str, str]]:
    """The ``option_name`` / ``option_value`` columns the records need, in a stable order."""
    pairs = sorted(
        {
            (loc, name)
            for r in records
            for loc in locales
            for name in ((r["translations"].get(loc) or {}).get("options") or {})
        }
    )
    return [(kind, loc, name) for loc, name in pairs for kind in OPTION_TRANSLATION_COLUMNS]


def _option_cell(
    record: dict[str, Any], variant: dict[str, Any], column: tuple[str, str, str]
) -> str:
    kind, loc, name = column
    entry = ((record["translations"].get(loc) or {}).get("options") or {}).get(name) or {}
    if kind == "option_name":
        return str(entry.get("name") or "")
    value = variant["options"].get(name)
    return str((entry.get("values") or {}).get(value, "")) if value else ""


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
