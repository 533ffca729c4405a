"""The shopper-facing read model: the catalog as one channel sees it, in its language."""

from __future__ import annotations

from typing import Annotated

from fastapi import Header, Query
from sqlalchemy.orm import Session

from mercato.carts import service as carts
from mercato.carts.totals import PriceTax, price_tax
from mercato.catalog import service as catalog
from mercato.catalog.models import Category, Product
from mercato.catalog.schemas import ProductStatus
from mercato.channels.context import ChannelContext
from mercato.channels.deps import ChannelCtx
from mercato.deps import DbSession, Pagination
from mercato.errors import NotFound, ValidationProblem
from mercato.i18n import parse_accept_language
from mercato.locations.schemas import validate_country
from mercato.money import format_money
from mercato.openapi import problem_responses
from mercato.pricing import service as pricing
from mercato.routing import router
from mercato.schemas import PageOut
from mercato.storefront.schemas import (
    PriceTaxStatus,
    StoreCategoryOut,
    StoreChannelOut,
    StorePriceOut,
    StoreProductOut,
    StoreProductPage,
    StoreVariantOut,
)

api = router("/v1/store", tags=["storefront"])

LocaleQuery = Annotated[
    str | None, Query(max_length=20, description="Overrides Accept-Language and the default")
]
AcceptLanguage = Annotated[str | None, Header(include_in_schema=False)]
CurrencyQuery = Annotated[
    str | None, Query(min_length=3, max_length=3, description="One of the channel's currencies")
]
CountryQuery = Annotated[
    str | None,
    Query(
        min_length=2,
        max_length=2,
        description="The shopper's country: prices in the currency the channel quotes it in "
        "(unless currency is given), with its country prices and tax",
    ),
]


def resolve_locale(channel: ChannelContext, locale: str | None, accept_language: str | None) -> str:
    """An explicit ``locale`` wins, then the browser's languages, then the channel default."""
    if locale:
        return channel.pick_locale(locale)
    for tag in parse_accept_language(accept_language):
        matched = channel.match_locale(tag)
        if matched:
            return matched
    return channel.default_locale


class _CategoryNames:
    def __init__(self, session: Session, locale: str) -> None:
        self.categories = {c.id: c for c in catalog.list_categories(session)}
        self.names = catalog.category_translations(session, self.categories)
        self.locale = locale

    def out(self, category_id: int | None) -> StoreCategoryOut | None:
        category = self.categories.get(category_id) if category_id is not None else None
        if category is None:
            return None
        return self._out(category)

    def _out(self, category: Category) -> StoreCategoryOut:
        name = catalog.localized_category_name(
            category, self.names.get(category.id, {}), self.locale
        )
        return StoreCategoryOut(
            id=category.id, code=category.code, name=name, parent_id=category.parent_id
        )


class _Prices:
    """The page's prices, resolved in one call for every variant shown."""

    def __init__(
        self,
        session: Session,
        channel: ChannelContext,
        currency: str,
        locale: str,
        products: list[Product],
        country: str | None = None,
    ) -> None:
        self.country = country or channel.country
        self.currency, self.locale = currency, locale
        self._tax: dict[bool, PriceTax] = {}
        ids = [v.id for p in products for v in p.variants]
        self.found = (
            pricing.resolve_prices(
                session,
                ids,
                price_list=channel.price_list,
                currency=currency,
                country=self.country,
            )
            if channel.price_list
            else {}
        )

    def out(self, variant_id: int) -> StorePriceOut | None:
        price = self.found.get(variant_id)
        if price is None:
            return None
        compare = price.compare_at
        tax = self.tax(price.tax_inclusive)
        return StorePriceOut(
            amount=price.amount,
            currency=price.currency,
            formatted=format_money(price.amount, price.currency, self.locale),
            tax_inclusive=tax.included,
            tax_status=_tax_status(tax),
            tax_note=tax.pending,
            compare_at=compare,
            compare_at_formatted=None
            if compare is None
            else format_money(compare, price.currency, self.locale),
        )


    def tax(self, inclusive: bool) -> PriceTax:
        """Asked once per page (every price of a list shares the convention)."""
        if inclusive not in self._tax:
            self._tax[inclusive] = price_tax(
                carts.tax_provider(), self.currency, inclusive, self.country
            )
        return self._tax[inclusive]


def _tax_status(tax: PriceTax) -> PriceTaxStatus:
    if tax.pending is not None:
        return PriceTaxStatus.PENDING
    return PriceTaxStatus.INCLUDED if tax.included else PriceTaxStatus.ADDED


def product_view(
    product: Product, locale: str, categories: _CategoryNames, prices: _Prices
) -> StoreProductOut:
    name, description = catalog.localized(product, locale)
    translated = catalog.option_translations(product)
    return StoreProductOut(
        id=product.id,
        code=product.code,
        locale=locale,
        name=name,
        description=description,
        category=categories.out(product.category_id),
        media_urls=list(product.media_urls),
        variants=[
            StoreVariantOut(
                id=v.id,
                sku=v.sku,
                barcode=v.barcode,
                options=catalog.localized_options(dict(v.options), translated, locale),
                price=prices.out(v.id),
            )
            for v in product.variants
            if v.active
        ],
    )


