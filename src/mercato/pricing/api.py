from __future__ import annotations

import csv
import io
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Literal

from fastapi import Depends, Query, Request
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from mercato.auth.permissions import Permission
from mercato.auth.principal import Principal
from mercato.catalog import service as catalog
from mercato.deps import DbSession, Pagination, require
from mercato.errors import FieldError, ValidationProblem
from mercato.input_checks import id_list
from mercato.money import RoundingRule, format_money, validate_currency
from mercato.pricing import service
from mercato.pricing.schemas import (
    PriceIn,
    PriceListIn,
    PriceListOut,
    PriceListPatch,
    PriceOut,
    PricesIn,
    RateIn,
    RateOut,
    RatesIn,
    ResolvedPriceOut,
    RoundingIn,
    RoundingOut,
)
from mercato.routing import router
from mercato.schemas import PageOut

api = router("/v1", tags=["pricing"])

Reader = Annotated[Principal, Depends(require(Permission.PRICING_READ))]
Writer = Annotated[Principal, Depends(require(Permission.PRICING_WRITE))]


@api.get("/price-lists", response_model=PageOut[PriceListOut])
def list_price_lists(session: DbSession, principal: Reader) -> PageOut[PriceListOut]:
    lists = service.list_price_lists(session)
    return PageOut(items=[PriceListOut.model_validate(p) for p in lists])


@api.post("/price-lists", response_model=PriceListOut, status_code=201)
def create_price_list(body: PriceListIn, session: DbSession, principal: Writer) -> PriceListOut:
    return PriceListOut.model_validate(
        service.create_price_list(
            session,
            principal,
            code=body.code,
            name=body.name,
            base_currency=body.base_currency,
            tax_inclusive=body.tax_inclusive,
        )
    )


@api.get("/price-lists/{code}", response_model=PriceListOut)
def get_price_list(code: str, session: DbSession, principal: Reader) -> PriceListOut:
    return PriceListOut.model_validate(service.get_price_list(session, code))


@api.patch("/price-lists/{code}", response_model=PriceListOut)
def update_price_list(
    code: str, body: PriceListPatch, session: DbSession, principal: Writer
) -> PriceListOut:
    changes = body.model_dump(exclude_unset=True)
    return PriceListOut.model_validate(service.update_price_list(session, principal, code, changes))


@api.get("/price-lists/{code}/prices", response_model=PageOut[PriceOut])
def list_prices(
    code: str,
    session: DbSession,
    principal: Reader,
    page: Pagination,
    variant_id: int | None = None,
) -> PageOut[PriceOut]:
    """By variant, then in the order the prices were set."""
    cursor, limit = page
    found = service.list_prices(session, code, variant_id, cursor=cursor, limit=limit)
    return PageOut(
        items=[PriceOut.model_validate(p) for p in found.items], next_cursor=found.next_cursor
    )


def _to_inputs(session: DbSession, prices: list[PriceIn]) -> list[service.PriceInput]:
    skus = catalog.variant_ids_by_sku(session, [p.sku for p in prices if p.sku])
    errors = [
        FieldError(f"body.prices[{i}].sku", f"unknown SKU {p.sku}")
        for i, p in enumerate(prices)
        if p.sku and p.sku not in skus
    ]
    if errors:
        raise ValidationProblem(errors[0]["reason"], errors=errors)
    return [
        service.PriceInput(
            variant_id=p.variant_id if p.variant_id is not None else skus[p.sku or ""],
            currency=p.currency,
            amount=p.amount,
            country=p.country,
            customer_group=p.customer_group,
            starts_at=p.starts_at,
            ends_at=p.ends_at,
        )
        for p in prices
    ]


@api.put("/price-lists/{code}/prices")
def set_prices(code: str, body: PricesIn, session: DbSession, principal: Writer) -> dict[str, int]:
    """Create or replace prices; each is keyed by variant, currency, country, group, start."""
    return {"saved": service.set_prices(session, principal, code, _to_inputs(session, body.prices))}


