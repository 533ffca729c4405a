"""Catalog use cases: categories, products, variants, translations, search.

Other domains read the catalog through ``variant_infos`` / ``variant_ids_by_sku`` and the
category helpers here, never through the tables.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, and_, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from mercato.auth.principal import Principal
from mercato.auth.service import audit
from mercato.catalog.event_types import (
    CategoryCreated,
    CategoryUpdated,
    ProductCreated,
    ProductUpdated,
)
from mercato.catalog.models import (
    Category,
    CategoryTranslation,
    Product,
    ProductTranslation,
    Variant,
)
from mercato.catalog.schemas import (
    CategoryIn,
    CategoryPatch,
    ProductIn,
    ProductPatch,
    ProductStatus,
    TranslationIn,
    VariantIn,
    VariantPatch,
)
from mercato.db import get_or_404, utcnow
from mercato.errors import (
    Conflict,
    FieldError,
    NotFound,
    UniqueViolation,
    ValidationProblem,
    conflict_from,
    unique_violation,
)
from mercato.events import publish
from mercato.i18n import fallback_chain, pick_translation
from mercato.pagination import Page, decode_id_cursor, decode_key_cursor, page_of

VARIANT_FIELDS = (
    "barcode",
    "options",
    "weight_g",
    "length_mm",
    "width_mm",
    "height_mm",
    "hs_code",
    "country_of_origin",
    "position",
    "active",
)


# --- categories ---------------------------------------------------------------------------


def category_parents(session: Session) -> dict[int, int | None]:
    """The whole tree as child -> parent (categories number in the hundreds, not millions)."""
    return dict(session.execute(select(Category.id, Category.parent_id)).all())


def descendants(parents: dict[int, int | None], roots: Iterable[int]) -> set[int]:
    children: dict[int, list[int]] = {}
    for child, parent in parents.items():
        if parent is not None:
            children.setdefault(parent, []).append(child)
    found: set[int] = set()
    stack = [r for r in roots if r in parents]
    while stack:
        node = stack.pop()
        if node in found:
            continue
        found.add(node)
        stack.extend(children.get(node, ()))
    return found


def ancestors(parents: dict[int, int | None], category_id: int | None) -> list[int]:
    """``category_id`` and its ancestors, nearest first."""
    chain: list[int] = []
    node = category_id
    while node is not None and node not in chain:
        chain.append(node)
        node = parents.get(node)
    return chain


def category_path(
    session: Session, category_id: int | None, parents: dict[int, int | None] | None = None
) -> list[int]:
    if category_id is None:
        return []
    return ancestors(parents if parents is not None else category_parents(session), category_id)


def _refresh_paths(session: Session, root_id: int) -> None:
    """After a category moved: every product below it gets its new ancestor path."""
    parents = category_parents(session)
    for category_id in sorted(descendants(parents, [root_id])):
        session.execute(
            update(Product)
            .where(Product.category_id == category_id)
            .values(category_path=ancestors(parents, category_id))
        )


def category_with_descendants(session: Session, category_ids: Iterable[int]) -> set[int]:
    return descendants(category_parents(session), category_ids)


def get_category(session: Session, category_id: int) -> Category:
    return get_or_404(session, Category, category_id, f"category {category_id}")


def category_by_code(session: Session, code: str) -> Category | None:
    return session.scalar(select(Category).where(Category.code == code))


def require_categories(session: Session, ids: Sequence[int], *, field: str) -> None:
    wanted = set(ids)
    found = (
        set(session.scalars(select(Category.id).where(Category.id.in_(wanted))))
        if wanted
        else set()
    )
    missing = sorted(wanted - found)
    if missing:
        raise ValidationProblem.field(field, f"unknown category ids {missing}")


def category_translations(session: Session, ids: Iterable[int]) -> dict[int, dict[str, str]]:
    result: dict[int, dict[str, str]] = {}
    id_list = list(ids)
    if not id_list:
        return result
    rows = session.execute(
        select(CategoryTranslation).where(CategoryTranslation.category_id.in_(id_list))
    ).scalars()
    for row in rows:
        result.setdefault(row.category_id, {})[row.locale] = row.name
    return result


def _set_category_translations(session: Session, category: Category, names: dict[str, str]) -> None:
    session.execute(
        delete(CategoryTranslation).where(CategoryTranslation.category_id == category.id)
    )
    session.add_all(
        CategoryTranslation(category_id=category.id, locale=loc, name=name)
        for loc, name in names.items()
    )


def _check_parent(session: Session, category_id: int | None, parent_id: int | None) -> None:
    if parent_id is None:
        return
    parents = category_parents(session)
    if parent_id not in parents:
        raise ValidationProblem.field("body.parent_id", f"unknown category {parent_id}")
    if category_id is not None and category_id in ancestors(parents, parent_id):
        raise ValidationProblem.field("body.parent_id", "a category cannot be its own ancestor")


def _category_event(category: Category) -> dict[str, Any]:
    return {"id": category.id, "code": category.code, "parent_id": category.parent_id}


def create_category(session: Session, actor: Principal, data: CategoryIn) -> Category:
    if category_by_code(session, data.code) is not None:
        raise Conflict(f"category code {data.code} exists", code="duplicate-code")
    _check_parent(session, None, data.parent_id)
    category = Category(
        code=data.code, name=data.name, parent_id=data.parent_id, position=data.position
    )
    session.add(category)
    session.flush()
    _set_category_translations(session, category, data.translations)
    audit(session, actor, "category.created", "category", category.id, data.model_dump(mode="json"))
    publish(session, CategoryCreated(**_category_event(category)))
    return category


def update_category(
    session: Session, actor: Principal, category_id: int, patch: CategoryPatch
) -> Category:
    category = get_category(session, category_id)
    changes = patch.model_dump(exclude_unset=True, mode="json")
    for name in ("name", "position", "translations"):
        if name in changes and changes[name] is None:
            raise ValidationProblem.field(f"body.{name}", "may not be null")
    if "parent_id" in changes:
        _check_parent(session, category.id, patch.parent_id)
        category.parent_id = patch.parent_id
        session.flush()
        _refresh_paths(session, category.id)
    if patch.name is not None:
        category.name = patch.name
    if patch.position is not None:
        category.position = patch.position
    if patch.translations is not None:
        _set_category_translations(session, category, patch.translations)
    if changes:
        session.flush()
        audit(session, actor, "category.updated", "category", category.id, changes)
        publish(session, CategoryUpdated(**_category_event(category)))
    return category


def list_categories(session: Session) -> list[Category]:
    return list(session.scalars(select(Category).order_by(Category.position, Category.id)))


def page_categories(
    session: Session,
    *,
    ids: Iterable[int] | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[Category]:
    """Categories in tree order (position, then id); ``ids`` limits them to a set."""
    query = select(Category).order_by(Category.position, Category.id)
    if ids is not None:
        query = query.where(Category.id.in_(sorted(ids)))
    after = decode_key_cursor(cursor, 2)
    if after is not None:
        position, ident = after
        query = query.where(
            or_(
                Category.position > position,
                and_(Category.position == position, Category.id > ident),
            )
        )
    rows = list(session.scalars(query.limit(limit + 1)))
    return page_of(rows, limit, key=lambda c: [c.position, c.id])


def localized_category_name(category: Category, translations: dict[str, str], locale: str) -> str:
    found = pick_translation(locale, translations)
    return translations[found] if found else category.name


# --- products and variants ----------------------------------------------------------------


def _with_children(query: Select[Any]) -> Select[Any]:
    return query.options(selectinload(Product.variants), selectinload(Product.translations))


def get_product(session: Session, product_id: int) -> Product:
    product: Product | None = session.scalar(
        _with_children(select(Product).where(Product.id == product_id))
    )
    if product is None:
        raise NotFound(f"product {product_id} not found")
    return product


def product_by_code(session: Session, code: str) -> Product | None:
    found: Product | None = session.scalar(
        _with_children(select(Product).where(Product.code == code))
    )
    return found


def check_unique_variants(
    session: Session,
    variants: Sequence[tuple[str | None, str | None]],
    *,
    field: str = "body.variants",
    exclude_variant_ids: Iterable[int] = (),
) -> None:
    """409 when a (sku, barcode) pair collides with another variant or within the request.

    ``field`` names the list the pairs come from (``body.variants`` -> ``body.variants[1].sku``);
    for a single variant given as the body itself pass ``"body"`` (-> ``body.sku``).
    """

    def path(i: int, name: str) -> str:
        return f"{field}.{name}" if field == "body" else f"{field}[{i}].{name}"

    errors: list[FieldError] = []
    seen_sku: set[str] = set()
    seen_barcode: set[str] = set()
    for i, (sku, barcode) in enumerate(variants):
        if sku is not None:
            if sku in seen_sku:
                errors.append(FieldError(path(i, "sku"), f"SKU {sku} appears twice"))
            seen_sku.add(sku)
        if barcode is not None:
            if barcode in seen_barcode:
                errors.append(FieldError(path(i, "barcode"), f"barcode {barcode} appears twice"))
            seen_barcode.add(barcode)
    excluded = list(exclude_variant_ids)
    if seen_sku or seen_barcode:
        query = select(Variant.sku, Variant.barcode).where(
            or_(Variant.sku.in_(seen_sku), Variant.barcode.in_(seen_barcode))
        )
        if excluded:
            query = query.where(Variant.id.not_in(excluded))
        for sku, barcode in session.execute(query):
            for i, (want_sku, want_barcode) in enumerate(variants):
                if want_sku is not None and want_sku == sku:
                    errors.append(FieldError(path(i, "sku"), f"SKU {sku} exists"))
                if want_barcode is not None and want_barcode == barcode:
                    errors.append(FieldError(path(i, "barcode"), f"barcode {barcode} exists"))
    if not errors:
        return
    detail = "; ".join(e["reason"] for e in errors[:5])
    existing = [e for e in errors if e["reason"].endswith("exists")]
    if not existing:
        raise ValidationProblem(detail, errors=errors)
    sku_taken = any(e["field"].endswith(".sku") for e in existing)
    raise Conflict(
        detail, errors=errors, code="duplicate-sku" if sku_taken else "duplicate-barcode"
    )


def flush_unique(
    session: Session,
    variants: Sequence[tuple[str | None, str | None]],
    *,
    field: str = "body.variants",
) -> None:
    """Flush, turning a lost race for a unique SKU, barcode or code into a 409.

    :func:`check_unique_variants` reads before writing; on PostgreSQL two requests can both
    pass that read, and the unique constraint stops the second at this flush. The answer
    is the one the read would have given, naming the field.
    """
    try:
        session.flush()
    except IntegrityError as exc:
        violation = unique_violation(exc)
        if violation is None:
            raise
        raise _variant_conflict(violation, variants, field) from exc


def _variant_conflict(
    violation: UniqueViolation, variants: Sequence[tuple[str | None, str | None]], field: str
) -> Conflict:
    column = violation.columns[0] if len(violation.columns) == 1 else None
    if column not in ("sku", "barcode") or violation.table not in (None, "variants"):
        return conflict_from(violation)
    value = violation.values[0] if violation.values else None
    position = 0 if column == "sku" else 1
    matching = [
        i
        for i, pair in enumerate(variants)
        if pair[position] is not None and (value is None or pair[position] == value)
    ]
    if field == "body":
        paths = [f"body.{column}"]
    else:
        paths = [f"{field}[{i}].{column}" for i in matching] or [field]
    label = "SKU" if column == "sku" else column
    detail = f"{label} {value} exists" if value else f"{label} exists"
    return Conflict(
        detail,
        errors=[FieldError(path, detail) for path in paths],
        code=f"duplicate-{column}",
    )


def _apply_variant(variant: Variant, fields: dict[str, Any]) -> None:
    for name in VARIANT_FIELDS:
        if name in fields:
            setattr(variant, name, fields[name])


def _refresh_search_text(product: Product) -> None:
    parts = [product.code, product.name]
    parts += [t.name for t in product.translations]
    for v in product.variants:
        parts.append(v.sku)
        if v.barcode:
            parts.append(v.barcode)
    product.search_text = " ".join(p.lower() for p in parts if p)


def product_event(product: Product) -> dict[str, Any]:
    return {
        "id": product.id,
        "code": product.code,
        "status": product.status,
        "category_id": product.category_id,
        "variant_ids": tuple(v.id for v in product.variants),
    }


def create_product(session: Session, actor: Principal, data: ProductIn) -> Product:
    if session.scalar(select(Product.id).where(Product.code == data.code)) is not None:
        raise Conflict(f"product code {data.code} exists", code="duplicate-code")
    if data.category_id is not None:
        require_categories(session, [data.category_id], field="body.category_id")
    check_unique_variants(session, [(v.sku, v.barcode) for v in data.variants])
    now = utcnow()
    product = Product(
        code=data.code,
        name=data.name,
        description=data.description,
        status=data.status.value,
        tax_class=data.tax_class,
        category_id=data.category_id,
        category_path=category_path(session, data.category_id),
        media_urls=list(data.media_urls),
        attributes=dict(data.attributes),
        created_at=now,
        updated_at=now,
        variants=[],
        translations=[
            ProductTranslation(
                locale=loc, name=t.name, description=t.description, options=t.stored_options()
            )
            for loc, t in data.translations.items()
        ],
    )
    for v in data.variants:
        variant = Variant(sku=v.sku, created_at=now, updated_at=now)
        _apply_variant(variant, v.model_dump())
        product.variants.append(variant)
    _refresh_search_text(product)
    session.add(product)
    flush_unique(session, [(v.sku, v.barcode) for v in data.variants])
    audit(
        session,
        actor,
        "product.created",
        "product",
        product.id,
        {"code": product.code, "variants": [v.sku for v in product.variants]},
    )
    publish(session, ProductCreated(**product_event(product)))
    return product


def update_product(
    session: Session, actor: Principal, product_id: int, patch: ProductPatch
) -> Product:
    product = get_product(session, product_id)
    changes = patch.model_dump(exclude_unset=True, mode="json")
    if "category_id" in changes and patch.category_id is not None:
        require_categories(session, [patch.category_id], field="body.category_id")
    if "category_id" in changes:
        product.category_path = category_path(session, patch.category_id)
    for name in ("name", "description", "tax_class", "category_id", "media_urls", "attributes"):
        if name in changes:
            value = getattr(patch, name)
            if value is None and name in ("name", "tax_class", "media_urls", "attributes"):
                raise ValidationProblem.field(f"body.{name}", "may not be null")
            setattr(product, name, value)
    if "status" in changes:
        if patch.status is None:
            raise ValidationProblem.field("body.status", "may not be null")
        product.status = patch.status.value
    return _touched(session, actor, product, "product.updated", changes)


def _touched(
    session: Session, actor: Principal, product: Product, action: str, changes: dict[str, Any]
) -> Product:
    if changes:
        product.updated_at = utcnow()
        _refresh_search_text(product)
        session.flush()
        audit(session, actor, action, "product", product.id, changes)
        publish(session, ProductUpdated(**product_event(product)))
    return product


def set_translation(
    session: Session, actor: Principal, product_id: int, locale: str, data: TranslationIn
) -> Product:
    product = get_product(session, product_id)
    existing = next((t for t in product.translations if t.locale == locale), None)
    if existing is None:
        product.translations.append(
            ProductTranslation(
                locale=locale,
                name=data.name,
                description=data.description,
                options=data.stored_options(),
            )
        )
    else:
        existing.name, existing.description = data.name, data.description
        existing.options = data.stored_options()
    return _touched(
        session, actor, product, "product.translated", {"locale": locale, "name": data.name}
    )


def delete_translation(session: Session, actor: Principal, product_id: int, locale: str) -> Product:
    product = get_product(session, product_id)
    existing = next((t for t in product.translations if t.locale == locale), None)
    if existing is None:
        raise NotFound(f"product {product_id} has no {locale} translation")
    product.translations.remove(existing)
    return _touched(session, actor, product, "product.translation_deleted", {"locale": locale})


def add_variant(session: Session, actor: Principal, product_id: int, data: VariantIn) -> Variant:
    product = get_product(session, product_id)
    check_unique_variants(session, [(data.sku, data.barcode)], field="body")
    now = utcnow()
    variant = Variant(sku=data.sku, created_at=now, updated_at=now)
    _apply_variant(variant, data.model_dump())
    product.variants.append(variant)
    flush_unique(session, [(data.sku, data.barcode)], field="body")
    _touched(session, actor, product, "variant.created", {"sku": data.sku})
    return variant


def get_variant(session: Session, variant_id: int) -> Variant:
    return get_or_404(session, Variant, variant_id, f"variant {variant_id}")


def update_variant(
    session: Session, actor: Principal, variant_id: int, patch: VariantPatch
) -> Variant:
    variant = get_variant(session, variant_id)
    changes = patch.model_dump(exclude_unset=True)
    if changes.get("barcode") is not None:
        check_unique_variants(
            session, [(None, changes["barcode"])], field="body", exclude_variant_ids=[variant.id]
        )
    for name in ("options", "position", "active"):
        if name in changes and changes[name] is None:
            raise ValidationProblem.field(f"body.{name}", "may not be null")
    _apply_variant(variant, changes)
    variant.updated_at = utcnow()
    flush_unique(session, [(None, variant.barcode)], field="body")
    product = get_product(session, variant.product_id)
    _touched(
        session,
        actor,
        product,
        "variant.updated",
        {"sku": variant.sku, **patch.model_dump(exclude_unset=True, mode="json")},
    )
    return variant


def search_products(
    session: Session,
    *,
    q: str | None = None,
    category_ids: Iterable[int] | None = None,
    sku: str | None = None,
    barcode: str | None = None,
    statuses: Sequence[str] | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[Product]:
    """Products matching every given filter, by id, with variants and translations loaded.

    ``category_ids`` is the exact set to match (callers expand a category to its subtree).
    """
    query = _with_children(select(Product)).order_by(Product.id)
    if q:
        for term in q.lower().split()[:8]:
            query = query.where(Product.search_text.contains(term, autoescape=True))
    if category_ids is not None:
        query = query.where(Product.category_id.in_(list(category_ids)))
    if sku:
        query = query.where(Product.id.in_(select(Variant.product_id).where(Variant.sku == sku)))
    if barcode:
        query = query.where(
            Product.id.in_(select(Variant.product_id).where(Variant.barcode == barcode))
        )
    if statuses:
        query = query.where(Product.status.in_(list(statuses)))
    after = decode_id_cursor(cursor)
    if after is not None:
        query = query.where(Product.id > after)
    rows: list[Product] = list(session.scalars(query.limit(limit + 1)))
    return page_of(rows, limit, key=lambda p: p.id)


def count_products(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(Product)) or 0)


def localized(product: Product, locale: str) -> tuple[str, str | None]:
    """Name and description in ``locale``, falling back to its language, then the default."""
    by_locale = {t.locale: t for t in product.translations}
    found = pick_translation(locale, {k: k for k in by_locale})
    if found is None:
        return product.name, product.description
    translation = by_locale[found]
    return translation.name, translation.description or product.description


def localized_options(
    options: dict[str, str], translated: dict[str, dict[str, Any]], locale: str
) -> dict[str, str]:
    """A variant's options in ``locale``: each option name and value in the first language
    of the fallback chain that translates it, else as the catalog has it.

    ``translated`` is the ``options`` of the product's translations, by locale.
    """
    chain = [translated[c] for c in fallback_chain(locale) if translated.get(c)]
    shown: dict[str, str] = {}
    for name, value in options.items():
        entries = [t[name] for t in chain if isinstance(t.get(name), dict)]
        label = next((e["name"] for e in entries if e.get("name")), name)
        words = next((e["values"][value] for e in entries if value in e.get("values", {})), value)
        shown[label] = words
    return shown


def option_translations(product: Product) -> dict[str, dict[str, Any]]:
    """The product's option translations by locale (its translations must be loaded)."""
    return {t.locale: t.options or {} for t in product.translations}


