"""Import duty and tax estimates of a cross-border parcel.

The destination's stored rules and, when a de minimis threshold is in another currency,
the customs exchange rate, handed to :func:`mercato.shipping.customs.estimate`.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from mercato.errors import UnprocessableState, ValidationProblem
from mercato.shipping import customs
from mercato.shipping._checks import _country, _currency, _decimal, _hs_digits, _money, _rate
from mercato.shipping.customs import CustomsRules, DutyEstimate, DutyItem
from mercato.shipping.models import CustomsCountry, CustomsDutyRate, CustomsExchangeRate


def _exchange_rate(session: Session, source: str, target: str) -> Decimal:
    """How much ``target`` one ``source`` is worth (a stored rate or its inverse)."""
    rows = {
        (r.from_currency, r.to_currency): Decimal(r.rate)
        for r in session.scalars(
            select(CustomsExchangeRate).where(
                or_(
                    and_(
                        CustomsExchangeRate.from_currency == source,
                        CustomsExchangeRate.to_currency == target,
                    ),
                    and_(
                        CustomsExchangeRate.from_currency == target,
                        CustomsExchangeRate.to_currency == source,
                    ),
                )
            )
        )
    }
    if (source, target) in rows:
        return rows[(source, target)]
    if (target, source) in rows:
        return Decimal(1) / rows[(target, source)]
    raise UnprocessableState(
        f"no customs exchange rate between {source} and {target} is configured",
        code="customs-exchange-rate-missing",
    )


def _rules(session: Session, country: str) -> CustomsRules | None:
    row = session.get(CustomsCountry, country)
    if row is None:
        return None
    rates = {
        r.hs_prefix: _rate(r.rate_ppm)
        for r in session.scalars(select(CustomsDutyRate).where(CustomsDutyRate.country == country))
    }
    return CustomsRules(
        country=row.country,
        currency=row.currency,
        default_duty_rate=_rate(row.default_duty_ppm),
        import_tax_rate=_rate(row.import_tax_ppm),
        tax_name=row.tax_name,
        duty_de_minimis=_decimal(row.duty_de_minimis_minor, row.currency),
        tax_de_minimis=_decimal(row.tax_de_minimis_minor, row.currency),
        valuation=row.valuation,
        duty_rates=rates,
        preferential_origins=frozenset(row.preferential_origins or ()),
    )


def _duty_items(
    items: Sequence[DutyItem | tuple[str | None, str, Decimal, str]],
) -> tuple[list[DutyItem], str]:
    if not items:
        raise ValidationProblem.field("body.items", "at least one item")
    clean: list[DutyItem] = []
    currency: str | None = None
    for i, raw in enumerate(items):
        item = raw if isinstance(raw, DutyItem) else DutyItem(*raw)
        field = f"body.items[{i}]"
        cur = _currency(item.currency, f"{field}.currency")
        if currency is not None and cur != currency:
            raise ValidationProblem.field(f"{field}.currency", f"all items in {currency}")
        currency = cur
        hs = _hs_digits(item.hs_code, f"{field}.hs_code", 2) if item.hs_code else None
        origin = _country(item.origin_country, f"{field}.origin_country")
        clean.append(
            DutyItem(
                hs,
                origin,
                _money(_as_decimal(item.value, f"{field}.value"), cur, f"{field}.value"),
                cur,
            )
        )
    assert currency is not None
    return clean, currency


def _as_decimal(value: Any, field: str) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int | str) and not isinstance(value, bool):
        try:
            return Decimal(value)
        except InvalidOperation as exc:
            raise ValidationProblem.field(field, "not a number") from exc
    raise ValidationProblem.field(field, "a Decimal, an integer or a numeric string")


def estimate_duties(
    session: Session,
    destination_country: str,
    origin_country: str,
    items: Sequence[DutyItem | tuple[str | None, str, Decimal, str]],
    shipping_amount: Decimal = Decimal(0),
) -> DutyEstimate:
    """Import duty and tax of a parcel, in the items' currency (see :mod:`customs`).

    ``items`` are ``(hs_code, origin_country, value, currency)``: the value of each line
    (unit price x quantity), all in one currency, which ``shipping_amount`` is in too.
    """
    destination = _country(destination_country, "body.destination_country")
    origin = _country(origin_country, "body.origin_country")
    clean, currency = _duty_items(items)
    shipping = _money(
        _as_decimal(shipping_amount, "body.shipping_amount"), currency, "body.shipping_amount"
    )
    rules = _rules(session, destination)
    fx_rate = None
    needs_fx = rules is not None and (
        rules.duty_de_minimis is not None or rules.tax_de_minimis is not None
    )
    if (
        rules is not None
        and needs_fx
        and rules.currency != currency
        and customs.crosses_customs_border(origin, destination)
    ):
        fx_rate = _exchange_rate(session, rules.currency, currency)
    return customs.estimate(
        rules,
        destination_country=destination,
        origin_country=origin,
        items=clean,
        shipping_amount=shipping,
        currency=currency,
        fx_rate=fx_rate,
    )
