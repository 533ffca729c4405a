"""The catalog's events: products and categories created or changed."""

from __future__ import annotations

from dataclasses import dataclass

from mercato.event_types import DomainEvent


@dataclass(frozen=True, kw_only=True)
class CategoryFacts(DomainEvent):
    AGGREGATE = "category"
    KEY = "id"

    id: int
    code: str
    parent_id: int | None


@dataclass(frozen=True, kw_only=True)
class CategoryCreated(CategoryFacts):
    """A category was added to the tree."""

    TYPE = "category.created"


@dataclass(frozen=True, kw_only=True)
class CategoryUpdated(CategoryFacts):
    """A category changed (name, place in the tree, translations)."""

    TYPE = "category.updated"


@dataclass(frozen=True, kw_only=True)
class ProductFacts(DomainEvent):
    AGGREGATE = "product"
    KEY = "id"

    id: int
    code: str
    status: str
    category_id: int | None
    variant_ids: tuple[int, ...]


@dataclass(frozen=True, kw_only=True)
class ProductCreated(ProductFacts):
    """A product was added (by hand or by an import)."""

    TYPE = "product.created"


@dataclass(frozen=True, kw_only=True)
class ProductUpdated(ProductFacts):
    """A product or its variants changed (by hand or by an import)."""

    TYPE = "product.updated"
