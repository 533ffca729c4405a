"""Prices: price lists, scheduled and targeted prices, exchange rates, conversion rounding.

Resolution of a variant's price in (price list, currency, country, customer group, time):

1. Explicit prices in that currency win over converted ones. Among explicit prices that
   are active at that time, the most specific wins: customer group and country, then
   customer group, then country, then the plain price. At equal specificity a scheduled
   price (with a start or end) beats an open-ended one (a sale beats the list price), and
   the later start wins among scheduled ones. When a scheduled price applies, the plain
   price of the same scope is returned as ``compare_at``.
2. Without an explicit price in the currency, the price in the list's base currency is
   resolved the same way and converted with the latest exchange rate effective at that
   time, then rounded with the currency's rounding rule (``money.RoundingRule``).
3. Without either, the variant has no price in that list and currency (not sellable there).

A customer in customer groups gets the lowest of the prices resolved (as in 1. and 2.) for
each of their groups and for no group at all: belonging to a group never costs more, and
a customer in several groups gets the best of them.

A resolution for many variants is a fixed number of statements (prices, then at most one
rate and one rounding rule), never one per variant.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, delete, insert, or_, select
from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.auth.service import audit
from mercato.catalog import service as catalog
from mercato.db import utcnow
from mercato.errors import Conflict, FieldError, NotFound, ValidationProblem
from mercato.events import publish
from mercato.money import RoundingRule, check_precision, convert, default_rounding, quantize
from mercato.pagination import Page, decode_key_cursor, page_of
from mercato.pricing.event_types import PricesChanged
from mercato.pricing.models import CurrencyRounding, ExchangeRate, Price, PriceList


@dataclass(frozen=True)
class ResolvedPrice:
    variant_id: int
    currency: str
    amount: Decimal
    tax_inclusive: bool
    price_list: str
    source: str  # "explicit" | "converted"
    compare_at: Decimal | None = None
    rate: Decimal | None = None


@dataclass(frozen=True)
class _ListSettings:
    code: str
    base_currency: str
    tax_inclusive: bool


@dataclass(frozen=True)
class PriceInput:
    variant_id: int
    currency: str
    amount: Decimal
    country: str | None = None
    customer_group: str | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None


# --- price lists ------------------------------------------------------------------------


def get_price_list(session: Session, code: str) -> PriceList:
    found = session.scalar(select(PriceList).where(PriceList.code == code))
    if found is None:
        raise NotFound(f"price list {code} not found")
    return found


def list_price_lists(session: Session) -> list[PriceList]:
    return list(session.scalars(select(PriceList).order_by(PriceList.code)))


def create_price_list(
    session: Session,
    actor: Principal,
    *,
    code: str,
    name: str,
    base_currency: str,
    tax_inclusive: bool,
) -> PriceList:
    if session.scalar(select(PriceList.id).where(PriceList.code == code)) is not None:
        raise Conflict(f"price list {code} exists", code="duplicate-code")
    now = utcnow()
    price_list = PriceList(
        code=code,
        name=name,
        base_currency=base_currency,
        tax_inclusive=tax_inclusive,
        active=True,
        created_at=now,
        updated_at=now,
    )
    session.add(price_list)
    session.flush()
    audit(
        session,
        actor,
        "price_list.created",
        "price_list",
        price_list.id,
        {"code": code, "base_currency": base_currency, "tax_inclusive": tax_inclusive},
    )
    return price_list


def update_price_list(
    session: Session, actor: Principal, code: str, changes: dict[str, Any]
) -> PriceList:
    price_list = get_price_list(session, code)
    for name in ("name", "tax_inclusive", "active", "base_currency"):
        if name in changes:
            if changes[name] is None:
                raise ValidationProblem.field(f"body.{name}", "may not be null")
            setattr(price_list, name, changes[name])
    if changes:
        price_list.updated_at = utcnow()
        audit(session, actor, "price_list.updated", "price_list", price_list.id, changes)
    return price_list


# --- prices --------------------------------------------------------------------------------


def set_prices(session: Session, actor: Principal, code: str, prices: Sequence[PriceInput]) -> int:
    """Create or replace prices (same list, variant, currency, country, group and start)."""
    price_list = get_price_list(session, code)
    errors: list[FieldError] = []
    known = catalog.variant_infos(session, {p.variant_id for p in prices})
    seen: set[tuple[Any, ...]] = set()
    for i, p in enumerate(prices):
        scope = (p.variant_id, p.currency, p.country, p.customer_group, p.starts_at)
        if p.variant_id not in known:
            errors.append(
                FieldError(f"body.prices[{i}].variant_id", f"unknown variant {p.variant_id}")
            )
        if scope in seen:
            errors.append(FieldError(f"body.prices[{i}]", "the same price scope appears twice"))
        seen.add(scope)
        try:
            check_precision(p.amount, p.currency)
        except ValueError as exc:
            errors.append(FieldError(f"body.prices[{i}].amount", str(exc)))
        if p.amount < 0:
            errors.append(FieldError(f"body.prices[{i}].amount", "must not be negative"))
        if p.starts_at and p.ends_at and p.ends_at <= p.starts_at:
            errors.append(FieldError(f"body.prices[{i}].ends_at", "must be after starts_at"))
    if errors:
        raise ValidationProblem(errors[0]["reason"], errors=errors)
    now = utcnow()
    existing = session.execute(
        select(
            Price.id,
            Price.variant_id,
            Price.currency,
            Price.country,
            Price.customer_group,
            Price.starts_at,
        ).where(Price.price_list_id == price_list.id, Price.variant_id.in_(sorted(known)))
    ).all()
    replaced = [row[0] for row in existing if tuple(row[1:]) in seen]
    for start in range(0, len(replaced), 500):
        session.execute(delete(Price).where(Price.id.in_(replaced[start : start + 500])))
    session.execute(
        insert(Price),
        [
            {
                "price_list_id": price_list.id,
                "variant_id": p.variant_id,
                "currency": p.currency,
                "amount": check_precision(p.amount, p.currency),
                "country": p.country,
                "customer_group": p.customer_group,
                "starts_at": p.starts_at,
                "ends_at": p.ends_at,
                "updated_at": now,
            }
            for p in prices
        ],
    )
    session.flush()
    audit(session, actor, "prices.set", "price_list", price_list.id, {"count": len(prices)})
    publish(
        session,
        PricesChanged(
            price_list=code,
            variant_ids=tuple(sorted({p.variant_id for p in prices})),
            price_list_id=price_list.id,
        ),
    )
    return len(prices)


def list_prices(
    session: Session,
    code: str,
    variant_id: int | None = None,
    *,
    cursor: str | None = None,
    limit: int = 200,
) -> Page[Price]:
    """The list's prices by variant (then in the order they were set), a page at a time."""
    price_list = get_price_list(session, code)
    query = select(Price).where(Price.price_list_id == price_list.id)
    if variant_id is not None:
        query = query.where(Price.variant_id == variant_id)
    after = decode_key_cursor(cursor, 2)
    if after is not None:
        variant, ident = after
        query = query.where(
            or_(Price.variant_id > variant, and_(Price.variant_id == variant, Price.id > ident))
        )
    rows = list(session.scalars(query.order_by(Price.variant_id, Price.id).limit(limit + 1)))
    return page_of(rows, limit, key=lambda p: [p.variant_id, p.id])