@api.get("/prices/resolve", response_model=PageOut[ResolvedPriceOut])
def resolve(
    session: DbSession,
    principal: Reader,
    price_list: Annotated[str, Query(max_length=40)],
    currency: Annotated[str, Query(min_length=3, max_length=3)],
    variant_ids: Annotated[str, Query(description="Comma-separated variant ids (up to 200)")],
    country: Annotated[str | None, Query(min_length=2, max_length=2)] = None,
    customer_group: Annotated[str | None, Query(max_length=40)] = None,
    at: datetime | None = None,
    locale: Annotated[str, Query(max_length=20)] = "en",
) -> PageOut[ResolvedPriceOut]:
    """The price each variant sells at, and where it came from (explicit or converted)."""
    try:
        code = validate_currency(currency)
    except ValueError as exc:
        raise ValidationProblem.field("query.currency", str(exc)) from exc
    ids = id_list(variant_ids, "query.variant_ids")
    service.get_price_list(session, price_list)
    found = service.resolve_prices(
        session,
        ids,
        price_list=price_list,
        currency=code,
        country=country.upper() if country else None,
        customer_group=customer_group,
        at=at,
    )
    items = [
        ResolvedPriceOut(
            variant_id=p.variant_id,
            currency=p.currency,
            amount=p.amount,
            formatted=format_money(p.amount, p.currency, locale),
            tax_inclusive=p.tax_inclusive,
            price_list=p.price_list,
            source=p.source,
            compare_at=p.compare_at,
        )
        for p in found.values()
    ]
    return PageOut(items=items)


@api.get("/exchange-rates", response_model=PageOut[RateOut])
def list_rates(
    session: DbSession,
    principal: Reader,
    base: Annotated[str | None, Query(min_length=3, max_length=3)] = None,
    quote: Annotated[str | None, Query(min_length=3, max_length=3)] = None,
) -> PageOut[RateOut]:
    rows = service.list_rates(
        session, base.upper() if base else None, quote.upper() if quote else None
    )
    return PageOut(items=[RateOut.model_validate(r) for r in rows])


def _rate_inputs(rates: list[RateIn]) -> list[service.RateInput]:
    return [
        service.RateInput(r.base_currency, r.quote_currency, r.rate, r.effective_at, r.source)
        for r in rates
    ]


@api.post("/exchange-rates", status_code=201)
def import_rates(body: RatesIn, session: DbSession, principal: Writer) -> dict[str, int]:
    """Import dated rates (JSON). Rates are never fetched from the internet."""
    return {"imported": service.import_rates(session, principal, _rate_inputs(body.rates))}


@api.post("/exchange-rates/import", status_code=201)
async def import_rates_file(
    request: Request, session: DbSession, principal: Writer, format: Literal["csv"] = "csv"
) -> dict[str, int]:
    """CSV with a header ``base_currency,quote_currency,rate,effective_at[,source]``."""
    text = (await request.body()).decode("utf-8-sig", errors="replace")
    rows = list(csv.DictReader(io.StringIO(text)))
    parsed: list[RateIn] = []
    errors: list[FieldError] = []
    for line, row in enumerate(rows, start=2):
        try:
            if "rate" in row:
                Decimal(row["rate"])
            parsed.append(RateIn.model_validate({k: v for k, v in row.items() if v}))
        except (ValidationError, InvalidOperation) as exc:
            errors.append(FieldError(f"line {line}", str(exc).splitlines()[0]))
    if not rows:
        errors.append(FieldError("body", "no rows"))
    if errors:
        raise ValidationProblem(f"{len(errors)} bad row(s); nothing imported", errors=errors)
    count = await run_in_threadpool(service.import_rates, session, principal, _rate_inputs(parsed))
    return {"imported": count}


@api.get("/currency-rounding", response_model=PageOut[RoundingOut])
def list_rounding(session: DbSession, principal: Reader) -> PageOut[RoundingOut]:
    return PageOut(items=[RoundingOut.model_validate(r) for r in service.list_rounding(session)])


@api.put("/currency-rounding/{currency}", response_model=RoundingOut)
def set_rounding(
    currency: str, body: RoundingIn, session: DbSession, principal: Writer
) -> RoundingOut:
    """How converted prices are rounded in a currency (e.g. 1000 VND steps, .99 endings)."""
    try:
        code = validate_currency(currency)
        rule = RoundingRule(increment=body.increment, mode=body.mode, ending=body.ending)
    except ValueError as exc:
        raise ValidationProblem.field("path.currency", str(exc)) from exc
    return RoundingOut.model_validate(service.set_rounding(session, principal, code, rule))
