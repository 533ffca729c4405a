"""The money of a return, as pure functions of the order's recorded amounts.

* **A line's refund.** The customer paid ``line.total`` for ``line.quantity`` units (tax
  included, after every discount the order spread onto its lines). That total is split
  into per-unit shares with :func:`mercato.money.allocate` (largest remainder: the shares
  differ by at most one minor unit, the first units carrying the extra ones). The units
  of a line are returned in order, so a return of ``count`` units starting after the
  ``start`` already returned gets exactly those units' shares: however a line is returned,
  in one go or unit by unit, its refunds add up to what was paid for it, never more.
* **Restocking fee.** A percentage of a line's share, rounded half up to the minor unit,
  only for reasons on the customer's side (changed mind, size or fit, other) and never for
  units the customer asked to exchange for another variant (even when the exchange ends
  as a refund because the replacement could not be had).
* **Shipping.** What the customer paid beyond the lines (``grand_total - sum(line
  totals)``: the shipping charge and, where tax is added on top, its tax) comes back only
  with the return that brings back the last unit of the order, and only when every line of
  that return is the merchant's fault (damaged, wrong item, not as described).
* **Exchange.** Replacement units cost their current price in the order's price list; the
  exchanged lines' shares are a credit against it. A larger credit is refunded (spread over
  the exchanged lines by their shares), a larger price is charged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from mercato.money import ZERO, allocate, from_minor, quantize, to_minor

HUNDRED = Decimal(100)


def unit_slice(total: Decimal, units: int, start: int, count: int, currency: str) -> Decimal:
    """What units ``start .. start + count - 1`` (0-based) of ``units`` paid ``total`` cost.

    Equals ``sum(allocate(total, [1] * units, currency)[start:start + count])`` without
    building a list as long as the line (equal weights: every unit gets the floor share,
    the remainder goes one minor unit each to the first units).
    """
    if units <= 0 or count <= 0:
        return quantize(ZERO, currency)
    if start < 0 or start + count > units:
        raise ValueError(f"units {start}..{start + count - 1} are not within {units}")
    minor = to_minor(total, currency)
    sign = -1 if minor < 0 else 1
    base, extra = divmod(abs(minor), units)
    bonus = max(0, min(start + count, extra) - start)
    return from_minor(sign * (base * count + bonus), currency)


def unit_shares(total: Decimal, units: int, currency: str) -> list[Decimal]:
    """Every unit's share of ``total`` (the reference :func:`unit_slice` is checked against)."""
    return allocate(total, [Decimal(1)] * units, currency)


def restocking_fee(paid: Decimal, percent: Decimal, currency: str) -> Decimal:
    """``percent`` of ``paid``, half up to the minor unit, never more than ``paid``."""
    if paid <= ZERO or percent <= ZERO:
        return quantize(ZERO, currency)
    return min(paid, quantize(paid * percent / HUNDRED, currency))


def shipping_paid(grand_total: Decimal, line_totals: Sequence[Decimal], currency: str) -> Decimal:
    """What the order cost beyond its lines: shipping and, when tax is added, its tax."""
    return max(quantize(ZERO, currency), quantize(grand_total - sum(line_totals, ZERO), currency))


@dataclass(frozen=True)
class PricedLine:
    """A replacement order line: the figures ``orders.check_totals`` expects."""

    subtotal: Decimal
    discount: Decimal
    tax: Decimal
    total: Decimal


def gross_value(
    unit_price: Decimal, quantity: int, tax_rate: Decimal, tax_included: bool, currency: str
) -> Decimal:
    """What ``quantity`` units at ``unit_price`` cost the customer, tax included."""
    subtotal = quantize(unit_price * quantity, currency)
    if tax_included:
        return subtotal
    return subtotal + quantize(subtotal * tax_rate, currency)


def replacement_line(
    unit_price: Decimal,
    quantity: int,
    tax_rate: Decimal,
    tax_included: bool,
    credit: Decimal,
    currency: str,
) -> PricedLine:
    """A replacement line at full price with ``credit`` (tax included) taken off as a discount.

    The line's total (tax included) is its gross value minus the credit. With tax-inclusive
    prices the discount is the credit itself; with tax added on top the credit comes off the
    net price and the tax, the discount being what brings the net price down.
    """
    subtotal = quantize(unit_price * quantity, currency)
    gross = gross_value(unit_price, quantity, tax_rate, tax_included, currency)
    total = gross - credit
    if total < ZERO or credit < ZERO:
        raise ValueError("the credit must be between zero and the replacement's value")
    if tax_included:
        tax = total - quantize(total / (1 + tax_rate), currency)
        return PricedLine(subtotal, subtotal - total, tax, total)
    net = subtotal if credit == ZERO else min(subtotal, quantize(total / (1 + tax_rate), currency))
    return PricedLine(subtotal, subtotal - net, total - net, total)


@dataclass(frozen=True)
class SettlementPlan:
    """How a return is paid out once its replacement (if any) is priced."""

    refund: Decimal  # money (or store credit) back to the customer
    charge: Decimal  # the price difference the customer pays for a dearer replacement
    credit_used: Decimal  # the part of the exchanged lines' value spent on the replacement
    line_refunds: dict[int, Decimal]  # per return line id: the money back for it
    credits: list[Decimal]  # per replacement line (same order as given): the credit applied


def plan_settlement(
    refund_lines: Mapping[int, Decimal],
    credit_lines: Mapping[int, Decimal],
    replacement_values: Sequence[Decimal],
    shipping: Decimal,
    currency: str,
) -> SettlementPlan:
    """Net the exchanged lines' credit against the replacement and add the plain refunds.

    ``refund_lines``: return line id -> refund after fee (lines refunded as money);
    ``credit_lines``: return line id -> share paid (lines exchanged, no fee);
    ``replacement_values``: gross value of each replacement line.
    """
    credit = sum(credit_lines.values(), ZERO)
    value = sum(replacement_values, ZERO)
    used = min(credit, value)
    surplus = credit - used
    line_refunds = dict(refund_lines)
    if credit_lines:
        ids = list(credit_lines)
        shares = allocate(surplus, [credit_lines[i] for i in ids], currency)
        line_refunds.update(zip(ids, shares, strict=True))
    credits = allocate(used, list(replacement_values), currency) if replacement_values else []
    refund = sum(line_refunds.values(), ZERO) + shipping
    return SettlementPlan(
        refund=quantize(refund, currency),
        charge=quantize(value - used, currency),
        credit_used=quantize(used, currency),
        line_refunds={k: quantize(v, currency) for k, v in line_refunds.items()},
        credits=credits,
    )