def _specificity(price: Price) -> tuple[int, int, float]:
    scope = (2 if price.customer_group else 0) + (1 if price.country else 0)
    scheduled = 1 if (price.starts_at or price.ends_at) else 0
    start = price.starts_at.timestamp() if price.starts_at else 0.0
    return scope, scheduled, start


def _pick_best(
    candidates: Sequence[Price], country: str | None, groups: Sequence[str], at: datetime
) -> tuple[Price | None, Price | None]:
    """The lowest of the winners for each group and for none (the more specific on a tie)."""
    picks = [_pick(candidates, country, group, at) for group in (None, *groups)]
    found = [(best, regular) for best, regular in picks if best is not None]
    if not found:
        return None, None
    return min(found, key=lambda pick: (pick[0].amount, *(-x for x in _specificity(pick[0]))))


def _pick(
    candidates: Iterable[Price], country: str | None, group: str | None, at: datetime
) -> tuple[Price | None, Price | None]:
    """The winning price and, if it is scheduled, the plain price of the same scope."""
    usable = [
        p
        for p in candidates
        if (p.country is None or p.country == country)
        and (p.customer_group is None or p.customer_group == group)
        and (p.starts_at is None or p.starts_at <= at)
        and (p.ends_at is None or at < p.ends_at)
    ]
    if not usable:
        return None, None
    best = max(usable, key=lambda p: (*_specificity(p), -p.id))
    regular = None
    if best.starts_at or best.ends_at:
        plain = [p for p in usable if not (p.starts_at or p.ends_at)]
        if plain:
            regular = max(plain, key=lambda p: (*_specificity(p), -p.id))
    return best, regular


def rounding_rule(session: Session, currency: str) -> RoundingRule:
    row = session.get(CurrencyRounding, currency)
    if row is None:
        return default_rounding(currency)
    return RoundingRule(increment=row.increment, mode=row.mode, ending=row.ending)


def latest_rate(session: Session, base: str, quote: str, at: datetime) -> Decimal | None:
    if base == quote:
        return Decimal(1)
    return session.scalar(
        select(ExchangeRate.rate)
        .where(
            ExchangeRate.base_currency == base,
            ExchangeRate.quote_currency == quote,
            ExchangeRate.effective_at <= at,
        )
        .order_by(ExchangeRate.effective_at.desc())
        .limit(1)
    )


