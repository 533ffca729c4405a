"""The fraud check hook every checkout and staff order passes through.

The default screen accepts everything; a merchant (or a later fraud domain) installs a
screen with :func:`set_fraud_check`. A screen sees the order before any stock is held or
money is asked for, and answers allow, review (the order is placed but waits in
``fraud_review`` before fulfilment) or deny (nothing is created).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, Protocol


@dataclass(frozen=True)
class OrderScreening:
    channel_id: int
    customer_id: int | None
    email: str | None
    currency: str
    grand_total: Decimal
    ship_country: str | None
    line_count: int
    units: int


@dataclass(frozen=True)
class FraudDecision:
    action: Literal["allow", "review", "deny"]
    score: float = 0.0
    reasons: tuple[str, ...] = ()


class FraudCheck(Protocol):
    def screen(self, order: OrderScreening) -> FraudDecision: ...


class AllowAll:
    def screen(self, order: OrderScreening) -> FraudDecision:
        return FraudDecision("allow")


_check: FraudCheck = AllowAll()


def fraud_check() -> FraudCheck:
    return _check


def set_fraud_check(check: FraudCheck) -> None:
    global _check
    _check = check