# --- read API for other domains -----------------------------------------------------------


@dataclass(frozen=True)
class VariantInfo:
    """What other domains (pricing, inventory, carts, orders) need to know of a variant."""

    id: int
    sku: str
    product_id: int
    product_code: str
    product_name: str
    product_status: str
    tax_class: str
    category_id: int | None
    # The product's category and all its ancestors (promotions and assortments match these).
    category_ids: frozenset[int]
    active: bool
    options: dict[str, str]
    weight_g: int | None
    hs_code: str | None
    country_of_origin: str | None

    @property
    def sellable(self) -> bool:
        return self.active and self.product_status == ProductStatus.ACTIVE.value


def variant_infos(session: Session, variant_ids: Iterable[int]) -> dict[int, VariantInfo]:
    """Variants by id in one query (unknown ids are simply absent)."""
    ids = sorted(set(variant_ids))
    if not ids:
        return {}
    rows = session.execute(
        select(
            Variant.id,
            Variant.sku,
            Variant.product_id,
            Product.code,
            Product.name,
            Product.status,
            Product.tax_class,
            Product.category_id,
            Product.category_path,
            Variant.active,
            Variant.options,
            Variant.weight_g,
            Variant.hs_code,
            Variant.country_of_origin,
        )
        .join(Product, Product.id == Variant.product_id)
        .where(Variant.id.in_(ids))
    ).all()
    found: dict[int, VariantInfo] = {}
    for (
        vid,
        sku,
        pid,
        pcode,
        pname,
        status,
        tax,
        cat,
        path,
        active,
        options,
        weight,
        hs,
        origin,
    ) in rows:
        found[vid] = VariantInfo(
            id=vid,
            sku=sku,
            product_id=pid,
            product_code=pcode,
            product_name=pname,
            product_status=status,
            tax_class=tax,
            category_id=cat,
            category_ids=frozenset(path or ()),
            active=active,
            options=dict(options or {}),
            weight_g=weight,
            hs_code=hs,
            country_of_origin=origin,
        )
    return found