def resolve_prices(
    session: Session,
    variant_ids: Iterable[int],
    *,
    price_list: str,
    currency: str,
    country: str | None = None,
    customer_group: str | None = None,
    at: datetime | None = None,
    customer_groups: Iterable[str] = (),
) -> dict[int, ResolvedPrice]:
    """Prices for ``variant_ids``; variants without a price are absent from the answer.

    ``customer_group`` and ``customer_groups`` together are the groups of the customer:
    the lowest of their prices (and of the price for no group) wins.
    """
    ids = sorted(set(variant_ids))
    groups = sorted({*customer_groups, *([customer_group] if customer_group else [])})
    when = at or utcnow()
    if not ids:
        return {}
    # One statement: the list's settings come with its prices.
    result = session.execute(
        select(Price, PriceList.code, PriceList.base_currency, PriceList.tax_inclusive)
        .join(PriceList, PriceList.id == Price.price_list_id)
        .where(
            PriceList.code == price_list,
            PriceList.active.is_(True),
            Price.variant_id.in_(ids),
            or_(Price.currency == currency, Price.currency == PriceList.base_currency),
            or_(Price.country.is_(None), Price.country == country),
            or_(Price.customer_group.is_(None), Price.customer_group.in_(groups)),
            or_(Price.ends_at.is_(None), Price.ends_at > when),
            or_(Price.starts_at.is_(None), Price.starts_at <= when),
        )
    ).all()
    if not result:
        return {}
    row = _ListSettings(result[0][1], result[0][2], result[0][3])
    rows = [r[0] for r in result]
    by_key: dict[tuple[int, str], list[Price]] = {}
    for p in rows:
        by_key.setdefault((p.variant_id, p.currency), []).append(p)
    found: dict[int, ResolvedPrice] = {}
    to_convert: dict[int, tuple[Price, Price | None]] = {}
    for variant_id in ids:
        best, regular = _pick_best(by_key.get((variant_id, currency), []), country, groups, when)
        if best is not None:
            found[variant_id] = ResolvedPrice(
                variant_id,
                currency,
                quantize(best.amount, currency),
                row.tax_inclusive,
                row.code,
                "explicit",
                None if regular is None else regular.amount,
            )
            continue
        base_best, base_regular = _pick_best(
            by_key.get((variant_id, row.base_currency), []), country, groups, when
        )
        if base_best is not None:
            to_convert[variant_id] = (base_best, base_regular)
    if to_convert:
        rate = latest_rate(session, row.base_currency, currency, when)
        if rate is not None:
            rule = rounding_rule(session, currency)
            for variant_id, (best, regular) in to_convert.items():
                found[variant_id] = ResolvedPrice(
                    variant_id,
                    currency,
                    convert(best.amount, rate, currency, rule),
                    row.tax_inclusive,
                    row.code,
                    "converted",
                    None if regular is None else convert(regular.amount, rate, currency, rule),
                    rate,
                )
    return found


# --- exchange rates and rounding -----------------------------------------------------------


@dataclass(frozen=True)
class RateInput:
    base_currency: str
    quote_currency: str
    rate: Decimal
    effective_at: datetime
    source: str | None = None


def import_rates(session: Session, actor: Principal, rates: Sequence[RateInput]) -> int:
    """Add dated rates (an existing rate for the same pair and time is replaced)."""
    errors = [
        FieldError(f"body.rates[{i}].rate", "must be positive")
        for i, r in enumerate(rates)
        if r.rate <= 0
    ] + [
        FieldError(f"body.rates[{i}].quote_currency", "differs from base_currency")
        for i, r in enumerate(rates)
        if r.base_currency == r.quote_currency
    ]
    if errors:
        raise ValidationProblem(errors[0]["reason"], errors=errors)
    now = utcnow()
    for r in rates:
        session.execute(
            delete(ExchangeRate).where(
                ExchangeRate.base_currency == r.base_currency,
                ExchangeRate.quote_currency == r.quote_currency,
                ExchangeRate.effective_at == r.effective_at,
            )
        )
        session.add(
            ExchangeRate(
                base_currency=r.base_currency,
                quote_currency=r.quote_currency,
                rate=r.rate.quantize(Decimal("1e-10")),
                effective_at=r.effective_at,
                source=r.source,
                created_at=now,
            )
        )
    session.flush()
    audit(session, actor, "exchange_rates.imported", "exchange_rate", None, {"count": len(rates)})
    return len(rates)


def list_rates(session: Session, base: str | None, quote: str | None) -> list[ExchangeRate]:
    query = select(ExchangeRate).order_by(
        ExchangeRate.base_currency, ExchangeRate.quote_currency, ExchangeRate.effective_at.desc()
    )
    if base:
        query = query.where(ExchangeRate.base_currency == base)
    if quote:
        query = query.where(ExchangeRate.quote_currency == quote)
    return list(session.scalars(query.limit(1000)))


def set_rounding(
    session: Session, actor: Principal, currency: str, rule: RoundingRule
) -> CurrencyRounding:
    row = session.get(CurrencyRounding, currency)
    if row is None:
        row = CurrencyRounding(currency=currency)
        session.add(row)
    row.increment, row.mode, row.ending = rule.increment, rule.mode, rule.ending
    session.flush()
    audit(
        session,
        actor,
        "currency_rounding.set",
        "currency",
        currency,
        {
            "increment": str(rule.increment),
            "mode": rule.mode,
            "ending": None if rule.ending is None else str(rule.ending),
        },
    )
    return row


def list_rounding(session: Session) -> list[CurrencyRounding]:
    return list(session.scalars(select(CurrencyRounding).order_by(CurrencyRounding.currency)))
