from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from mercato.db import Base, BigIntPK, JSONType, UTCDateTime, utcnow


class Category(Base):
    """A node of the category tree (``parent_id`` None for a root)."""

    __tablename__ = "categories"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(80), unique=True)
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("categories.id", ondelete="RESTRICT"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    position: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class CategoryTranslation(Base):
    __tablename__ = "category_translations"

    category_id: Mapped[int] = mapped_column(
        ForeignKey("categories.id", ondelete="CASCADE"), primary_key=True
    )
    locale: Mapped[str] = mapped_column(String(20), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))


class Product(Base):
    """What a shopper picks; the sellable units are its variants."""

    __tablename__ = "products"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(80), unique=True)
    # Name and description in the catalog's default language; translations override them.
    name: Mapped[str] = mapped_column(String(300))
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), index=True, default="draft")
    tax_class: Mapped[str] = mapped_column(String(40), default="standard")
    category_id: Mapped[int | None] = mapped_column(
        ForeignKey("categories.id", ondelete="SET NULL"), index=True
    )
    # The category and its ancestors, nearest first: promotions and assortments match on any
    # of them, and reading them must not cost a walk of the tree per cart.
    category_path: Mapped[list[int]] = mapped_column(JSONType, default=list)
    media_urls: Mapped[list[str]] = mapped_column(JSONType, default=list)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # Lower-cased codes, names in every language, SKUs and barcodes: what text search scans.
    search_text: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    variants: Mapped[list[Variant]] = relationship(
        back_populates="product",
        order_by="Variant.position, Variant.id",
        cascade="all, delete-orphan",
        lazy="raise",
    )
    translations: Mapped[list[ProductTranslation]] = relationship(
        order_by="ProductTranslation.locale", cascade="all, delete-orphan", lazy="raise"
    )


class ProductTranslation(Base):
    __tablename__ = "product_translations"

    product_id: Mapped[int] = mapped_column(
        ForeignKey("products.id", ondelete="CASCADE"), primary_key=True
    )
    locale: Mapped[str] = mapped_column(String(20), primary_key=True)
    name: Mapped[str] = mapped_column(String(300))
    description: Mapped[str | None] = mapped_column(Text)
    # Option names and values in this language, keyed by the variants' own words:
    # {"grind": {"name": "Mahlgrad", "values": {"Whole bean": "Ganze Bohne"}}}.
    options: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)


class Variant(Base):
    """A sellable unit with its own SKU: the thing stock, prices and order lines refer to."""

    __tablename__ = "variants"
    __table_args__ = (Index("ix_variants_product_position", "product_id", "position"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"))
    sku: Mapped[str] = mapped_column(String(80), unique=True)
    barcode: Mapped[str | None] = mapped_column(String(64), unique=True)
    options: Mapped[dict[str, str]] = mapped_column(JSONType, default=dict)
    weight_g: Mapped[int | None] = mapped_column(Integer)
    length_mm: Mapped[int | None] = mapped_column(Integer)
    width_mm: Mapped[int | None] = mapped_column(Integer)
    height_mm: Mapped[int | None] = mapped_column(Integer)
    hs_code: Mapped[str | None] = mapped_column(String(12))
    country_of_origin: Mapped[str | None] = mapped_column(String(2))
    position: Mapped[int] = mapped_column(Integer, default=0)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    product: Mapped[Product] = relationship(back_populates="variants", lazy="raise")