def resolve_country(country: str | None) -> str | None:
    if country is None:
        return None
    try:
        return validate_country(country)
    except ValueError as exc:
        raise ValidationProblem.field("query.country", str(exc)) from None


def resolve_currency(
    channel: ChannelContext, currency: str | None, country: str | None = None
) -> str:
    """The asked currency if the channel sells in it, else the one it quotes the
    shopper's country in."""
    if currency is None:
        return channel.currency_for(country)
    wanted = currency.upper()
    if not channel.sells_in(wanted):
        raise ValidationProblem.field(
            "query.currency", f"{channel.code} sells in {', '.join(channel.currencies)}"
        )
    return wanted


def _visible(channel: ChannelContext, product: Product) -> bool:
    if product.status != ProductStatus.ACTIVE.value:
        return False
    allowed = channel.assortment_category_ids
    return allowed is None or product.category_id in allowed


@api.get("/channel", response_model=StoreChannelOut)
def channel_info(
    channel: ChannelCtx, locale: LocaleQuery = None, accept_language: AcceptLanguage = None
) -> StoreChannelOut:
    return StoreChannelOut(
        code=channel.code,
        name=channel.name,
        type=channel.type,
        locale=resolve_locale(channel, locale, accept_language),
        locales=list(channel.locales),
        currencies=list(channel.currencies),
        country=channel.country,
        country_currencies=dict(channel.country_currencies),
    )


@api.get("/categories", response_model=PageOut[StoreCategoryOut])
def list_categories(
    session: DbSession,
    channel: ChannelCtx,
    page: Pagination,
    locale: LocaleQuery = None,
    accept_language: AcceptLanguage = None,
) -> PageOut[StoreCategoryOut]:
    """The channel's categories in its language, in tree order (position, then id)."""
    chosen = resolve_locale(channel, locale, accept_language)
    cursor, limit = page
    result = catalog.page_categories(
        session, ids=channel.assortment_category_ids, cursor=cursor, limit=limit
    )
    names = catalog.category_translations(session, [c.id for c in result.items])
    return PageOut(
        items=[
            StoreCategoryOut(
                id=c.id,
                code=c.code,
                name=catalog.localized_category_name(c, names.get(c.id, {}), chosen),
                parent_id=c.parent_id,
            )
            for c in result.items
        ],
        next_cursor=result.next_cursor,
    )


@api.get(
    "/products",
    response_model=StoreProductPage,
    responses=problem_responses(404),  # an unknown category code
)
def list_products(
    session: DbSession,
    channel: ChannelCtx,
    page: Pagination,
    q: Annotated[str | None, Query(max_length=200)] = None,
    category: Annotated[str | None, Query(max_length=80, description="Category code")] = None,
    locale: LocaleQuery = None,
    currency: CurrencyQuery = None,
    country: CountryQuery = None,
    accept_language: AcceptLanguage = None,
) -> StoreProductPage:
    chosen = resolve_locale(channel, locale, accept_language)
    shopper_country = resolve_country(country)
    money = resolve_currency(channel, currency, shopper_country)
    cursor, limit = page
    category_ids: set[int] | None = None
    if category:
        found = catalog.category_by_code(session, category)
        if found is None:
            raise NotFound(f"category {category} not found")
        category_ids = catalog.category_with_descendants(session, [found.id])
    if channel.assortment_category_ids is not None:
        allowed = set(channel.assortment_category_ids)
        category_ids = allowed if category_ids is None else category_ids & allowed
    result = catalog.search_products(
        session,
        q=q,
        category_ids=category_ids,
        statuses=[ProductStatus.ACTIVE.value],
        cursor=cursor,
        limit=limit,
    )
    names = _CategoryNames(session, chosen)
    prices = _Prices(session, channel, money, chosen, result.items, shopper_country)
    return StoreProductPage(
        locale=chosen,
        currency=money,
        items=[product_view(p, chosen, names, prices) for p in result.items],
        next_cursor=result.next_cursor,
    )


@api.get("/products/{product_id}", response_model=StoreProductOut)
def get_product(
    product_id: int,
    session: DbSession,
    channel: ChannelCtx,
    locale: LocaleQuery = None,
    currency: CurrencyQuery = None,
    country: CountryQuery = None,
    accept_language: AcceptLanguage = None,
) -> StoreProductOut:
    chosen = resolve_locale(channel, locale, accept_language)
    shopper_country = resolve_country(country)
    money = resolve_currency(channel, currency, shopper_country)
    product = catalog.get_product(session, product_id)
    if not _visible(channel, product):
        raise NotFound(f"product {product_id} not found")
    prices = _Prices(session, channel, money, chosen, [product], shopper_country)
    return product_view(product, chosen, _CategoryNames(session, chosen), prices)
