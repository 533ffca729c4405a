"""Money, numbers and dates for the signed-in user's language and the record's currency."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from datetime import UTC
from decimal import Decimal
from typing import Any

from babel import dates, numbers

from mercato.money import format_money

# Babel's locale for each back office language (dates and numbers need a territory-free
# locale only; currencies come from the record).
_BABEL_LOCALES = {"en": "en", "vi": "vi", "ja": "ja", "de": "de"}


@dataclass(frozen=True)
class Formats:
    language: str

    @property
    def locale(self) -> str:
        return _BABEL_LOCALES.get(self.language, "en")

    def money(self, amount: Decimal | int | str | None, currency: str | None) -> str:
        if amount is None or not currency:
            return "—"
        return format_money(Decimal(str(amount)), currency, self.locale)

    def number(self, value: Decimal | int | float | None, digits: int | None = None) -> str:
        if value is None:
            return "—"
        if digits is not None:
            pattern = "#,##0" + ("." + "0" * digits if digits else "")
            return numbers.format_decimal(value, format=pattern, locale=self.locale)
        return numbers.format_decimal(value, locale=self.locale)

    def percent(self, value: Decimal | float | None) -> str:
        if value is None:
            return "—"
        return numbers.format_percent(value, format="#,##0.0%", locale=self.locale)

    def datetime(self, value: dt.datetime | None, style: str = "medium") -> str:
        if value is None:
            return "—"
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return dates.format_datetime(value, format=style, locale=self.locale)

    def date(self, value: dt.date | dt.datetime | None, style: str = "medium") -> str:
        if value is None:
            return "—"
        return dates.format_date(value, format=style, locale=self.locale)

    def ago(self, value: dt.datetime | None) -> str:
        """How long ago, in words ("3 hours ago")."""
        if value is None:
            return "—"
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        delta = value - dt.datetime.now(UTC)
        return dates.format_timedelta(delta, add_direction=True, locale=self.locale)

    def filters(self) -> dict[str, Any]:
        return {
            "money": self.money,
            "number": self.number,
            "percent": self.percent,
            "datetime": self.datetime,
            "date": self.date,
            "ago": self.ago,
        }