def variant_ids_by_sku(session: Session, skus: Iterable[str]) -> dict[str, int]:
    wanted = sorted(set(skus))
    if not wanted:
        return {}
    return dict(
        session.execute(select(Variant.sku, Variant.id).where(Variant.sku.in_(wanted))).all()
    )


def variant_names(session: Session, variant_ids: Iterable[int], locale: str) -> dict[int, str]:
    """Localised product names (with the variant's options) for display on carts and orders."""
    return variant_labels(session, variant_infos(session, variant_ids), locale)


def variant_labels(session: Session, infos: dict[int, VariantInfo], locale: str) -> dict[int, str]:
    """As ``variant_names`` for variants already read: one query for the translations."""
    return {vid: label.name for vid, label in variant_displays(session, infos, locale).items()}


@dataclass(frozen=True)
class VariantDisplay:
    """How a variant reads in one language: ``"Product (value / value)"`` and its options."""

    name: str
    options: dict[str, str]


def variant_displays(
    session: Session, infos: dict[int, VariantInfo], locale: str
) -> dict[int, VariantDisplay]:
    """Localised names and options of variants already read: one query for translations."""
    if not infos:
        return {}
    chain = fallback_chain(locale)
    product_ids = sorted({i.product_id for i in infos.values()})
    names_by: dict[int, dict[str, str]] = {}
    options_by: dict[int, dict[str, dict[str, Any]]] = {}
    for product_id, found_locale, name, options in session.execute(
        select(
            ProductTranslation.product_id,
            ProductTranslation.locale,
            ProductTranslation.name,
            ProductTranslation.options,
        ).where(
            ProductTranslation.product_id.in_(product_ids), ProductTranslation.locale.in_(chain)
        )
    ):
        names_by.setdefault(product_id, {})[found_locale] = name
        options_by.setdefault(product_id, {})[found_locale] = options or {}
    shown: dict[int, VariantDisplay] = {}
    for variant_id, info in infos.items():
        names = names_by.get(info.product_id, {})
        best = next((names[c] for c in chain if c in names), info.product_name)
        options = localized_options(info.options, options_by.get(info.product_id, {}), locale)
        values = " / ".join(options.values())
        shown[variant_id] = VariantDisplay(f"{best} ({values})" if values else best, options)
    return shown


def all_variant_ids(session: Session, *, sellable_only: bool = True) -> list[int]:
    query = select(Variant.id).order_by(Variant.id)
    if sellable_only:
        query = query.join(Product, Product.id == Variant.product_id).where(
            Variant.active.is_(True), Product.status == ProductStatus.ACTIVE.value
        )
    return list(session.scalars(query))
