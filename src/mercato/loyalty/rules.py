"""The arithmetic of points, free of the database so that it can be checked exhaustively.

* **Earning.** Every line earns ``amount x rate x multipliers`` exactly (as a fraction);
  the order earns the sum rounded down to a whole point, plus fixed bonus points.
  Rounding once per order, not per line, never costs the shopper a point per line.
* **Reversal.** A return takes back the share of the order's points that the returned
  part of each line carries, each line weighted by what it earned (the coffee that earned
  double takes back double). It is cumulative: after every return the total taken back is
  ``floor(points x returned share)``, so partial returns never take more than their share
  and returning everything takes back exactly what was granted.
"""

from __future__ import annotations

import calendar
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from zoneinfo import ZoneInfo

ONE = Decimal(1)


@dataclass(frozen=True)
class EarnRate:
    """``points`` points per ``per_amount`` of the currency (1 point per 100 JPY)."""

    points: int
    per_amount: Decimal

    def exact(self, amount: Decimal) -> Fraction:
        return Fraction(amount) * self.points / Fraction(self.per_amount)


@dataclass(frozen=True)
class EarnLine:
    variant_id: int
    quantity: int
    amount: Decimal  # paid for the goods of the line: net of discounts, without shipping
    multiplier: Decimal = ONE  # the line's category multiplier


@dataclass(frozen=True)
class Earned:
    points: int  # rounded down, bonus included
    bonus_points: int
    weights: tuple[Fraction, ...]  # each line's exact points before rounding


def earn_points(
    lines: Sequence[EarnLine],
    rate: EarnRate,
    *,
    multiplier: Decimal = ONE,
    bonus_points: int = 0,
) -> Earned:
    """The points an order earns. Negative amounts (they should not occur) earn nothing."""
    weights = tuple(
        max(Fraction(0), rate.exact(line.amount) * Fraction(line.multiplier) * Fraction(multiplier))
        for line in lines
    )
    base = math.floor(sum(weights, Fraction(0)))
    bonus = max(0, bonus_points)
    return Earned(base + bonus, bonus, weights)


def returned_share(weights: Sequence[Fraction], returned: Sequence[Fraction]) -> Fraction:
    """The share of the order returned: lines weighted by what they earned, each capped at 1."""
    clean = [max(Fraction(0), Fraction(w)) for w in weights]
    total = sum(clean, Fraction(0))
    if total == 0:
        # Nothing earned per line (bonus points only): every line weighs the same.
        clean = [Fraction(1)] * len(weights)
        total = Fraction(len(weights))
    if total == 0:
        return Fraction(0)
    taken = sum(
        (w * min(Fraction(1), max(Fraction(0), f)) for w, f in zip(clean, returned, strict=True)),
        Fraction(0),
    )
    return taken / total


def reversal_target(points: int, weights: Sequence[Fraction], returned: Sequence[Fraction]) -> int:
    """How many of ``points`` are taken back in total once ``returned`` (per line) came back."""
    return math.floor(points * returned_share(weights, returned))


def restored_points(points: int, amount_minor: int, refunded_minor: int) -> int:
    """Points given back in total once ``refunded_minor`` of a points payment is refunded."""
    if amount_minor <= 0:
        return 0
    return (points * min(refunded_minor, amount_minor)) // amount_minor


def points_for_amount(amount: Decimal, point_value: Decimal) -> int | None:
    """The whole number of points that pays ``amount``; None when it is not a whole number."""
    exact = Fraction(amount) / Fraction(point_value)
    if exact.denominator != 1:
        return None
    return int(exact)


@dataclass(frozen=True)
class CampaignRule:
    """A campaign as the earning rules see it."""

    starts_at: datetime
    ends_at: datetime
    multiplier: Decimal = ONE
    bonus_points: int = 0
    first_order_only: bool = False
    weekdays: frozenset[int] = field(default_factory=frozenset)
    timezone: str = "UTC"

    def applies(self, at: datetime, *, first_order: bool) -> bool:
        if not self.starts_at <= at < self.ends_at:
            return False
        if self.first_order_only and not first_order:
            return False
        if self.weekdays:
            local = at.astimezone(ZoneInfo(self.timezone))
            return local.isoweekday() in self.weekdays
        return True


def campaign_effect(
    campaigns: Iterable[CampaignRule], at: datetime, *, first_order: bool
) -> tuple[Decimal, int]:
    """The best multiplier of the campaigns that apply (they do not stack) and their bonuses."""
    multiplier = ONE
    bonus = 0
    for campaign in campaigns:
        if campaign.applies(at, first_order=first_order):
            multiplier = max(multiplier, campaign.multiplier)
            bonus += campaign.bonus_points
    return multiplier, bonus


def add_months(at: datetime, months: int) -> datetime:
    """The same day and time ``months`` later (or earlier), clamped to the month's last day."""
    index = at.year * 12 + (at.month - 1) + months
    year, month = divmod(index, 12)
    day = min(at.day, calendar.monthrange(year, month + 1)[1])
    return at.replace(year=year, month=month + 1, day=day)
