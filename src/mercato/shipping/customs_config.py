"""Customs rules per destination country and the exchange rates customs valuation uses.

What staff configure; the arithmetic of an estimate is :mod:`mercato.shipping.customs` and
the estimate itself :mod:`mercato.shipping.duties`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.auth.service import audit
from mercato.db import utcnow
from mercato.errors import NotFound, ValidationProblem
from mercato.shipping._checks import (
    _country,
    _currency,
    _decimal,
    _hs_digits,
    _optional_minor,
    _ppm,
    _rate,
)
from mercato.shipping.models import CustomsCountry, CustomsDutyRate, CustomsExchangeRate
from mercato.shipping.schemas import CustomsIn


@dataclass(frozen=True)
class DutyRateView:
    hs_prefix: str
    rate: Decimal
    description: str | None


@dataclass(frozen=True)
class CustomsView:
    country: str
    currency: str
    duty_de_minimis: Decimal | None
    tax_de_minimis: Decimal | None
    default_duty_rate: Decimal
    import_tax_rate: Decimal
    tax_name: str
    valuation: str
    preferential_origins: list[str]
    duty_rates: list[DutyRateView]
    note: str | None
    updated_at: datetime


def _clean_duty_rates(data: CustomsIn) -> list[tuple[str, int, str | None]]:
    clean: list[tuple[str, int, str | None]] = []
    seen: set[str] = set()
    for i, entry in enumerate(data.duty_rates):
        field = f"body.duty_rates[{i}]"
        prefix = _hs_digits(entry.hs_prefix, f"{field}.hs_prefix", 2)
        if prefix in seen:
            raise ValidationProblem.field(f"{field}.hs_prefix", "listed twice")
        seen.add(prefix)
        clean.append((prefix, _ppm(entry.rate, f"{field}.rate"), entry.description))
    return clean


def put_customs(
    session: Session, actor: Principal, country: str, data: CustomsIn
) -> CustomsCountry:
    """Create or replace the import rules of one destination country."""
    code = _country(country, "path.country")
    currency = _currency(data.currency, "body.currency")
    values = {
        "currency": currency,
        "duty_de_minimis_minor": _optional_minor(
            data.duty_de_minimis, currency, "body.duty_de_minimis"
        ),
        "tax_de_minimis_minor": _optional_minor(
            data.tax_de_minimis, currency, "body.tax_de_minimis"
        ),
        "default_duty_ppm": _ppm(data.default_duty_rate, "body.default_duty_rate"),
        "import_tax_ppm": _ppm(data.import_tax_rate, "body.import_tax_rate"),
        "tax_name": data.tax_name,
        "valuation": data.valuation,
        "preferential_origins": sorted(
            {
                _country(c, f"body.preferential_origins[{i}]")
                for i, c in enumerate(data.preferential_origins)
            }
        ),
        "note": data.note,
        "updated_at": utcnow(),
    }
    rates = _clean_duty_rates(data)
    row = session.get(CustomsCountry, code)
    if row is None:
        row = CustomsCountry(country=code, **values)
        session.add(row)
    else:
        for name, value in values.items():
            setattr(row, name, value)
    session.flush()
    session.execute(delete(CustomsDutyRate).where(CustomsDutyRate.country == code))
    session.add_all(
        CustomsDutyRate(country=code, hs_prefix=p, rate_ppm=r, description=d) for p, r, d in rates
    )
    session.flush()
    audit(
        session,
        actor,
        "shipping.customs_set",
        "customs_country",
        code,
        data.model_dump(mode="json"),
    )
    return row


def get_customs(session: Session, country: str) -> CustomsCountry:
    row = session.get(CustomsCountry, country.upper(), populate_existing=True)
    if row is None:
        raise NotFound(f"no customs rules for {country}")
    return row


def list_customs(session: Session) -> list[CustomsCountry]:
    return list(session.scalars(select(CustomsCountry).order_by(CustomsCountry.country)))


def delete_customs(session: Session, actor: Principal, country: str) -> None:
    row = get_customs(session, country)
    session.execute(delete(CustomsDutyRate).where(CustomsDutyRate.country == row.country))
    session.delete(row)
    session.flush()
    audit(session, actor, "shipping.customs_deleted", "customs_country", row.country)


def customs_views(session: Session, rows: Sequence[CustomsCountry]) -> list[CustomsView]:
    rates: dict[str, list[CustomsDutyRate]] = defaultdict(list)
    if rows:
        for rate in session.scalars(
            select(CustomsDutyRate)
            .where(CustomsDutyRate.country.in_([r.country for r in rows]))
            .order_by(CustomsDutyRate.hs_prefix)
        ):
            rates[rate.country].append(rate)
    return [
        CustomsView(
            country=r.country,
            currency=r.currency,
            duty_de_minimis=_decimal(r.duty_de_minimis_minor, r.currency),
            tax_de_minimis=_decimal(r.tax_de_minimis_minor, r.currency),
            default_duty_rate=_rate(r.default_duty_ppm),
            import_tax_rate=_rate(r.import_tax_ppm),
            tax_name=r.tax_name,
            valuation=r.valuation,
            preferential_origins=list(r.preferential_origins or []),
            duty_rates=[
                DutyRateView(x.hs_prefix, _rate(x.rate_ppm), x.description)
                for x in rates[r.country]
            ],
            note=r.note,
            updated_at=r.updated_at,
        )
        for r in rows
    ]


def put_exchange_rate(
    session: Session, actor: Principal, from_currency: str, to_currency: str, rate: Decimal
) -> CustomsExchangeRate:
    """The customs valuation rate: one ``from_currency`` is ``rate`` ``to_currency``."""
    source = _currency(from_currency, "path.from_currency")
    target = _currency(to_currency, "path.to_currency")
    if source == target:
        raise ValidationProblem.field("path.to_currency", "must differ from from_currency")
    if not rate.is_finite() or rate <= 0:
        raise ValidationProblem.field("body.rate", "a positive number")
    row = session.get(CustomsExchangeRate, (source, target))
    if row is None:
        row = CustomsExchangeRate(from_currency=source, to_currency=target)
        session.add(row)
    row.rate = str(rate)
    row.updated_at = utcnow()
    session.flush()
    audit(
        session,
        actor,
        "shipping.customs_rate_set",
        "customs_exchange_rate",
        f"{source}-{target}",
        {"rate": str(rate)},
    )
    return row


def list_exchange_rates(session: Session) -> list[CustomsExchangeRate]:
    return list(
        session.scalars(
            select(CustomsExchangeRate).order_by(
                CustomsExchangeRate.from_currency, CustomsExchangeRate.to_currency
            )
        )
    )
